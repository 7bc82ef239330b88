package gears

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	c.lookup = script.lookup
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
	version   uint64 // WithVersion; carried in the description next to the hash
	onKey     bool
	lock      *regLock

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
	lockTTL := o.lockTTL
	if lockTTL == 0 {
		lockTTL = DefaultLockTTL
	}
	if lockTTL < 30*time.Millisecond {
		return nil, fmt.Errorf("gears: lock TTL %v is too short (at least 30ms)", lockTTL)
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
	return &registrar{client: client, trigger: trigger, script: rendered, hash: hash, desc: p.Desc,
		sessionID: sid, reqs: reqs, policy: o.policy, version: o.version, onKey: o.keyRouting,
		lock: &regLock{rdb: client.Redis(), key: LockKey(sid), ttl: lockTTL}}, nil
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

// maxAttempts bounds the check/create loop under the lock; a loop only repeats when something that does
// not take the registration lock (another client, an operator) changed the session meanwhile.
const maxAttempts = 5

// registrationTimeout bounds one registration attempt, lock waits included. Callers stop waiting
// earlier when their own context ends.
const registrationTimeout = 5 * time.Minute

// register brings the server to hold this registrar's code under its trigger, following the
// registration lock protocol (reglock.go): check without the lock; when something must be sent, take
// the session's lock (or wait for its holder and check again), check again and send one RG.PYEXECUTE.
func (r *registrar) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registrationTimeout)
	defer cancel()
	for {
		done, err := r.upToDate(ctx)
		if err != nil {
			return r.wrap(err)
		}
		if done {
			return nil
		}
		held, err := r.lock.tryAcquire(ctx)
		if err != nil {
			return r.wrap(fmt.Errorf("taking the registration lock %s: %w", r.lock.key, err))
		}
		if held == nil {
			if err := r.lock.waitFree(ctx); err != nil {
				return r.wrap(fmt.Errorf("waiting for the registration lock %s, held by another process: %w", r.lock.key, err))
			}
			continue
		}
		err = r.registerLocked(ctx)
		if outcomeUnknown(err) {
			r.settle(ctx, held)
		} else {
			// A failed release leaves the key to expire after one TTL; the outcome stands either way.
			_ = held.release(ctx)
		}
		return r.wrap(err)
	}
}

// registerLocked does what the session needs while this process holds its lock.
func (r *registrar) registerLocked(ctx context.Context) error {
	if r.legacy.Load() {
		return r.register10(ctx)
	}
	return r.register12(ctx)
}

// unknownOutcome marks an RG.PYEXECUTE error that leaves open whether the server received and ran the
// command: a timeout or a broken connection, as opposed to the server's own error reply.
type unknownOutcome struct{ err error }

func (e *unknownOutcome) Error() string { return e.err.Error() }
func (e *unknownOutcome) Unwrap() error { return e.err }

// pyExecute sends the registration script with opts, marking errors whose outcome is unknown.
func (r *registrar) pyExecute(ctx context.Context, opts *PyExecuteOptions) error {
	_, err := r.client.PyExecute(ctx, r.script, opts)
	var re redis.Error
	if err != nil && !errors.As(err, &re) {
		return &unknownOutcome{err}
	}
	return err
}

// outcomeUnknown reports whether err comes from an RG.PYEXECUTE that may still run on the server.
func outcomeUnknown(err error) bool {
	var u *unknownOutcome
	return errors.As(err, &u)
}

