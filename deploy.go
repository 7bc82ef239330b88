package gears

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session is a Python script that Deploy makes a RedisGears 1.2 server hold as one session: the script's
// registrations (KeysReader, StreamReader, CommandReader, …) live and are upgraded together.
type Session struct {
	// ID is the session id: letters, digits, '-' and '_'.
	ID string
	// Source is the Python 3.7 script, sent as it is with RG.PYEXECUTE.
	Source string
	// Description is the session's description; Deploy appends the marker of the code to it.
	Description string
	// Requirements are pip requirement specifiers installed before the script runs.
	Requirements []string
}

// Action says what Deploy did.
type Action int

const (
	// Unchanged: the server already held this code (or code it keeps: a higher WithVersion, or the
	// Keep policy); nothing was sent.
	Unchanged Action = iota
	// Created: the session did not exist and was created.
	Created
	// Upgraded: the session held other code and was upgraded atomically (RG.PYEXECUTE … UPGRADE).
	Upgraded
)

// String names the action.
func (a Action) String() string {
	switch a {
	case Unchanged:
		return "unchanged"
	case Created:
		return "created"
	case Upgraded:
		return "upgraded"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Deployment is the outcome of Deploy.
type Deployment struct {
	// Action is what Deploy did.
	Action Action
	// RegistrationIDs are the session's registration ids after Deploy.
	RegistrationIDs []string
}

// Deploy makes the server hold exactly s.Source as session s.ID: created when absent, upgraded
// atomically when the code differs (per WithOnConflict and WithVersion), untouched when equal. It has
// Command's guarantees — the description carries a hash of the code, and at most one RG.PYEXECUTE of
// the session is in flight at any time across all processes (the registration lock, LockKey) — and
// Command is a Deploy of a rendered template. This is how a service ships //go:embed-ed .py files of
// event registrations at start-up. Options that apply: WithOnConflict, WithVersion, WithLockTTL,
// WithRequirements (added to s.Requirements). RedisGears 1.0 has no sessions: Deploy fails there.
func Deploy(ctx context.Context, rdb redis.UniversalClient, s Session, opts ...Option) (Deployment, error) {
	if rdb == nil {
		return Deployment{}, errors.New("gears: Deploy needs a go-redis client")
	}
	if strings.TrimSpace(s.Source) == "" {
		return Deployment{}, errors.New("gears: Deploy needs the session's Source")
	}
	d, err := sessionDeployer(rdb, s, opts)
	if err != nil {
		return Deployment{}, err
	}
	d.needIDs = true
	return d.deploy(ctx)
}

// deployer makes the server hold one session's code. Deploy uses one per call; a Command's registrar
// keeps one for the Func's lifetime.
type deployer struct {
	client    *Client
	sessionID string
	script    string // sent with RG.PYEXECUTE
	hash      string // content hash of the code (contentHash)
	desc      string // description sent: the user's plus the marker (withMarker)
	reqs      []string
	policy    ConflictPolicy
	version   uint64 // WithVersion; carried in the description next to the hash
	lock      *regLock
	needIDs   bool // Deploy reports the registration ids

	// Command only: its trigger (for a trigger owned by a foreign session, and on RedisGears 1.0, where
	// the registration is found by trigger) and WithKeyRouting.
	trigger string
	onKey   bool

	legacy atomic.Bool // the server is RedisGears 1.0
}

// newDeployer checks the options that concern every deployment and builds the deployer.
func newDeployer(client *Client, sid, script, hash, desc string, reqs []string, o *commandOptions) (*deployer, error) {
	switch o.policy {
	case Upgrade, Keep, Fail:
	default:
		return nil, fmt.Errorf("gears: unknown conflict policy %v", o.policy)
	}
	ttl := o.lockTTL
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	if ttl < 30*time.Millisecond {
		return nil, fmt.Errorf("gears: lock TTL %v is too short (at least 30ms)", ttl)
	}
	return &deployer{client: client, sessionID: sid, script: script, hash: hash, desc: desc, reqs: reqs,
		policy: o.policy, version: o.version, lock: &regLock{rdb: client.Redis(), key: LockKey(sid), ttl: ttl}}, nil
}

// errLegacy reports that the server is RedisGears 1.0 (no RG.PYDUMPSESSIONS).
var errLegacy = errors.New("gears: RedisGears 1.0 server")

// maxAttempts bounds the check/create loop under the lock; a loop only repeats when something that does
// not take the registration lock (another client, an operator) changed the session meanwhile.
const maxAttempts = 5

// registrationTimeout bounds one registration attempt, lock waits included. Callers stop waiting
// earlier when their own context ends.
const registrationTimeout = 5 * time.Minute

// deploy brings the server to hold this code in the session, following the registration lock protocol
// (reglock.go): check without the lock; when something must be sent, take the session's lock (or wait
// for its holder and check again), check again and send one RG.PYEXECUTE.
func (r *deployer) deploy(ctx context.Context) (Deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, registrationTimeout)
	defer cancel()
	for {
		done, ids, err := r.upToDate(ctx)
		if err != nil {
			return Deployment{}, r.wrap(err)
		}
		if done {
			return Deployment{Action: Unchanged, RegistrationIDs: ids}, nil
		}
		held, err := r.lock.tryAcquire(ctx)
		if err != nil {
			return Deployment{}, r.wrap(fmt.Errorf("taking the registration lock %s: %w", r.lock.key, err))
		}
		if held == nil {
			if err := r.lock.waitFree(ctx); err != nil {
				return Deployment{}, r.wrap(fmt.Errorf("waiting for the registration lock %s, held by another process: %w", r.lock.key, err))
			}
			continue
		}
		d, err := r.registerLocked(ctx)
		if err == nil && r.needIDs && d.Action != Unchanged {
			// Read while the lock still keeps other registrations of the session out.
			d.RegistrationIDs, err = r.registrationIDs(ctx)
		}
		if outcomeUnknown(err) {
			r.settle(ctx, held)
		} else {
			// A failed release leaves the key to expire after one TTL; the outcome stands either way.
			_ = held.release(ctx)
		}
		return d, r.wrap(err)
	}
}

// registrationIDs reads the session's registration ids.
func (r *deployer) registrationIDs(ctx context.Context) ([]string, error) {
	if r.legacy.Load() {
		mine, err := r.triggerRegistration(ctx)
		if err != nil || mine == nil {
			return nil, err
		}
		return []string{mine.ID}, nil
	}
	s, err := r.session(ctx)
	return s.RegistrationIDs, err
}

// registerLocked does what the session needs while this process holds its lock.
func (r *deployer) registerLocked(ctx context.Context) (Deployment, error) {
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
func (r *deployer) pyExecute(ctx context.Context, opts *PyExecuteOptions) error {
	c, err := r.home(ctx)
	if err != nil {
		return err // nothing was sent
	}
	_, err = c.PyExecute(ctx, r.script, opts)
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
func (r *deployer) settle(ctx context.Context, held *heldLock) {
	defer held.abandon()
	ctx, cancel := context.WithTimeout(ctx, unknownOutcomeHold)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if done, _, err := r.upToDate(ctx); err == nil && done {
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

func (r *deployer) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &RegistrationError{Trigger: r.trigger, SessionID: r.sessionID, Err: err}
}

// RegistrationError is returned by a Func whose registration failed, and by Deploy; Err says why
// (errors.Is sees through it, e.g. to ErrRequirements or a Python *Error).
type RegistrationError struct {
	// Trigger is the Command's trigger; "" for Deploy.
	Trigger string
	// SessionID is the session the Command registers under.
	SessionID string
	// Err is the cause.
	Err error
}

// Error describes the failed registration.
func (e *RegistrationError) Error() string {
	cause := strings.TrimPrefix(e.Err.Error(), "gears: ")
	if e.Trigger == "" {
		return fmt.Sprintf("gears: deploying session %s: %s", e.SessionID, cause)
	}
	return fmt.Sprintf("gears: registering trigger %q (session %s): %s", e.Trigger, e.SessionID, cause)
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

// upToDate reports whether the server already holds code this deployer accepts, without the lock, and
// the registration ids it holds then. It also discovers a RedisGears 1.0 server.
func (r *deployer) upToDate(ctx context.Context) (bool, []string, error) {
	if r.legacy.Load() {
		mine, err := r.triggerRegistration(ctx)
		if err != nil {
			return false, nil, err
		}
		act, err := r.decide(mine != nil, mine.descOrEmpty(), mine != nil)
		if act != actNone || err != nil || mine == nil {
			return false, nil, err
		}
		return true, []string{mine.ID}, nil
	}
	s, err := r.session(ctx)
	if errors.Is(err, errLegacy) {
		if r.trigger == "" {
			return false, nil, errors.New("Deploy needs RedisGears 1.2 (sessions); this server is RedisGears 1.0")
		}
		r.legacy.Store(true)
		return r.upToDate(ctx)
	}
	if err != nil {
		return false, nil, err
	}
	act, err := r.decide(!s.Missing, s.Description, len(s.RegistrationIDs) > 0)
	return act == actNone && err == nil, s.RegistrationIDs, err
}

// decide compares what the server holds with this registrar's code. exists: there is a session (1.2) or
// a registration of the trigger (1.0); desc: its description; registered: it holds registrations.
//
// With policy Upgrade, code whose description carries a higher version (WithVersion) than this one is
// kept: an older process that starts late in a rolling deploy does not undo the newer code. Equal
// versions (both unversioned, say) with different code: the code being registered now wins.
func (r *deployer) decide(exists bool, desc string, registered bool) (action, error) {
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
func (r *deployer) session(ctx context.Context) (SessionInfo, error) {
	c, err := r.home(ctx)
	if err != nil {
		return SessionInfo{}, err
	}
	sessions, err := c.PyDumpSessions(ctx, &PyDumpSessionsOptions{Sessions: []string{r.sessionID}})
	if err != nil {
		if errors.Is(err, ErrUnknownCommand) {
			return SessionInfo{}, errLegacy
		}
		return SessionInfo{}, fmt.Errorf("checking session: %w", err)
	}
	if len(sessions) != 1 {
		return SessionInfo{}, fmt.Errorf("checking session: RG.PYDUMPSESSIONS SESSIONS %s returned %d entries", r.sessionID, len(sessions))
	}
	return sessions[0], nil
}

// register12 uses sessions (RedisGears 1.2), under the lock: check the session, then create or upgrade
// it. A create that finds the session or the trigger taken (by a client that does not take the lock)
// checks again.
func (r *deployer) register12(ctx context.Context) (Deployment, error) {
	foreign := false // the last create failed because another session holds the trigger
	for attempt := 0; attempt < maxAttempts; attempt++ {
		s, err := r.session(ctx)
		if err != nil {
			return Deployment{}, err
		}
		act, err := r.decide(!s.Missing, s.Description, len(s.RegistrationIDs) > 0)
		if err != nil {
			return Deployment{}, err
		}
		switch act {
		case actNone:
			return Deployment{Action: Unchanged, RegistrationIDs: s.RegistrationIDs}, nil
		case actUpgrade:
			if err := r.pyExecute(ctx, r.pyOptions(true, "")); err != nil {
				return Deployment{}, fmt.Errorf("upgrading session: %w", err)
			}
			return Deployment{Action: Upgraded}, nil
		}
		if foreign {
			return r.takeOver(ctx)
		}
		err = r.pyExecute(ctx, r.pyOptions(false, ""))
		switch {
		case err == nil:
			return Deployment{Action: Created}, nil
		case errors.Is(err, ErrSessionExists):
			// Created meanwhile by a client that does not take the lock: check its code.
		case errors.Is(err, ErrTriggerRegistered) && r.trigger != "":
			// A foreign session owns the trigger (or ours appeared meanwhile: the next check shows it).
			foreign = true
		default:
			return Deployment{}, err
		}
	}
	return Deployment{}, fmt.Errorf("gave up after %d attempts: the session kept changing under other clients", maxAttempts)
}

// takeOver handles a trigger owned by a session that is not ours (Command only).
func (r *deployer) takeOver(ctx context.Context) (Deployment, error) {
	owner, regs, err := r.owner(ctx)
	if err != nil {
		return Deployment{}, err
	}
	switch r.policy {
	case Keep:
		return Deployment{Action: Unchanged, RegistrationIDs: regs}, nil
	case Fail:
		return Deployment{}, fmt.Errorf("%w: trigger is owned by session %s", ErrConflict, owner)
	}
	if owner == "" {
		// Unregistered since: the next attempt creates our session.
		return Deployment{}, fmt.Errorf("%w: trigger owner vanished while registering; try again", ErrTriggerRegistered)
	}
	if len(regs) != 1 {
		return Deployment{}, fmt.Errorf("%w by session %s, which holds %d registrations; not replacing it",
			ErrTriggerRegistered, owner, len(regs))
	}
	if err := r.pyExecute(ctx, r.pyOptions(false, owner)); err != nil {
		return Deployment{}, fmt.Errorf("replacing session %s: %w", owner, err)
	}
	return Deployment{Action: Created}, nil
}

// owner finds the session that holds the trigger, and that session's registration ids.
func (r *deployer) owner(ctx context.Context) (string, []string, error) {
	reg, err := r.triggerRegistration(ctx)
	if err != nil || reg == nil {
		return "", nil, err
	}
	return reg.Session.SessionName, reg.Session.Registrations, nil
}

func (r *deployer) pyOptions(upgrade bool, replace string) *PyExecuteOptions {
	return &PyExecuteOptions{ID: r.sessionID, Description: r.desc, Upgrade: upgrade, ReplaceWith: replace,
		Requirements: r.reqs}
}

// triggerRegistration finds the CommandReader registration of the trigger in RG.DUMPREGISTRATIONS; nil
// if none. On RedisGears 1.0 it is how a Command finds its code.
func (r *deployer) triggerRegistration(ctx context.Context) (*Registration, error) {
	c, err := r.home(ctx)
	if err != nil {
		return nil, err
	}
	regs, err := c.DumpRegistrations(ctx)
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
func (r *deployer) register10(ctx context.Context) (Deployment, error) {
	if r.onKey {
		return Deployment{}, errors.New("WithKeyRouting needs RG.TRIGGERONKEY, which RedisGears 1.0 does not have")
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		mine, err := r.triggerRegistration(ctx)
		if err != nil {
			return Deployment{}, err
		}
		act, err := r.decide(mine != nil, mine.descOrEmpty(), mine != nil)
		if err != nil {
			return Deployment{}, err
		}
		if act == actNone {
			return Deployment{Action: Unchanged, RegistrationIDs: []string{mine.ID}}, nil
		}
		action := Created
		if mine != nil {
			action = Upgraded
			if err := r.unregister(ctx, mine.ID); err != nil && !errors.Is(err, ErrNotRegistered) {
				return Deployment{}, fmt.Errorf("unregistering %s: %w", mine.ID, err)
			}
		}
		err = r.pyExecute(ctx, &PyExecuteOptions{Requirements: r.reqs})
		switch {
		case err == nil:
			return Deployment{Action: action}, nil
		case errors.Is(err, ErrTriggerRegistered):
			// Registered meanwhile by a client that does not take the lock: check its code.
		default:
			return Deployment{}, err
		}
	}
	return Deployment{}, fmt.Errorf("gave up after %d attempts: the registration kept changing under other clients", maxAttempts)
}
