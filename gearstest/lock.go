package gearstest

import "sync"

// globalLock models Redis' main thread: every client command holds it while it runs, sync executions
// hold it for their whole run, and atomic() blocks take it. An owner is a token (a non-empty string);
// the same token may take it again (re-entrant), which is how execute() inside a sync execution or an
// atomic() block avoids deadlocking against the command that started it.
type globalLock struct {
	sem chan struct{} // capacity 1: holding the slot is holding the lock

	mu    sync.Mutex // guards owner and depth
	owner string
	depth int
}

func newGlobalLock() *globalLock {
	return &globalLock{sem: make(chan struct{}, 1)}
}

// reenter takes the lock again when token already owns it.
func (l *globalLock) reenter(token string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if token != "" && l.owner == token {
		l.depth++
		return true
	}
	return false
}

func (l *globalLock) setOwner(token string) {
	l.mu.Lock()
	l.owner = token
	l.depth = 1
	l.mu.Unlock()
}

// acquire blocks until token owns the lock.
func (l *globalLock) acquire(token string) {
	if l.reenter(token) {
		return
	}
	l.sem <- struct{}{}
	l.setOwner(token)
}

// acquireOr waits until token owns the lock (true) or alt is closed first (false: not taken).
func (l *globalLock) acquireOr(token string, alt <-chan struct{}) bool {
	return l.take(token, true, alt)
}

// tryAcquire takes the lock for token if that does not need to wait.
func (l *globalLock) tryAcquire(token string) bool { return l.take(token, false, nil) }

// take is acquireOr (wait) and tryAcquire (not wait: only a free lock, or one token owns, is taken).
func (l *globalLock) take(token string, wait bool, alt <-chan struct{}) bool {
	if l.reenter(token) {
		return true
	}
	if wait {
		select {
		case l.sem <- struct{}{}:
		case <-alt:
			return false
		}
	} else {
		select {
		case l.sem <- struct{}{}:
		default:
			return false
		}
	}
	l.setOwner(token)
	return true
}

// release gives up one level of token's ownership. Releasing a lock token does not own is ignored,
// so that cleanup after a worker crash cannot unlock somebody else.
func (l *globalLock) release(token string) {
	l.mu.Lock()
	if l.owner != token || l.depth == 0 {
		l.mu.Unlock()
		return
	}
	l.depth--
	if l.depth > 0 {
		l.mu.Unlock()
		return
	}
	l.owner = ""
	l.mu.Unlock()
	<-l.sem
}

// handoff passes the lock from token from (which must own it) to token to, at depth 1 (the sync lane,
// lane.go). It does nothing when from does not own it.
func (l *globalLock) handoff(from, to string) {
	l.mu.Lock()
	if l.owner == from && l.depth > 0 {
		l.owner, l.depth = to, 1
	}
	l.mu.Unlock()
}

// releaseAll gives up every level of token's ownership (the sync lane's end, lane.go).
func (l *globalLock) releaseAll(token string) {
	l.mu.Lock()
	if l.owner != token || l.depth == 0 {
		l.mu.Unlock()
		return
	}
	l.owner, l.depth = "", 0
	l.mu.Unlock()
	<-l.sem
}