// settle keeps the lock after an RG.PYEXECUTE whose outcome is unknown, which may still run on the
// server: until the session shows this code, or unknownOutcomeHold has passed. Then it lets the key
// expire rather than deleting it, so that no other process sends its RG.PYEXECUTE too early.
func (r *registrar) settle(ctx context.Context, held *heldLock) {
	defer held.abandon()
	ctx, cancel := context.WithTimeout(ctx, unknownOutcomeHold)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if done, err := r.upToDate(ctx); err == nil && done {
			_ = held.release(ctx)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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

// action is what a registration needs to do to a session.
type action int

const (
	actNone    action = iota // the session holds this code, or code that is kept (newer version, Keep)
	actCreate                // no session: create it
	actUpgrade               // other code, or this code without registrations: RG.PYEXECUTE … UPGRADE
)

// upToDate reports whether the server already holds code this registrar accepts, without the lock.
// It also discovers a RedisGears 1.0 server.
func (r *registrar) upToDate(ctx context.Context) (bool, error) {
	if r.legacy.Load() {
		mine, err := r.legacyRegistration(ctx)
		if err != nil {
			return false, err
		}
		act, err := r.decide(mine != nil, mine.descOrEmpty(), mine != nil)
		return act == actNone, err
	}
	s, err := r.session(ctx)
	if errors.Is(err, errLegacy) {
		r.legacy.Store(true)
		return r.upToDate(ctx)
	}
	if err != nil {
		return false, err
	}
	act, err := r.decide(!s.Missing, s.Description, len(s.RegistrationIDs) > 0)
	return act == actNone, err
}

// decide compares what the server holds with this registrar's code. exists: there is a session (1.2) or
// a registration of the trigger (1.0); desc: its description; registered: it holds registrations.
//
// With policy Upgrade, code whose description carries a higher version (WithVersion) than this one is
// kept: an older process that starts late in a rolling deploy does not undo the newer code. Equal
// versions (both unversioned, say) with different code: the code being registered now wins.
func (r *registrar) decide(exists bool, desc string, registered bool) (action, error) {
	if !exists {
		return actCreate, nil
	}
	hash, version := parseMarker(desc)
	if hash == r.hash {
		if registered {
			return actNone, nil
		}
		// Our session without registrations: they were unregistered while an execution still held
		// the session. Register the code again under it.
		return actUpgrade, nil
	}
	switch r.policy {
	case Keep:
		return actNone, nil
	case Fail:
		return actNone, fmt.Errorf("%w: session %s holds code %q", ErrConflict, r.sessionID, hash)
	}
	if version > r.version {
		return actNone, nil
	}
	return actUpgrade, nil
}

// session reads the registrar's session; errLegacy on a RedisGears 1.0 server.
func (r *registrar) session(ctx context.Context) (Session, error) {
	sessions, err := r.client.PyDumpSessions(ctx, &PyDumpSessionsOptions{Sessions: []string{r.sessionID}})
	if err != nil {
		if errors.Is(err, ErrUnknownCommand) {
			return Session{}, errLegacy
		}
		return Session{}, fmt.Errorf("checking session: %w", err)
	}
	if len(sessions) != 1 {
		return Session{}, fmt.Errorf("checking session: RG.PYDUMPSESSIONS SESSIONS %s returned %d entries", r.sessionID, len(sessions))
	}
	return sessions[0], nil
}

// register12 uses sessions (RedisGears 1.2), under the lock: check the session, then create or upgrade
// it. A create that finds the session or the trigger taken (by a client that does not take the lock)
// checks again.
func (r *registrar) register12(ctx context.Context) error {
	foreign := false // the last create failed because another session holds the trigger
	for attempt := 0; attempt < maxAttempts; attempt++ {
		s, err := r.session(ctx)
		if err != nil {
			return err
		}
		act, err := r.decide(!s.Missing, s.Description, len(s.RegistrationIDs) > 0)
		if err != nil {
			return err
		}
		switch act {
		case actNone:
			return nil
		case actUpgrade:
			if err := r.pyExecute(ctx, r.pyOptions(true, "")); err != nil {
				return fmt.Errorf("upgrading session: %w", err)
			}
			return nil
		}
		if foreign {
			return r.takeOver(ctx)
		}
		err = r.pyExecute(ctx, r.pyOptions(false, ""))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrSessionExists):
			// Created meanwhile by a client that does not take the lock: check its code.
		case errors.Is(err, ErrTriggerRegistered):
			// A foreign session owns the trigger (or ours appeared meanwhile: the next check shows it).
			foreign = true
		default:
			return err
		}
	}
	return fmt.Errorf("gave up after %d attempts: the session kept changing under other clients", maxAttempts)
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
	if err := r.pyExecute(ctx, r.pyOptions(false, owner)); err != nil {
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

// legacyRegistration finds the registration of the trigger on a RedisGears 1.0 server; nil if none.
func (r *registrar) legacyRegistration(ctx context.Context) (*Registration, error) {
	regs, err := r.client.DumpRegistrations(ctx)
	if errors.Is(err, ErrUnknownCommand) {
		return nil, fmt.Errorf("the server has no RedisGears module: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("listing registrations: %w", err)
	}
	for i := range regs {
		if regs[i].Reader == "CommandReader" && regs[i].Data.Args.Trigger == r.trigger {
			return &regs[i], nil
		}
	}
	return nil, nil
}

// descOrEmpty is the registration's desc; "" for none.
func (reg *Registration) descOrEmpty() string {
	if reg == nil {
		return ""
	}
	return reg.Desc
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
		mine, err := r.legacyRegistration(ctx)
		if err != nil {
			return err
		}
		act, err := r.decide(mine != nil, mine.descOrEmpty(), mine != nil)
		if err != nil || act == actNone {
			return err
		}
		if mine != nil {
			if err := r.client.Unregister(ctx, mine.ID, false); err != nil && !errors.Is(err, ErrNotRegistered) {
				return fmt.Errorf("unregistering %s: %w", mine.ID, err)
			}
		}
		err = r.pyExecute(ctx, &PyExecuteOptions{Requirements: r.reqs})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrTriggerRegistered):
			// Registered meanwhile by a client that does not take the lock: check its code.
		default:
			return err
		}
	}
	return fmt.Errorf("gave up after %d attempts: the registration kept changing under other clients", maxAttempts)
}
