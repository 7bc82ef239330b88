package gearstest

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"
)

// pendingReq is a request sent to the worker that waits for its `done`.
type pendingReq struct {
	ch chan value // gets the result value; errWorkerDied is delivered as an error value
	// release, when set, is called when the request stops needing the global lock its sender holds:
	// on `yield` (a sync trigger waiting on a future) and on `done`, from the reader goroutine, so the
	// next command gets the lock without waiting for the sender to be scheduled; always before the
	// result is handed over (onDone), so a sync lane trigger's lock has moved on (lane.go) before its
	// requester's client can send its next command. It must be idempotent.
	release func()
}

// outbox queues the messages for the worker's stdin; one writer goroutine (writeLoop) writes them.
// Queuing never blocks, whatever the worker does, so the goroutine that reads the worker's stdout
// (readLoop), which also answers the worker's calls, always goes back to reading: when both pipes
// are full, Go still drains stdout while its writes wait, and the worker drains stdin. No deadlock
// by construction (TestFullPipesBothWays fills both at once). The queue is unbounded: a worker that
// stops reading is killed by stop or noticed dead, which ends the writer.
//
// Fast path: while nothing is queued and no one writes, put writes the message itself with a
// non-blocking write (try, from nonBlockingWrite; writeDirect), outside mu: messages put meanwhile
// queue and leave with that goroutine's next write, so order is kept; what the pipe does not take at
// once is queued for the writer as usual. A trigger's messages then leave without a goroutine
// hand-off (two per RG.TRIGGER with one execute(), on the critical path of sync ones).
type outbox struct {
	mu     sync.Mutex
	buf    []byte // queued bytes, whole messages (the first one may be the rest of a partly written one)
	busy   bool   // the writer goroutine is writing bytes it took from buf: put must queue behind them
	closed bool   // no more messages: the writer flushes buf, then closes stdin
	hold   bool   // putHeld only queues (pipeReader: readLoop is handling what one read returned)
	direct bool   // a goroutine writes outside mu (writeDirect): others queue, it takes buf next
	spare  []byte // a written buffer writeDirect keeps for buf
	wake   chan struct{}
	try    func([]byte) (int, error) // non-blocking write to the pipe, or nil (every message is queued)
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

// put queues one encoded message (or writes it at once, see outbox); it fails once the outbox is closed.
func (o *outbox) put(msg []byte) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return errWorkerDied
	}
	if o.hold && len(o.buf) > 0 {
		// Behind held answers (putHeld): they leave now, with this message, in order.
		o.buf = append(o.buf, msg...)
		o.flushLocked()
		return nil
	}
	if o.try != nil && !o.busy && !o.direct && len(o.buf) == 0 {
		o.writeDirect(msg, false)
		return nil
	}
	o.buf = append(o.buf, msg...)
	direct := o.direct
	o.mu.Unlock()
	if !direct {
		o.signal() // (a direct write in progress takes it with its next write)
	}
	return nil
}

// writeDirect writes msg from the calling goroutine (o.mu held on entry, released on return), outside
// o.mu: what others put meanwhile queues in buf and leaves with the next write of this loop, in order,
// instead of each putter waiting for o.mu through the syscall and writing on its own. What the pipe
// does not take at once goes, first, to the writer goroutine. owned: msg may be kept as the spare
// buffer once written.
func (o *outbox) writeDirect(msg []byte, owned bool) {
	o.direct = true
	for {
		o.mu.Unlock()
		n, err := o.try(msg)
		o.mu.Lock()
		if err != nil || n < len(msg) {
			// The pipe is full (or broken: the writer's own write then fails and closes the outbox).
			rest := msg[max(n, 0):]
			o.buf = append(append(make([]byte, 0, len(rest)+len(o.buf)), rest...), o.buf...)
			break
		}
		if owned && cap(msg) > cap(o.spare) {
			o.spare = msg[:0]
		}
		if len(o.buf) == 0 || o.closed || o.busy {
			break
		}
		msg, o.buf, o.spare, owned = o.buf, o.spare, nil, true
	}
	o.direct = false
	pending := len(o.buf) > 0 || o.closed
	o.mu.Unlock()
	if pending {
		o.signal()
	}
}

