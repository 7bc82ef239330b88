package gearstest

import (
	"sync/atomic"
	"time"
)

// cmdTrigger implements RG.TRIGGER and RG.TRIGGERONKEY (command_reader.c CommandReader_Trigger).
func cmdTrigger(s *Server, c *client, args [][]byte) value {
	st := s.state
	// Get the worker before taking the global lock: while it restarts, restoring sessions may run
	// execute() at a script's top level, which needs the lock. EXEC already holds it: no waiting then.
	var wk *workerProc
	if c.inExec {
		if wk = s.currentWorker(); wk == nil {
			return errValue(errWorkerDied.Error())
		}
	} else {
		var err error
		if wk, err = s.worker(); err != nil {
			return errValue(err.Error())
		}
	}
	held := false
	if !c.inExec {
		s.lock.acquire(c.token)
		held = true
	}
	release := func() {
		if held {
			held = false
			s.lock.release(c.token)
		}
	}
	defer release()
	st.mu.Lock()
	r := st.triggers[string(args[1])]
	if r == nil {
		st.mu.Unlock()
		return errValue(msgNoTrigger)
	}
	if c.inExec && r.mode != "sync" {
		st.mu.Unlock()
		return errValue(msgNonSyncInMulti)
	}
	r.numTriggered++
	if r.sess != nil {
		r.sess.running++
	}
	e := &execution{num: st.epID, status: "running", trigger: true, start: time.Now(), done: make(chan struct{})}
	st.epID++
	e.id = makeID(e.num)
	st.execs[e.id] = e
	st.execOrder = append(st.execOrder, e)
	st.evictLocked()
	st.mu.Unlock()

	token, flags := c.token, ""
	var releaseEarly func()
	var released atomic.Bool
	if r.mode == "sync" {
		if c.inExec {
			flags = "m" // EXEC keeps the lock for the whole transaction
		} else {
			// The lock goes on `yield` (the execution waits on a future) or as soon as `done` is read.
			releaseEarly = func() {
				if released.CompareAndSwap(false, true) {
					s.lock.release(c.token)
				}
			}
		}
	} else {
		token = "x" + e.id
		release()
	}
	msg := make([]value, 0, 4+len(args))
	msg = append(msg, bulk(r.id), bulk(e.id), bulk(token), bulk(flags))
	for _, a := range args[1:] {
		msg = append(msg, bulkBytes(a))
	}
	if r.inorder && r.mode != "sync" {
		// inorder=True: the registration's executions run one after the other (RedisGears gives the
		// registration its own single worker thread).
		r.order.Lock()
	}
	res, err := wk.request("trigger", releaseEarly, msg...)
	if r.inorder && r.mode != "sync" {
		r.order.Unlock()
	}
	if releaseEarly != nil {
		releaseEarly() // a no-op unless the request failed before reaching the worker
		held = false
	}
	var records, errs []value
	aborted := false
	if err != nil {
		errs = []value{bulk(err.Error())}
	} else if a := resultArr(res); len(a) >= 3 && a[0].String() == "ok" {
		records, errs = a[1].Arr, a[2].Arr
		aborted = len(a) >= 4 && a[3].String() == "aborted"
	} else {
		errs = []value{bulk(resultText(res))}
	}
	ms := time.Since(e.start).Milliseconds()
	st.mu.Lock()
	r.lastMS = ms
	r.totalMS += ms
	switch {
	case len(errs) > 0:
		// CommandReader_OnDone looks at the errors first: an aborted execution with errors failed.
		r.numFailures++
		r.lastError, r.hasLastError = errs[0].String(), true
	case aborted:
		// An aborted execution (RG.ABORTEXECUTION; UPGRADE or RG.UNREGISTER … ABORTPENDING before it
		// started) replies with the records it had, and counts as aborted (CommandReader_OnDone).
		r.numAborted++
	default:
		r.numSuccess++
		r.hasLastError = false
	}
	// Close's abortAll may have finished it already: done is closed once, by whoever finishes first.
	finishedBefore := e.finished
	e.finished = true
	if st.execs[e.id] == e {
		delete(st.execs, e.id)
	}
	if ss := r.sess; ss != nil {
		ss.running--
		if ss.dead && ss.running == 0 {
			delete(st.dead, ss)
		}
	}
	st.mu.Unlock()
	if !finishedBefore {
		close(e.done)
	}
	if len(errs) > 0 {
		return errValue(errs[0].String())
	}
	return array(records...)
}
