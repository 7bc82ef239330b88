package gears

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Plan reports what Deploy(ctx, rdb, s, opts...) would do now — Created, Upgraded or Unchanged — without
// sending any RG.PYEXECUTE or taking the registration lock: it reads the session once
// (RG.PYDUMPSESSIONS SESSIONS) and compares the marker in its description with the hash Deploy would
// send, with Deploy's rules (WithVersion, WithOnConflict; a session of this code that lost its
// registrations would be Upgraded). With the Fail policy a conflict is an error matching ErrConflict, as
// from Deploy. The answer is a snapshot: another client may change the session right after. Plan needs
// RedisGears 1.2, as Deploy does.
func Plan(ctx context.Context, rdb redis.UniversalClient, s Session, opts ...Option) (Action, error) {
	if strings.TrimSpace(s.Source) == "" {
		return Unchanged, errors.New("gears: Plan needs the session's Source")
	}
	d, err := sessionDeployer(rdb, s, opts)
	if err != nil {
		return Unchanged, err
	}
	info, err := d.session(ctx)
	if errors.Is(err, errLegacy) {
		return Unchanged, d.wrap(errors.New("Plan needs RedisGears 1.2 (sessions); this server is RedisGears 1.0"))
	}
	if err != nil {
		return Unchanged, d.wrap(err)
	}
	act, err := d.decide(!info.Missing, info.Description, len(info.RegistrationIDs) > 0)
	if err != nil {
		return Unchanged, d.wrap(err)
	}
	switch act {
	case actCreate:
		return Created, nil
	case actUpgrade:
		return Upgraded, nil
	}
	return Unchanged, nil
}

// Undeploy unregisters every registration of session id (RG.UNREGISTER of each id RG.PYDUMPSESSIONS
// lists; a server that frees a session with its last registration then forgets the session) and
// returns the ids it unregistered; none, and no error, when the session does not exist. It holds the
// session's registration lock meanwhile, so it never interleaves with a Deploy or Command of that
// session in another process. Pending executions of the registrations are not aborted. Option that
// applies: WithLockTTL.
func Undeploy(ctx context.Context, rdb redis.UniversalClient, id string, opts ...Option) ([]string, error) {
	d, err := sessionDeployer(rdb, Session{ID: id, Source: "-"}, opts)
	if err != nil {
		return nil, err
	}
	held, err := d.lock.acquire(ctx)
	if err != nil {
		return nil, d.wrap(err)
	}
	ids, err := d.unregisterAll(ctx)
	_ = held.release(ctx)
	return ids, d.wrap(err)
}

// unregisterAll unregisters the session's registrations; the caller holds the lock.
func (r *deployer) unregisterAll(ctx context.Context) ([]string, error) {
	info, err := r.session(ctx)
	if errors.Is(err, errLegacy) {
		return nil, errors.New("Undeploy needs RedisGears 1.2 (sessions); this server is RedisGears 1.0")
	}
	if err != nil || info.Missing {
		return nil, err
	}
	var done []string
	for _, rid := range info.RegistrationIDs {
		if err := r.unregister(ctx, rid); err != nil && !errors.Is(err, ErrNotRegistered) {
			return done, fmt.Errorf("unregistering %s: %w", rid, err)
		}
		done = append(done, rid)
	}
	return done, nil
}

// unregister sends RG.UNREGISTER of a registration id through the session's node (home).
func (r *deployer) unregister(ctx context.Context, id string) error {
	c, err := r.home(ctx)
	if err != nil {
		return err
	}
	return c.Unregister(ctx, id, false)
}

// sessionDeployer builds the deployer Deploy would use for s, without sending anything.
func sessionDeployer(rdb redis.UniversalClient, s Session, opts []Option) (*deployer, error) {
	if rdb == nil {
		return nil, errors.New("gears: needs a go-redis client")
	}
	var o commandOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !validSessionID(s.ID) {
		return nil, fmt.Errorf("gears: session id %q may only hold letters, digits, '-' and '_'", s.ID)
	}
	reqs := append(append([]string(nil), s.Requirements...), o.requirements...)
	hash := contentHash(s.Source, reqs, s.ID)
	return newDeployer(NewClient(rdb), s.ID, s.Source, hash, withMarker(s.Description, hash, o.version), reqs, &o)
}

// ParseError parses an error text the server sent inside a reply rather than as an error reply — an
// entry of ExecResult.Errors, a registration's RegistrationData.LastError — into an *Error, with its
// Python traceback split into lines and frames as for error replies.
func ParseError(text string) *Error { return parseError(text) }