// putHeld is put for readLoop's answers to the worker's calls: while the outbox holds (pipeReader),
// it only queues; what is queued leaves with the next message put, or when readLoop reads again.
// Other messages are never held: a trigger another client sends meanwhile leaves at once.
func (o *outbox) putHeld(msg []byte) error {
	o.mu.Lock()
	if o.hold && !o.closed {
		o.buf = append(o.buf, msg...)
		o.mu.Unlock()
		return nil
	}
	o.mu.Unlock()
	return o.put(msg)
}

// holdOn starts holding what putHeld queues (pipeReader, after a read returned).
func (o *outbox) holdOn() {
	o.mu.Lock()
	o.hold = true
	o.mu.Unlock()
}

// unhold ends holdOn and writes what was held (pipeReader, before a read; readLoop's end).
func (o *outbox) unhold() {
	o.mu.Lock()
	o.hold = false
	if len(o.buf) == 0 {
		o.mu.Unlock()
		return
	}
	o.flushLocked()
}

// flushLocked writes buf (o.mu held; it unlocks): itself when the writer is idle (writeDirect), else
// through the writer goroutine or the direct write in progress.
func (o *outbox) flushLocked() {
	if o.direct {
		o.mu.Unlock() // the direct write in progress takes buf next
		return
	}
	if o.try != nil && !o.busy && !o.closed {
		msg := o.buf
		o.buf, o.spare = o.spare, nil
		o.writeDirect(msg, true)
		return
	}
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// close refuses further messages; the writer writes what is queued, then closes stdin (EOF for the
// worker, which then exits).
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.signal()
}

// writeLoop writes the queued messages to w until the outbox is closed and empty, or a write fails
// (the worker is gone), or dead is closed. It closes w when it returns.
func (o *outbox) writeLoop(w io.WriteCloser, dead <-chan struct{}) {
	defer func() { _ = w.Close() }()
	var spare []byte
	for {
		select {
		case <-o.wake:
		case <-dead:
			return
		}
		for {
			o.mu.Lock()
			if o.direct {
				o.mu.Unlock() // it signals when it is done
				break
			}
			buf, closed := o.buf, o.closed
			if len(buf) == 0 {
				o.busy = false
				o.mu.Unlock()
				if closed {
					return
				}
				break
			}
			o.buf = spare[:0]
			o.busy = true
			o.mu.Unlock()
			if _, err := w.Write(buf); err != nil {
				o.close()
				return
			}
			spare = buf
		}
	}
}

// send queues one protocol message (worker_frame.go encodes it). It never blocks.
func (wk *workerProc) send(args ...value) error {
	return wk.out.put(encodeMsg(args))
}

// sendRaw queues a pre-encoded message. It never blocks.
func (wk *workerProc) sendRaw(b []byte) error { return wk.out.put(b) }

// post sends a message that has a rid without waiting for its `done` (which readLoop then ignores):
// for commands whose reply does not depend on the worker's answer, so that they never wait for it.
func (wk *workerProc) post(name string, args ...value) error {
	rid := wk.s.rid.Add(1)
	return wk.send(append([]value{bulk(name), bulk(strconv.FormatInt(rid, 10))}, args...)...)
}

// startRequest sends a request (a fresh rid) and returns what to wait on (awaitRequest) without
// waiting. release: see pendingReq.
func (wk *workerProc) startRequest(name string, release func(), args ...value) (*pendingReq, error) {
	rid := wk.s.rid.Add(1)
	msg := append([]value{bulk(name), bulk(strconv.FormatInt(rid, 10))}, args...)
	return wk.startRequestFrame(rid, encodeMsg(msg), release)
}

// startTriggerRequest is startRequest for a `trigger` message (PROTOCOL.md), encoded directly
// (triggerFrame): the hot path of every RG.TRIGGER.
func (wk *workerProc) startTriggerRequest(release func(), r *registration, e *execution, token, flags string, args [][]byte) (*pendingReq, error) {
	rid := wk.s.rid.Add(1)
	return wk.startRequestFrame(rid, triggerFrame(rid, r.id, e.id, token, flags, args), release)
}

