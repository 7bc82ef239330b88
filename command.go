package gears

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
//     see WithSessionID) whose description carries a hash of the code: a session with the same hash is
//     used as it is, one with another hash is upgraded atomically (see WithOnConflict), and a race
//     between processes creating it ends with one registration;
//   - a RedisGears 1.0 server (no sessions) is recognised and handled through RG.DUMPREGISTRATIONS;
//   - a failed registration is not remembered: the next call tries again, and the error says why.
//
// When a call finds that the server no longer knows the trigger (restart without persistence, failover,
// someone unregistered it), the Func registers again and retries that call once. A call whose execution
// was aborted while it ran returns ErrAborted and is not retried.
//
// Problems with the arguments of Command itself (an invalid Script, Mode or option) are returned by
// every call of the Func.
func Command[T any](trigger string, rdb redis.UniversalClient, script Script, opts ...Option) Func[T] {
	var o commandOptions
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
	if o.keyRouting {
		c.cmd = any("RG.TRIGGERONKEY")
		c.needKey = true
	}
	return c.call
}

// registrar makes sure one trigger's code is registered; it is shared by every call of one Func.
type registrar struct {
	client    *Client
	trigger   string
	script    string // the rendered registration script
	hash      string
	desc      string // description sent: the user's plus the hash marker
	sessionID string
	reqs      []string
	policy    ConflictPolicy
	onKey     bool

	ready  atomic.Bool   // the code is known to be registered (fast path)
	gen    atomic.Uint64 // incremented by every successful registration
	legacy atomic.Bool   // the server is RedisGears 1.0

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
	switch o.policy {
	case Upgrade, Keep, Fail:
	default:
		return nil, fmt.Errorf("gears: unknown conflict policy %v", o.policy)
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
	p.Desc = withHash(o.description, hash)
	rendered, err := renderCommand(p)
	if err != nil {
		return nil, err
	}
	return &registrar{client: client, trigger: trigger, script: rendered, hash: hash, desc: p.Desc,
		sessionID: sid, reqs: reqs, policy: o.policy, onKey: o.keyRouting}, nil
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
	err := r.register(ctx)
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

// errLegacy reports that the server is RedisGears 1.0 (no RG.PYDUMPSESSIONS).
var errLegacy = errors.New("gears: RedisGears 1.0 server")

// maxAttempts bounds the check/create loop when processes race; each lost race is followed by a check
// that normally finds the winner's registration.
const maxAttempts = 5

// register brings the server to hold this registrar's code under its trigger.
func (r *registrar) register(ctx context.Context) error {
	if !r.legacy.Load() {
		err := r.register12(ctx)
		if !errors.Is(err, errLegacy) {
			return r.wrap(err)
		}
		r.legacy.Store(true)
	}
	return r.wrap(r.register10(ctx))
}

func (r *registrar) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &RegistrationError{Trigger: r.trigger, SessionID: r.sessionID, Err: err}
}

// RegistrationError is returned by a Func whose registration failed; Err says why (errors.Is sees
// through it, e.g. to ErrRequirements or a Python *Error).
type RegistrationError struct {
	// Trigger is the Command's trigger.
	Trigger string
	// SessionID is the session the Command registers under.
	SessionID string
	// Err is the cause.
	Err error
}

// Error describes the failed registration.
func (e *RegistrationError) Error() string {
	return fmt.Sprintf("gears: registering trigger %q (session %s): %s", e.Trigger, e.SessionID,
		strings.TrimPrefix(e.Err.Error(), "gears: "))
}

// Unwrap returns the cause.
func (e *RegistrationError) Unwrap() error { return e.Err }

// register12 uses sessions (RedisGears 1.2): check RG.PYDUMPSESSIONS SESSIONS <id>; same hash → done;
// other hash → per policy (UPGRADE); none → create, and when that loses a race against another process
// (session exists, or its trigger got registered first) check again.
func (r *registrar) register12(ctx context.Context) error {
	foreign := false // the last create failed because another session holds the trigger
	for attempt := 0; attempt < maxAttempts; attempt++ {
		sessions, err := r.client.PyDumpSessions(ctx, &PyDumpSessionsOptions{Sessions: []string{r.sessionID}})
		if err != nil {
			if errors.Is(err, ErrUnknownCommand) {
				return errLegacy
			}
			return fmt.Errorf("checking session: %w", err)
		}
		if len(sessions) != 1 {
			return fmt.Errorf("checking session: RG.PYDUMPSESSIONS SESSIONS %s returned %d entries", r.sessionID, len(sessions))
		}
		s := sessions[0]
		if !s.Missing {
			if hashOf(s.Description) == r.hash {
				if len(s.RegistrationIDs) > 0 {
					return nil
				}
				// Our session without registrations: they were unregistered while an execution still
				// held the session. Register the code again under it.
				if _, err := r.client.PyExecute(ctx, r.script, r.pyOptions(true, "")); err != nil {
					return fmt.Errorf("re-registering in session: %w", err)
				}
				return nil
			}
			switch r.policy {
			case Keep:
				return nil
			case Fail:
				return fmt.Errorf("%w: session %s holds code %q", ErrConflict, r.sessionID, hashOf(s.Description))
			}
			_, err := r.client.PyExecute(ctx, r.script, r.pyOptions(true, ""))
			if err != nil {
				return fmt.Errorf("upgrading session: %w", err)
			}
			return nil
		}
		if foreign {
			return r.takeOver(ctx)
		}
		_, err = r.client.PyExecute(ctx, r.script, r.pyOptions(false, ""))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrSessionExists):
			// Another process created the session first: check its code.
		case errors.Is(err, ErrTriggerRegistered):
			// Either another process of ours registered first (its session shows up on the next check),
			// or a foreign session owns the trigger.
			foreign = true
		default:
			return err
		}
	}
	return fmt.Errorf("gave up after %d attempts racing other registrations", maxAttempts)
}

