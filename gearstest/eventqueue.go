package gearstest

import (
	"strconv"
	"sync"
)

// The executions of keyspace events raised while the Python worker restarts (it died; a new one is
// restoring the sessions) are queued, and delivered to the restored registrations, in the order the
// writes raised them, once the sessions are back. A real RedisGears has no such window (its Python
// runs inside Redis): without the queue these events would be lost.
//
// What is queued is decided when the write happens, as the real server decides it in the keyspace
// notification: which registrations the event fires (prefix, eventTypes, commands=) and whether the
// key's type passes keyTypes=. Differences from a server that never restarts, which tests may see:
//   - a sync registration's execution runs after the write replied (the write cannot wait for the
//     restore: the restore needs the global lock the write holds), on the lock token replayToken;
//   - a write of a command hooked by commands= waits for its queued executions before it replies, as
//     it waits for async ones (override_reply() works);
//   - an execution whose registration was unregistered before the delivery is dropped (logged, counted).
//
// The queue is bounded (maxQueuedEvents executions). Beyond the bound an execution is dropped: the log
// says so at the first drop of each restart and sums them up at the delivery, and INFO gearstest counts
// them (events_restart_dropped). Nothing is dropped silently.

// maxQueuedEvents bounds the executions queued while the worker restarts.
const maxQueuedEvents = 10000

// replayToken owns the global lock while the queued executions are delivered.
const replayToken = "~replay"

// queuedEvent is one execution of a registration for an event, waiting for the worker.
type queuedEvent struct {
	r     *registration
	token string // the writer's lock token (an async execution tracks its self-triggering chain with it)
	e     keyEvent
	cc    *cmdCtx // the commands= context of the client command, or nil
}

// eventQueue holds the queued executions and the counters INFO gearstest shows.
type eventQueue struct {
	mu      sync.Mutex
	items   []queuedEvent
	max     int   // 0: maxQueuedEvents (tests lower it)
	queued  int64 // executions queued since the server started
	dropped int64 // executions dropped since the server started (bound, registration gone, Close)
	pending int64 // dropped by the bound since the last delivery (for its log line)
}

// queueing reports whether executions wait in the queue: then new ones queue behind them, so that
// they keep their order.
func (h *eventHub) queueing() bool {
	h.queue.mu.Lock()
	defer h.queue.mu.Unlock()
	return len(h.queue.items) > 0
}

// queueEvent queues the execution of r for e (called by fire, under the global lock).
func (s *Server) queueEvent(r *registration, token string, e keyEvent, cc *cmdCtx) {
	q := &s.ev.queue
	q.mu.Lock()
	limit := q.max
	if limit <= 0 {
		limit = maxQueuedEvents
	}
	if len(q.items) >= limit {
		q.dropped++
		q.pending++
		first := q.pending == 1
		q.mu.Unlock()
		if first {
			s.logf('#', "gearstest: %d event executions are queued while the python worker restarts (the "+
				"bound): dropping the execution of registration %s for %q on %q and the next ones until the "+
				"sessions are restored (INFO gearstest: events_restart_dropped)", limit, r.id, e.event, e.key)
		}
		return
	}
	if cc != nil {
		cc.wg.Add(1) // the command's reply waits for the delivery (cmdCtx.reply)
	}
	q.items = append(q.items, queuedEvent{r: r, token: token,
		e: keyEvent{event: e.event, key: append([]byte(nil), e.key...)}, cc: cc})
	q.queued++
	q.mu.Unlock()
}

// deliverQueuedEvents runs the queued executions in order on the restored worker, under the global
// lock (so that no new event overtakes them). It runs after every restart; when there is no worker
// (the server closes) the executions are dropped.
func (s *Server) deliverQueuedEvents() {
	if !s.ev.queueing() {
		return
	}
	if s.closed.Load() {
		s.dropQueuedEvents()
		return
	}
	s.lock.acquire(replayToken)
	defer s.lock.release(replayToken)
	q := &s.ev.queue
	q.mu.Lock()
	items := q.items
	q.items = nil
	bound := q.pending
	q.pending = 0
	q.mu.Unlock()
	wk := s.currentWorker()
	var gone int64
	for _, it := range items {
		switch {
		case wk == nil || s.closed.Load() || !s.state.isLive(it.r):
			gone++
		case it.r.ev.sr != nil:
			s.streamEvent(wk, it.r, it.e.key, replayToken)
		case it.r.mode == "sync":
			s.runKeyEvent(wk, it.r, replayToken, it.e, it.cc)
		default:
			s.runKeyEvent(wk, it.r, it.token, it.e, it.cc)
		}
		if it.cc != nil {
			it.cc.wg.Done()
		}
	}
	if gone > 0 {
		q.mu.Lock()
		q.dropped += gone
		q.mu.Unlock()
	}
	if bound > 0 || gone > 0 {
		s.logf('#', "gearstest: of the event executions queued while the python worker restarted, %d were "+
			"delivered, %d were dropped because the queue was full (%d) and %d because their registration "+
			"is gone or the server closes", int64(len(items))-gone, bound, maxQueuedEventsOf(q), gone)
	} else {
		s.logf('*', "gearstest: %d event executions queued while the python worker restarted were delivered",
			len(items))
	}
}

// dropQueuedEvents drops what is queued when the server closes while its worker restarts.
func (s *Server) dropQueuedEvents() {
	q := &s.ev.queue
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.dropped += int64(len(items))
	q.mu.Unlock()
	for _, it := range items {
		if it.cc != nil {
			it.cc.wg.Done()
		}
	}
	if len(items) > 0 {
		s.logf('#', "gearstest: the server closes: %d event executions queued while the python worker "+
			"restarted are dropped", len(items))
	}
}

func maxQueuedEventsOf(q *eventQueue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.max > 0 {
		return q.max
	}
	return maxQueuedEvents
}

// isLive reports whether r is still registered.
func (st *state) isLive(r *registration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.regs[r.id] == r
}

// gearstestInfo is INFO's "# gearstest" section: the hazards (hazards.go) and the event queue.
func (s *Server) gearstestInfo() string {
	return s.hazardInfo() + s.eventQueueInfo()
}

// eventQueueInfo is the event queue's part of INFO's "# gearstest" section.
func (s *Server) eventQueueInfo() string {
	q := &s.ev.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	return "events_restart_queued:" + strconv.FormatInt(q.queued, 10) + "\r\n" +
		"events_restart_dropped:" + strconv.FormatInt(q.dropped, 10) + "\r\n" +
		"events_restart_waiting:" + strconv.Itoa(len(q.items)) + "\r\n"
}
