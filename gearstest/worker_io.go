package gearstest

import (
	"bufio"
	"errors"
	"io"
	"strconv"
)

// pendingReq is a request sent to the worker that waits for its `done`.
type pendingReq struct {
	ch chan value // gets the result value; errWorkerDied is delivered as an error value
	// release, when set, is called when the request stops needing the global lock its sender holds:
	// on `yield` (a sync trigger waiting on a future) and on `done`, from the reader goroutine, so the
	// next command gets the lock without waiting for the sender to be scheduled. It must be idempotent.
	release func()
}

// send writes one protocol message.
func (wk *workerProc) send(args ...value) error {
	wk.wmu.Lock()
	defer wk.wmu.Unlock()
	buf := appendValue(make([]byte, 0, 128), value{Kind: kindArray, Arr: args}, false)
	if _, err := wk.w.Write(buf); err != nil {
		return err
	}
	return wk.w.Flush()
}

// sendRaw writes a pre-encoded message.
func (wk *workerProc) sendRaw(b []byte) error {
	wk.wmu.Lock()
	defer wk.wmu.Unlock()
	if _, err := wk.w.Write(b); err != nil {
		return err
	}
	return wk.w.Flush()
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
		_ = wk.cmd.Wait()
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
			for ; n > 0; n-- {
				wk.s.lock.release(tok)
			}
		}
		close(wk.exited)
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
		rid, _ := strconv.ParseInt(arg(1).String(), 10, 64)
		wk.mu.Lock()
		pr := wk.pending[rid]
		delete(wk.pending, rid)
		wk.mu.Unlock()
		if pr != nil {
			// Hand the result over first, then release: the goroutine that the release wakes (the next
			// command waiting for the global lock) then is the one the scheduler runs next, ahead of the
			// requester's reply to its client, which is off that critical path. The requester releases
			// too (idempotently) before it replies, so the lock is always free before the reply leaves.
			pr.ch <- arg(2)
			if pr.release != nil {
				pr.release()
			}
		}
	case "yield":
		rid, _ := strconv.ParseInt(arg(1).String(), 10, 64)
		wk.mu.Lock()
		pr := wk.pending[rid]
		wk.mu.Unlock()
		if pr != nil && pr.release != nil {
			pr.release()
		}
	case "call":
		wk.handleCall(arg(1).Str, arg(2).String(), m[min(3, len(m)):])
	case "lock":
		cid, tok := arg(1).Str, lockToken(arg(2).String())
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
	case "unlock":
		tok := lockToken(arg(1).String())
		wk.mu.Lock()
		if wk.locks[tok] > 0 {
			wk.locks[tok]--
			if wk.locks[tok] == 0 {
				delete(wk.locks, tok)
			}
		}
		wk.mu.Unlock()
		s.lock.release(tok)
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

// lockToken maps the empty token (code running outside an execution, e.g. a thread the script started)
// to one shared anonymous owner.
func lockToken(tok string) string {
	if tok == "" {
		return "~anon"
	}
	return tok
}

// replyMsg builds `reply <cid> <kind> <raw value>` with the value bytes spliced in as they are.
func replyMsg(cid []byte, kind byte, raw []byte) []byte {
	b := make([]byte, 0, 32+len(cid)+len(raw))
	b = append(b, "*4\r\n$5\r\nreply\r\n$"...)
	b = strconv.AppendInt(b, int64(len(cid)), 10)
	b = append(b, '\r', '\n')
	b = append(b, cid...)
	b = append(b, "\r\n$1\r\n"...)
	b = append(b, kind)
	b = append(b, '\r', '\n')
	return append(b, raw...)
}

func (wk *workerProc) request(name string, release func(), args ...value) (value, error) {
	rid := wk.s.rid.Add(1)
	pr := &pendingReq{ch: make(chan value, 1), release: release}
	wk.mu.Lock()
	if wk.dead {
		wk.mu.Unlock()
		return value{}, errWorkerDied
	}
	wk.pending[rid] = pr
	wk.mu.Unlock()
	msg := append([]value{bulk(name), bulk(strconv.FormatInt(rid, 10))}, args...)
	if err := wk.send(msg...); err != nil {
		wk.mu.Lock()
		delete(wk.pending, rid)
		wk.mu.Unlock()
		return value{}, errWorkerDied
	}
	v := <-pr.ch
	if v.Kind == kindError {
		return value{}, errWorkerDied
	}
	return v, nil
}
