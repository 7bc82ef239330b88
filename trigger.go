package gears

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// ErrNoKey is returned by a Func with WithKeyRouting called without arguments: the first argument is
// the routing key.
var ErrNoKey = errors.New("gears: WithKeyRouting needs the key as the first argument")

// caller is the state behind one Func: how to send the trigger and decode its reply.
type caller[T any] struct {
	rdb     redis.UniversalClient
	reg     *registrar
	decode  func(any) (T, error)
	cmd     any // "RG.TRIGGER" or "RG.TRIGGERONKEY", boxed once so that calls do not allocate it
	trigger any // the trigger name, boxed once
	needKey bool
}

// call is the Func: ensure the registration, send the trigger, decode. The steady state costs one
// atomic load over a raw rdb.Do of the same command.
func (c *caller[T]) call(ctx context.Context, args ...any) (T, error) {
	var zero T
	if c.needKey && len(args) == 0 {
		return zero, ErrNoKey
	}
	gen, err := c.reg.ensure(ctx)
	if err != nil {
		return zero, err
	}
	full := make([]any, 2+len(args))
	full[0], full[1] = c.cmd, c.trigger
	copy(full[2:], args)
	v, err := c.rdb.Do(ctx, full...).Result()
	if err != nil {
		err = wrapErr(err)
		if !errors.Is(err, ErrUnknownTrigger) {
			return zero, err
		}
		// The server lost the registration (restart without persistence, failover, UNREGISTER):
		// register again and retry this call once.
		c.reg.invalidate(gen)
		if _, err := c.reg.ensure(ctx); err != nil {
			return zero, err
		}
		if v, err = c.rdb.Do(ctx, full...).Result(); err != nil {
			return zero, wrapErr(err)
		}
	}
	return c.decode(normalize(v))
}
