package gears

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// The registration lock.
//
// A real RedisGears 1.2.13 crashes (SIGSEGV) when two RG.PYEXECUTEs of one session id are in flight at
// the same time (gears-spec.md §8.1 K1), so every registration of a session is serialised across all
// processes by a lock held in Redis itself. The protocol, which a client in any language can follow:
//
//  1. Check RG.PYDUMPSESSIONS SESSIONS <id>. If the session already holds the wanted code, stop: no lock.
//  2. SET {gears}:reglock:<id> <random token> NX PX <ttl>. Every lock key carries the hash tag {gears},
//     so on Redis Cluster all of them live in one fixed slot (registrations are cluster-wide).
//  3. Won: check the session again (another holder may have finished between 1 and 2), send the one
//     RG.PYEXECUTE that is needed, and release with a compare-and-delete script (unlockScript). While the
//     RG.PYEXECUTE runs (a requirements install may take minutes) the holder renews the TTL every ttl/3
//     with a compare-and-pexpire script, so a holder that crashes frees the lock within one ttl.
//  4. Lost: wait until the key is gone (released, or expired after its holder died), polling with
//     backoff, then go back to 1. A waiter never sends an RG.PYEXECUTE of that session while the key
//     exists; its context bounds the wait.
//  5. When the holder cannot tell whether its RG.PYEXECUTE reached the server (a timeout or a broken
//     connection), the command may still be in flight there: it keeps the lock until the session shows
//     its code or unknownOutcomeHold has passed, then lets the key expire instead of deleting it.

// lockKeyPrefix starts every registration lock key; the hash tag puts them all in one cluster slot.
const lockKeyPrefix = "{gears}:reglock:"

// LockKey returns the Redis key of the registration lock of a session. Clients in other languages that
// register sessions which gears also registers should take the same lock (see the README).
func LockKey(sessionID string) string { return lockKeyPrefix + sessionID }

// DefaultLockTTL is the registration lock's time to live. The holder renews it while it works, so it
// only bounds how long a crashed holder blocks the others.
const DefaultLockTTL = 30 * time.Second

// unknownOutcomeHold bounds how long a holder keeps the lock after losing track of its RG.PYEXECUTE.
const unknownOutcomeHold = 2 * time.Minute

var (
	unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
	renewScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
)

// regLock is one process's handle on the registration lock of one session.
type regLock struct {
	rdb redis.UniversalClient
	key string
	ttl time.Duration
}

// heldLock is a lock this process holds; its renewer runs until release or abandon.
type heldLock struct {
	l     *regLock
	token string
	stop  chan struct{} // closed to stop the renewer
	done  chan struct{} // closed when the renewer has stopped
}

// tryAcquire takes the lock if it is free.
func (l *regLock) tryAcquire(ctx context.Context) (*heldLock, error) {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b[:])
	ok, err := l.rdb.SetNX(ctx, l.key, token, l.ttl).Result()
	if err != nil || !ok {
		return nil, err
	}
	h := &heldLock{l: l, token: token, stop: make(chan struct{}), done: make(chan struct{})}
	go h.renew(context.WithoutCancel(ctx))
	return h, nil
}

// acquire takes the lock, waiting for other holders; ctx bounds the wait. (Deploy does not use it: it
// checks the session again each time the lock is free, and may then need no lock at all.)
func (l *regLock) acquire(ctx context.Context) (*heldLock, error) {
	for {
		held, err := l.tryAcquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("taking the registration lock %s: %w", l.key, err)
		}
		if held != nil {
			return held, nil
		}
		if err := l.waitFree(ctx); err != nil {
			return nil, fmt.Errorf("waiting for the registration lock %s, held by another process: %w", l.key, err)
		}
	}
}

// waitFree returns when the lock key no longer exists (released, or expired with its holder), or when
// ctx ends. It polls with a jittered backoff from 2 ms to 250 ms.
func (l *regLock) waitFree(ctx context.Context) error {
	delay := 2 * time.Millisecond
	for {
		n, err := l.rdb.Exists(ctx, l.key).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		t := time.NewTimer(delay/2 + rand.N(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if delay < 250*time.Millisecond {
			delay = delay * 3 / 2
		}
	}
}

// renew extends the TTL every ttl/3 until stopped. A renewal that finds another token (the lock expired
// during a long stall and someone else took it) stops renewing: there is nothing left to protect.
func (h *heldLock) renew(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			n, err := renewScript.Run(ctx, h.l.rdb, []string{h.l.key}, h.token, h.l.ttl.Milliseconds()).Int64()
			if err == nil && n == 0 {
				return
			}
		}
	}
}

// stopRenewing stops the renewer and waits for it.
func (h *heldLock) stopRenewing() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// release deletes the key if it still holds this token.
func (h *heldLock) release(ctx context.Context) error {
	h.stopRenewing()
	err := unlockScript.Run(context.WithoutCancel(ctx), h.l.rdb, []string{h.l.key}, h.token).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// abandon stops renewing and leaves the key to expire: used when an RG.PYEXECUTE may still be in flight.
func (h *heldLock) abandon() { h.stopRenewing() }
