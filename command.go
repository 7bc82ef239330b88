package gears

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Func calls a server-side function registered by Command: it sends the trigger with args and decodes
// the reply into T. Arguments are sent as go-redis sends command arguments (strings, []byte, numbers
// formatted as text); the Python function receives them as str.
type Func[T any] func(ctx context.Context, args ...any) (T, error)

// Command returns a Func that calls script's Function inside RedisGears under trigger.
//
// Command does no I/O. The first call renders gears/templates/command.py — the script's Source followed
// by a CommandReader registration that calls Function with the trigger's arguments (and Then on its
// result), with convertToStr=False so that replies stay native — and makes sure the server holds exactly
// that code before calling:
//
//   - concurrent first calls in one process share one registration attempt;
//   - across processes the registration lives in a session with a deterministic id ("gears_<trigger>",
//     see WithSessionID) whose description carries a hash of the code (and the WithVersion version): a
//     session with the same hash is used as it is, one with another hash is upgraded atomically (see
//     WithOnConflict and WithVersion);
//   - at most one RG.PYEXECUTE of the session is in flight at any time, across all processes and
//     machines: a real RedisGears 1.2.13 crashes when two overlap. A registration lock held in Redis
//     (LockKey, reglock.go) serialises them; processes that lose it wait for the holder and check again;
//   - a RedisGears 1.0 server (no sessions) is recognised and handled through RG.DUMPREGISTRATIONS;
//   - a failed registration is not remembered: the next call tries again, and the error says why.
//
// When a call finds that the server no longer knows the trigger (restart without persistence, failover,
// someone unregistered it), the Func registers again and retries that call once. A call whose execution
// the server dropped or aborted (a reply without records) returns ErrAborted, unless the Func was made
// WithIdempotent: then it is retried.
//
// rdb may be a *redis.ClusterClient (or a redis.UniversalClient made with several addresses): the
// registration is sent once for the whole cluster, RedisGears applies it on every shard, and the session
// is checked and written on the master that owns LockKey's slot (cluster.go). A Script with a key of its
// own (CacheGet) is then called with RG.TRIGGERONKEY on that key.
//
// Problems with the arguments of Command itself (an invalid Script, Mode or option) are returned by
// every call of the Func.
func Command[T any](trigger string, rdb redis.UniversalClient, script Script, opts ...Option) Func[T] {
	var o commandOptions
	for _, opt := range script.defaults { // the script's own defaults first (CacheGet's), opts override them
		opt(&o)
	}
	for _, opt := range opts {
		opt(&o)
	}
	reg, setupErr := newRegistrar(trigger, NewClient(rdb), script, &o)
	if rdb == nil {
		setupErr = errors.New("gears: Command needs a go-redis client")
	}
	decode, decErr := decoderFor[T](o.decoder)
	if setupErr == nil {
		setupErr = decErr
	}
	if setupErr != nil {
		return func(context.Context, ...any) (T, error) {
			var zero T
			return zero, setupErr
		}
	}
	c := &caller[T]{rdb: rdb, reg: reg, decode: decode, cmd: any("RG.TRIGGER"), trigger: any(trigger)}
	c.idempotent = o.idempotent
	c.lookup = script.fastPath()
	switch {
	case o.keyRouting:
		c.cmd = any("RG.TRIGGERONKEY")
		c.needKey, c.keyed = true, true
	case isCluster(rdb):
		// The script's own key (CacheGet: the URL's cache key), so that the call runs on the shard that
		// owns the data it touches. On a single server RG.TRIGGER is enough, and keeps RedisGears 1.0.
		c.routeKey = script.keyRoute()
	}
	return c.call
}

// registrar makes sure one trigger's code is registered; it is shared by every call of one Func. The
// deployer does the work; the registrar remembers success and shares attempts between callers.
type registrar struct {
	*deployer

	ready atomic.Bool   // the code is known to be registered (fast path)
	gen   atomic.Uint64 // incremented by every successful registration

	mu     sync.Mutex // guards flight
	flight *flight    // the registration attempt in progress, nil if none
}

// flight is one registration attempt that concurrent callers share.
type flight struct {
	done chan struct{} // closed when err is set
	err  error
}

func newRegistrar(trigger string, client *Client, script Script, o *commandOptions) (*registrar, error) {
	if trigger == "" {
		return nil, errors.New("gears: Command needs a trigger name")
	}
	if !utf8.ValidString(trigger) {
		return nil, fmt.Errorf("gears: trigger %q is not valid UTF-8", trigger)
	}
	if err := script.validate(); err != nil {
		return nil, err
	}
	mode := o.mode
	if mode == "" {
		mode = Async
	}
	switch mode {
	case Async, AsyncLocal, Sync:
	default:
		return nil, fmt.Errorf("gears: unknown mode %q (want Async, AsyncLocal or Sync)", string(mode))
	}
	sid := o.sessionID
	if sid == "" {
		sid = sessionIDFor(trigger)
	}
	if !validSessionID(sid) {
		return nil, fmt.Errorf("gears: session id %q may only hold letters, digits, '-' and '_'", sid)
	}
	reqs := append(append([]string(nil), script.Requirements...), o.requirements...)
	p := commandParams{Source: script.Source, Function: script.Function, Then: script.Then,
		Trigger: trigger, Mode: string(mode), Desc: o.description}
	// The hash covers the script as rendered with the user's description only; the description that is
	// finally rendered and sent also carries the hash.
	unhashed, err := renderCommand(p)
	if err != nil {
		return nil, err
	}
	hash := contentHash(unhashed, reqs, sid)
	p.Desc = withMarker(o.description, hash, o.version)
	rendered, err := renderCommand(p)
	if err != nil {
		return nil, err
	}
	d, err := newDeployer(client, sid, rendered, hash, p.Desc, reqs, o)
	if err != nil {
		return nil, err
	}
	d.trigger, d.onKey = trigger, o.keyRouting
	return &registrar{deployer: d}, nil
}

// ensure returns once the code is registered, with the registration generation the caller relies on.
// Concurrent callers share one attempt; a caller whose ctx ends stops waiting (the attempt goes on for
// the others, bounded by the go-redis client's timeouts).
func (r *registrar) ensure(ctx context.Context) (uint64, error) {
	if r.ready.Load() {
		return r.gen.Load(), nil
	}
	r.mu.Lock()
	if r.ready.Load() {
		r.mu.Unlock()
		return r.gen.Load(), nil
	}
	f := r.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		r.flight = f
		// The attempt must not die with the first caller's context: others share it.
		go r.run(context.WithoutCancel(ctx), f)
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return r.gen.Load(), f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run performs one registration attempt and publishes its outcome. Only success is remembered.
func (r *registrar) run(ctx context.Context, f *flight) {
	_, err := r.deploy(ctx)
	r.mu.Lock()
	if err == nil {
		r.gen.Add(1)
		r.ready.Store(true)
	}
	f.err = err
	r.flight = nil
	r.mu.Unlock()
	close(f.done)
}

// invalidate forgets the registration a call relied on (generation gen) after the server said it does
// not know the trigger. A later generation means another call has registered again meanwhile.
func (r *registrar) invalidate(gen uint64) {
	r.mu.Lock()
	if r.gen.Load() == gen {
		r.ready.Store(false)
	}
	r.mu.Unlock()
}
