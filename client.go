package gears

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Client sends the RG.* commands of RedisGears 1.x through a go-redis client and decodes their replies
// into typed values. Its methods are safe for concurrent use, as the go-redis client is.
//
// Blocking commands (RG.PYEXECUTE of a run() or with REQUIREMENTS, RG.TRIGGER of a slow function,
// RG.GETRESULTSBLOCKING) wait as long as the server takes; go-redis applies its ReadTimeout (3 s by
// default) to them, so raise it, or set ContextTimeoutEnabled and pass a context deadline, when a
// command may take longer.
type Client struct {
	rdb redis.UniversalClient
}

// NewClient returns a Client that sends its commands through rdb. rdb may be a *redis.Client,
// *redis.ClusterClient, *redis.Ring or any other UniversalClient.
func NewClient(rdb redis.UniversalClient) *Client {
	return &Client{rdb: rdb}
}

// Redis returns the go-redis client the Client sends through.
func (c *Client) Redis() redis.UniversalClient {
	if c == nil {
		return nil
	}
	return c.rdb
}

// Pipeline returns a Pipeline that queues typed RG.* commands on a new go-redis pipeline of the
// Client's connection; send them with Exec.
func (c *Client) Pipeline() *Pipeline {
	return NewPipeline(c.rdb.Pipeline())
}

// doer is what sends a command: a go-redis client (sends now) or a pipeline (queues until Exec).
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
	Process(ctx context.Context, cmd redis.Cmder) error
}

// Pipeline queues typed RG.* commands on a go-redis pipeline. Each method returns a *Cmd whose Result
// is available after Exec (or after the go-redis pipeline it wraps was executed).
//
// Commands that RedisGears refuses inside MULTI (RG.PYEXECUTE, non-sync triggers) must not be queued on
// a transactional pipeline (TxPipeline): the server answers them with ErrMultiNotAllowed.
type Pipeline struct {
	pipe redis.Pipeliner
}

// NewPipeline wraps a go-redis pipeline, so that typed RG.* commands can be queued next to ordinary
// go-redis commands and sent in the same round trip.
func NewPipeline(pipe redis.Pipeliner) *Pipeline {
	return &Pipeline{pipe: pipe}
}

// Pipeliner returns the wrapped go-redis pipeline.
func (p *Pipeline) Pipeliner() redis.Pipeliner { return p.pipe }

// Exec sends every queued command. It returns the first failed command's error, as go-redis does; the
// individual results are read from each *Cmd.
func (p *Pipeline) Exec(ctx context.Context) error {
	_, err := p.pipe.Exec(ctx)
	return wrapErr(err)
}

// Cmd is one typed RG.* command: its raw go-redis command and the decoder of its reply.
type Cmd[T any] struct {
	raw    *redis.Cmd
	decode func(any) (T, error)
}

// newCmd sends (or queues) args through d and returns the typed command.
func newCmd[T any](ctx context.Context, d doer, decode func(any) (T, error), args ...any) *Cmd[T] {
	return &Cmd[T]{raw: d.Do(ctx, args...), decode: decode}
}

// newKeyedCmd is newCmd for a command whose first key is argument pos: a cluster client routes it by
// that key from its first call (it learns key positions from COMMAND only afterwards).
func newKeyedCmd[T any](ctx context.Context, d doer, decode func(any) (T, error), pos int8, args ...any) *Cmd[T] {
	raw := redis.NewCmd(ctx, args...)
	raw.SetFirstKeyPos(pos)
	_ = d.Process(ctx, raw)
	return &Cmd[T]{raw: raw, decode: decode}
}

// Result returns the decoded reply, or the error: a server error reply as *Error, a reply of an
// unexpected shape as *DecodeError, or the go-redis error (network, context). The reply is decoded on
// every call, so a pipelined command's Result is only meaningful after Exec.
func (c *Cmd[T]) Result() (T, error) {
	v, err := c.raw.Result()
	if err != nil {
		var zero T
		return zero, wrapErr(err)
	}
	return c.decode(normalize(v))
}

// Val returns the decoded reply, or T's zero value when there was an error.
func (c *Cmd[T]) Val() T { v, _ := c.Result(); return v }

// Err returns the error of Result.
func (c *Cmd[T]) Err() error { _, err := c.Result(); return err }

// Raw returns the underlying go-redis command (arguments and undecoded reply).
func (c *Cmd[T]) Raw() *redis.Cmd { return c.raw }

// decodeOK reads a status reply; anything but "OK" is unexpected.
func decodeOK(v any) (string, error) {
	s, err := asString("OK", v)
	if err != nil {
		return "", err
	}
	if s != "OK" {
		return s, decodeErr("OK", v, "expected OK")
	}
	return s, nil
}
