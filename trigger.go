package gears

import (
	"context"
	"errors"
	"time"

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
	// keyed: the command is RG.TRIGGERONKEY, whose key (argument 2) routes it on a cluster.
	keyed bool
	// routeKey, when set, computes the routing key from the caller's arguments (CacheGet on a cluster:
	// the URL's cache key); the Func then sends RG.TRIGGERONKEY <trigger> <key> <args…>. ok false: the
	// arguments have no key (no URL), and the plain RG.TRIGGER is sent, for the function to refuse them.
	routeKey func(args []any) (key string, ok bool)
	// idempotent (WithIdempotent): a reply without records is retried.
	idempotent bool
	// lookup is the Script's Go-side fast path (CacheGet's hits), nil for most scripts.
	lookup func(ctx context.Context, rdb redis.UniversalClient, args []any) (any, bool)
}

// maxLossRetries bounds the retries of an idempotent call that the server dropped without running it.
const maxLossRetries = 5

// call is the Func: ensure the registration, send the trigger, decode. The steady state costs one
// atomic load over a raw rdb.Do of the same command.
func (c *caller[T]) call(ctx context.Context, args ...any) (T, error) {
	var zero T
	if c.needKey && len(args) == 0 {
		return zero, ErrNoKey
	}
	if c.lookup != nil {
		// Answered without the trigger (a CacheGet hit: one GET), and decoded as the trigger's reply.
		// The registration is ensured by the first call that needs the trigger.
		if v, ok := c.lookup(ctx, c.rdb, args); ok {
			return c.decode(normalize(v))
		}
	}
	gen, err := c.reg.ensure(ctx)
	if err != nil {
		return zero, err
	}
	full, keyed := c.command(args)
	v, err := c.do(ctx, gen, keyed, full)
	for retry := 0; c.idempotent && err == nil && isEmptyReply(v) && retry < maxLossRetries; retry++ {
		// RedisGears dropped the queued execution (an UPGRADE or ABORTPENDING of its registration, or an
		// abort) without running it: check the registration, then call again.
		if err := backoff(ctx, retry); err != nil {
			return zero, err
		}
		c.reg.invalidate(gen)
		if gen, err = c.reg.ensure(ctx); err != nil {
			return zero, err
		}
		v, err = c.do(ctx, gen, keyed, full)
	}
	if err != nil {
		return zero, err
	}
	return c.decode(normalize(v))
}

// command builds the command that calls the trigger with args, and whether it is RG.TRIGGERONKEY.
func (c *caller[T]) command(args []any) ([]any, bool) {
	if c.routeKey != nil { // then c.cmd is RG.TRIGGER, for arguments without a key
		if key, ok := c.routeKey(args); ok {
			full := make([]any, 3+len(args))
			full[0], full[1], full[2] = any("RG.TRIGGERONKEY"), c.trigger, key
			copy(full[3:], args)
			return full, true
		}
	}
	full := make([]any, 2+len(args))
	full[0], full[1] = c.cmd, c.trigger
	copy(full[2:], args)
	return full, c.keyed
}

// send sends one trigger command; a keyed one is routed by its key from the first call.
func (c *caller[T]) send(ctx context.Context, keyed bool, full []any) (any, error) {
	if keyed {
		return doKeyed(ctx, c.rdb, 2, full)
	}
	return c.rdb.Do(ctx, full...).Result()
}

// do sends the trigger. When the server no longer knows it (restart without persistence, failover,
// UNREGISTER), it registers again and retries once.
func (c *caller[T]) do(ctx context.Context, gen uint64, keyed bool, full []any) (any, error) {
	v, err := c.send(ctx, keyed, full)
	if err == nil {
		return v, nil
	}
	err = wrapErr(err)
	if !errors.Is(err, ErrUnknownTrigger) {
		return nil, err
	}
	c.reg.invalidate(gen)
	if _, err := c.reg.ensure(ctx); err != nil {
		return nil, err
	}
	v, err = c.send(ctx, keyed, full)
	return v, wrapErr(err)
}

// isEmptyReply reports a reply without records: the execution did not produce the one record every
// Command execution produces.
func isEmptyReply(v any) bool {
	a, ok := v.([]any)
	return ok && len(a) == 0
}

// backoff waits before retry n (5 ms, 10 ms, 20 ms, 40 ms, 80 ms for the maxLossRetries retries), or until
// ctx ends.
func backoff(ctx context.Context, n int) error {
	t := time.NewTimer((5 * time.Millisecond) << n)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
