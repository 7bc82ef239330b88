package gearstest

import (
	"sync"
	"time"
)

// syncLane lets sync RG.TRIGGER calls of different clients follow each other without a round trip
// through Go between them. Without it, each sync execution holds the global lock from its start to
// its end, and the next one is only sent to the worker after the previous one's `done` came back and
// the lock passed to the next client's goroutine: a wake-up of that goroutine and one of the worker
// per trigger, on the only path sync triggers have (they cannot overlap).
//
// A client whose sync trigger finds the lock free takes it as usual and starts a round: its trigger
// is sent with the lane flag `l`. While the round lasts, the lane holds the lock, and the sync
// triggers of other clients join it without waiting for the lock: each is accepted right away (as
// the lock's holder, the lane runs their startTrigger), sent with `l` in that order, and recorded in
// heads. The worker runs `l` triggers one at a time in the order it reads them, each after the
// previous one's `done` or `yield` (PROTOCOL.md), so exactly one of them runs at a time, as on the
// real server's main thread. The lock belongs to the token of the one running (heads[0]), so its
// execute() calls re-enter the lock; on its `done` or `yield` the reader goroutine, which reads the
// worker's messages in order, hands the lock to the next head before it reads anything that head
// sends. When no head is left, the lock is released and every command that waited for it goes on.
// At most laneMaxJoin triggers join a round, so commands waiting for the lock (and sync triggers
// beyond that) wait one round at most.
type syncLane struct {
	mu      sync.Mutex
	started chan struct{} // closed when a round starts (then replaced): RG.TRIGGERs waiting for the lock join it
	active  bool          // a round holds the global lock (for heads[0])
	wk      *workerProc   // the worker the round's triggers went to
	heads   []string      // lock tokens of the round's triggers not done or yielded, in the order sent
	joined  int           // triggers that joined the round

	// The worker whose reader thread is pinned for rounds (pin_linux.go), and the timer that
	// unpins it once no round started for unpinAfter: a client that sends sync triggers one at a
	// time starts a round per trigger, which should not cost two affinity changes each.
	pinned     *workerProc
	unpinTimer *time.Timer

	// Counted for tests: rounds started, and RG.TRIGGERs that found no room (join's next).
	rounds, waiting int
}

// unpinAfter is how long the lane stays pinned after a round ends (see syncLane.pinned).
const unpinAfter = 10 * time.Millisecond

// unpinLater arms the unpin timer (l.mu held).
func (l *syncLane) unpinLater() {
	if l.pinned == nil {
		return
	}
	if l.unpinTimer == nil {
		l.unpinTimer = time.AfterFunc(unpinAfter, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if !l.active {
				l.pinned.unpin()
				l.pinned = nil
			}
		})
		return
	}
	l.unpinTimer.Reset(unpinAfter)
}

// laneMaxJoin bounds how many sync triggers join one round (see syncLane).
const laneMaxJoin = 64

// join runs a client's RG.TRIGGER within an active round of the lane for wk when there is room, and
// reports whether it did. When it did not, next is closed when the next round starts: an RG.TRIGGER
// waiting for the global lock waits for either (cmdTrigger), so that the sync triggers of the
// clients that found a round full or none running join the next round together. (Waiting for the
// lock alone, each of them got in one per round: the lock passes to one waiter when a round ends,
// and its trigger starts the next round while the others still wait for the lock; rounds shrank to
// the ~12 clients that happened to come back while one ran, and the worker idled between rounds.)
func (l *syncLane) join(s *Server, wk *workerProc, c *client, args [][]byte) (v value, ok bool, next <-chan struct{}) {
	l.mu.Lock()
	if !l.active || l.wk != wk || l.joined >= laneMaxJoin {
		if l.started == nil {
			l.started = make(chan struct{})
		}
		next = l.started
		l.waiting++
		l.mu.Unlock()
		return value{}, false, next
	}
	r, e, err := s.state.startTrigger(string(args[1]), false)
	if err != nil {
		l.mu.Unlock()
		return errValue(err.Error()), true, nil
	}
	if r.mode != "sync" {
		// Accepted under the lane's lock; it runs without it, as async ones do.
		l.mu.Unlock()
		return s.runTrigger(wk, r, e, args, "x"+e.id, "", nil), true, nil
	}
	l.joined++
	pr, err := l.sendLocked(s, wk, c.token, e, r, args)
	l.mu.Unlock()
	return s.awaitTrigger(r, e, pr, err), true, nil
}

// start begins a round with the sync trigger of a client that holds the global lock (for tok).
func (l *syncLane) start(s *Server, wk *workerProc, tok string, r *registration, e *execution, args [][]byte) value {
	l.mu.Lock()
	l.active, l.wk, l.heads, l.joined = true, wk, l.heads[:0], 0
	if l.pinned != wk {
		l.pinned.unpin()
		wk.pin.set(true) // pin_linux.go
		l.pinned = wk
	}
	l.rounds++
	if l.started != nil {
		close(l.started) // the RG.TRIGGERs waiting for the lock join this round
		l.started = nil
	}
	pr, err := l.sendLocked(s, wk, tok, e, r, args)
	l.mu.Unlock()
	return s.awaitTrigger(r, e, pr, err)
}

// sendLocked sends a sync trigger of the round (under l.mu, so that heads and the pipe have the same
// order). When it cannot be sent, it leaves the round as if it had ended.
func (l *syncLane) sendLocked(s *Server, wk *workerProc, tok string, e *execution, r *registration, args [][]byte) (*pendingReq, error) {
	l.heads = append(l.heads, tok)
	pr, err := wk.startTriggerRequest(func() { l.advance(s, tok) }, r, e, tok, "l", args)
	if err != nil {
		l.heads = l.heads[:len(l.heads)-1]
		if len(l.heads) == 0 {
			l.active, l.wk = false, nil
			l.unpinLater()
		}
	}
	return pr, err
}

// advance runs on the `done` or `yield` of the round's trigger of tok (and when its request fails):
// the lock goes to the next head, or is released when there is none. Idempotent.
func (l *syncLane) advance(s *Server, tok string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.heads) == 0 || l.heads[0] != tok {
		return
	}
	l.heads = l.heads[1:]
	if len(l.heads) > 0 {
		s.lock.handoff(tok, l.heads[0])
		return
	}
	l.active, l.wk = false, nil
	l.unpinLater()
	s.lock.releaseAll(tok)
}

// reset ends the round of a worker that died (before its pending requests fail): the lock is
// released, whoever holds it for the round.
func (l *syncLane) reset(s *Server, wk *workerProc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active || l.wk != wk {
		return
	}
	if len(l.heads) > 0 {
		s.lock.releaseAll(l.heads[0])
	}
	l.active, l.wk, l.heads = false, nil, nil
}