// startRequestFrame sends msg, the encoded request of rid (a fresh one), and returns what to wait on.
func (wk *workerProc) startRequestFrame(rid int64, msg []byte, release func()) (*pendingReq, error) {
	pr := &pendingReq{ch: make(chan value, 1), release: release}
	wk.mu.Lock()
	if wk.dead {
		wk.mu.Unlock()
		return pr, errWorkerDied
	}
	wk.pending[rid] = pr
	wk.mu.Unlock()
	if err := wk.out.put(msg); err != nil {
		wk.mu.Lock()
		delete(wk.pending, rid)
		wk.mu.Unlock()
		return pr, errWorkerDied
	}
	return pr, nil
}

// awaitRequest waits for the `done` of a request startRequest sent.
func awaitRequest(pr *pendingReq) (value, error) {
	v := <-pr.ch
	if v.Kind == kindError {
		return value{}, errWorkerDied
	}
	return v, nil
}

// request sends a message whose second element is a fresh rid and waits for its `done`.
// release, when set, is called when the request no longer needs the global lock (see pendingReq).
func (s *Server) request(name string, release func(), args ...value) (value, error) {
	wk, err := s.worker()
	if err != nil {
		return value{}, err
	}
	return wk.request(name, release, args...)
}

// readLoop reads the worker's messages until EOF.
func (wk *workerProc) readLoop(r *bufio.Reader) {
	defer func() {
		wk.out.unhold() // what the last messages' answers queued (pipeReader)
		wk.deliver()    // before the pending requests fail below
		_ = wk.cmd.Wait()
		wk.s.lane.reset(wk.s, wk) // before the lane's requests fail (lane.go)
		wk.mu.Lock()
		wk.dead = true
		pending := wk.pending
		wk.pending = map[int64]*pendingReq{}
		locks := wk.locks
		wk.locks = map[string]int{}
		wk.mu.Unlock()
		for _, pr := range pending {
			if pr.release != nil {
				pr.release()
			}
			pr.ch <- errValue(errWorkerDied.Error())
		}
		for tok, n := range locks {
			// Only the levels the worker took: a sync execution's token is also held by its command.
			ts := wk.target(tok)
			for ; ts != nil && n > 0; n-- {
				ts.lock.release(tok)
			}
		}
		close(wk.exited)
		wk.s.wmu.Lock()
		delete(wk.s.procs, wk)
		wk.s.wmu.Unlock()
		wk.s.onWorkerExit(wk)
	}()
	for {
		v, err := readValue(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !wk.s.closed.Load() {
				wk.s.logf('#', "gearstest: reading from python worker: %v", err)
				_ = killGroup(wk.cmd)
			}
			return
		}
		if v.Kind != kindArray || len(v.Arr) == 0 {
			wk.s.logf('#', "gearstest: unexpected message from python worker")
			continue
		}
		wk.dispatch(v.Arr)
	}
}

func (wk *workerProc) dispatch(m []value) {
	s := wk.s
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: bad message from python worker %q: %v", m[0].Str, r)
		}
	}()
	arg := func(i int) value {
		if i < len(m) {
			return m[i]
		}
		return nilValue()
	}
	switch string(m[0].Str) {
	case "done":
		wk.onDone(parseRid(arg(1).Str), arg(2))
	case "yield":
		wk.onYield(parseRid(arg(1).Str))
	case "call":
		wk.handleCall(arg(1).Str, arg(2).String(), m[min(3, len(m)):], true)
	case "rcall":
		wk.handleCall(arg(1).Str, arg(2).String(), m[min(3, len(m)):], false)
	case "lock":
		wk.onLock(arg(1).Str, lockToken(arg(2).String()))
	case "unlock":
		wk.onUnlock(lockToken(arg(1).String()))
	case "newid":
		id := s.state.newFEPID()
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), bulk(id))
	case "newexec":
		id := s.state.newRunExecution(arg(2))
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), bulk(id))
	case "execdone":
		s.state.runDone(arg(1).String(), arg(2).String(), arg(3), arg(4))
	case "hazard":
		wk.hazardMessage(arg(1).Str, arg(2).String(), arg(3).String())
	case "te":
		wk.onTimeEvent(arg(1).Str, arg(2).String(), m[min(3, len(m)):]) // registerTE (timeevents.go)
	case "configget":
		v := s.state.cfg.getForPython(arg(2).String())
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), v)
	case "log":
		level, msg := arg(1).String(), arg(2).String()
		c := byte('*')
		switch level {
		case "debug":
			c = '.'
		case "verbose":
			c = '-'
		case "warning":
			c = '#'
		}
		s.logf(c, "GEARS: %s", msg)
	default:
		s.logf('#', "gearstest: unknown message from python worker: %q", m[0].Str)
	}
}