// takeOver handles a trigger owned by a session that is not ours.
func (r *registrar) takeOver(ctx context.Context) error {
	owner, regs, err := r.owner(ctx)
	if err != nil {
		return err
	}
	switch r.policy {
	case Keep:
		return nil
	case Fail:
		return fmt.Errorf("%w: trigger is owned by session %s", ErrConflict, owner)
	}
	if owner == "" {
		// Unregistered since: the next attempt creates our session.
		return fmt.Errorf("%w: trigger owner vanished while registering; try again", ErrTriggerRegistered)
	}
	if len(regs) != 1 {
		return fmt.Errorf("%w by session %s, which holds %d registrations; not replacing it",
			ErrTriggerRegistered, owner, len(regs))
	}
	if _, err := r.client.PyExecute(ctx, r.script, r.pyOptions(false, owner)); err != nil {
		return fmt.Errorf("replacing session %s: %w", owner, err)
	}
	return nil
}

// owner finds the session that holds the trigger, and that session's registration ids.
func (r *registrar) owner(ctx context.Context) (string, []string, error) {
	regs, err := r.client.DumpRegistrations(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("finding the trigger's owner: %w", err)
	}
	for _, reg := range regs {
		if reg.Reader == "CommandReader" && reg.Data.Args.Trigger == r.trigger {
			return reg.Session.SessionName, reg.Session.Registrations, nil
		}
	}
	return "", nil, nil
}

func (r *registrar) pyOptions(upgrade bool, replace string) *PyExecuteOptions {
	return &PyExecuteOptions{ID: r.sessionID, Description: r.desc, Upgrade: upgrade, ReplaceWith: replace,
		Requirements: r.reqs}
}

// register10 handles RedisGears 1.0, which has neither sessions nor UPGRADE: the registration is found
// by trigger in RG.DUMPREGISTRATIONS and recognised by the hash in its desc (the template puts the
// description in GB(desc=…)); different code is unregistered, then the new code registered. Unlike 1.2
// this is not atomic: calls in between get ErrUnknownTrigger and are retried by the Func.
func (r *registrar) register10(ctx context.Context) error {
	if r.onKey {
		return errors.New("WithKeyRouting needs RG.TRIGGERONKEY, which RedisGears 1.0 does not have")
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		regs, err := r.client.DumpRegistrations(ctx)
		if errors.Is(err, ErrUnknownCommand) {
			return fmt.Errorf("the server has no RedisGears module: %w", err)
		}
		if err != nil {
			return fmt.Errorf("listing registrations: %w", err)
		}
		var mine *Registration
		for i := range regs {
			if regs[i].Reader == "CommandReader" && regs[i].Data.Args.Trigger == r.trigger {
				mine = &regs[i]
				break
			}
		}
		if mine != nil {
			if hashOf(mine.Desc) == r.hash {
				return nil
			}
			switch r.policy {
			case Keep:
				return nil
			case Fail:
				return fmt.Errorf("%w: registration %s holds code %q", ErrConflict, mine.ID, hashOf(mine.Desc))
			}
			if err := r.client.Unregister(ctx, mine.ID, false); err != nil && !errors.Is(err, ErrNotRegistered) {
				return fmt.Errorf("unregistering %s: %w", mine.ID, err)
			}
		}
		_, err = r.client.PyExecute(ctx, r.script, &PyExecuteOptions{Requirements: r.reqs})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrTriggerRegistered):
			// Another process registered first: check its code.
		default:
			return err
		}
	}
	return fmt.Errorf("gave up after %d attempts racing other registrations", maxAttempts)
}