// onDone takes a request's result (`done <rid> <result>`). A rid nobody waits for (a posted message)
// is ignored. The global lock the request holds is released at once (a sync lane trigger's lock
// moves to the next trigger, whose messages may follow in the same read); the result is handed over
// with the others of the same read right before readLoop reads again (deliver): after the answers
// to the calls of that read are written, so that the worker, which waits for them, is woken first
// and the requesters' wake-ups are off its path. The requester releases too (idempotently) before it
// replies, so the lock is always free before the reply leaves.
func (wk *workerProc) onDone(n int64, result value) {
	wk.mu.Lock()
	pr := wk.pending[n]
	delete(wk.pending, n)
	wk.mu.Unlock()
	if pr == nil {
		return
	}
	if pr.release != nil {
		pr.release()
	}
	wk.deliveries = append(wk.deliveries, delivery{pr, result})
}

// parseRid reads a request id (decimal, as startRequest sent it); anything else is 0, which no
// request has.
func parseRid(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return 0
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// deliver hands the results onDone took to their requesters (readLoop's goroutine, before it reads).
func (wk *workerProc) deliver() {
	for i, d := range wk.deliveries {
		d.pr.ch <- d.v
		wk.deliveries[i] = delivery{}
	}
	wk.deliveries = wk.deliveries[:0]
}

// onYield releases the global lock a sync trigger holds while its execution waits on a future.
func (wk *workerProc) onYield(n int64) {
	wk.mu.Lock()
	pr := wk.pending[n]
	wk.mu.Unlock()
	if pr != nil && pr.release != nil {
		pr.release()
	}
}

// onLock grants the global lock to tok for atomic() (`lock <cid> <token>`): at once when it is free
// or tok owns it, else from a goroutine once it is (the reader never waits for the lock).
func (wk *workerProc) onLock(cid []byte, tok string) {
	s := wk.target(tok) // the worker's server, or a partition's shard (cluster_exec.go)
	if s == nil {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk("ERR gearstest: the shard of "+tok+" is not running")))
		return
	}
	grant := func() {
		wk.mu.Lock()
		if wk.dead {
			// The worker died while we waited: nobody will unlock.
			wk.mu.Unlock()
			s.lock.release(tok)
			return
		}
		wk.locks[tok]++
		wk.mu.Unlock()
		_ = wk.sendRaw(replyMsg(cid, 'v', []byte("+OK\r\n")))
	}
	if s.lock.tryAcquire(tok) {
		grant()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.lock.acquire(tok)
		grant()
	}()
}

// onUnlock releases one level of the global lock tok took with `lock` (leaving atomic()).
func (wk *workerProc) onUnlock(tok string) {
	wk.mu.Lock()
	if wk.locks[tok] > 0 {
		wk.locks[tok]--
		if wk.locks[tok] == 0 {
			delete(wk.locks, tok)
		}
	}
	wk.mu.Unlock()
	if s := wk.target(tok); s != nil {
		s.lock.release(tok)
	}
}

// lockToken maps the empty token (code running outside an execution, e.g. a thread the script started)
// to one shared anonymous owner.
func lockToken(tok string) string {
	if tok == "" {
		return "~anon"
	}
	return tok
}

// request sends a message whose second element is a fresh rid and waits for its `done`. It always
// returns: when the worker dies (a crash, KillWorker, Close), readLoop fails every pending request.
func (wk *workerProc) request(name string, release func(), args ...value) (value, error) {
	pr, err := wk.startRequest(name, release, args...)
	if err != nil {
		return value{}, err
	}
	return awaitRequest(pr)
}
