package gearstest

import "errors"

// cmdTrigger implements RG.TRIGGER and RG.TRIGGERONKEY (command_reader.c CommandReader_Trigger). The
// call is accepted under the global lock (the trigger is looked up and its execution created, as on
// the main thread). A sync registration's execution keeps the lock until it yields (waits on a
// future) or ends, which the reader goroutine sees first: it calls release then. An async one runs
// without it, on the real server's thread pool, and locks per use (token x<execid>).
func cmdTrigger(s *Server, c *client, args [][]byte) value {
	// The worker comes before the lock: while it restarts, the restore reads the sessions under it.
	wk, err := s.triggerWorker(c)
	if err != nil {
		return errValue(err.Error())
	}
	if c.inExec {
		// EXEC holds the lock for the whole transaction.
		r, e, err := s.state.startTrigger(string(args[1]), true)
		switch {
		case err != nil:
			return errValue(err.Error())
		case r.mode != "sync":
			return s.runTrigger(wk, r, e, args, "x"+e.id, "", nil)
		}
		return s.runTrigger(wk, r, e, args, c.token, "m", func() {})
	}
	// Sync triggers in a row (lane.go): join the running round, else wait for the lock or for the
	// next round to start, whichever comes first.
	for {
		v, ok, next := s.lane.join(s, wk, c, args)
		if ok {
			return v
		}
		if s.lock.acquireOr(c.token, next) {
			break
		}
	}
	// (A flag and a deferred release rather than a sync.OnceFunc: that cost two allocations per
	// RG.TRIGGER; this closure does not escape.)
	held := true
	defer func() {
		if held {
			s.lock.release(c.token)
		}
	}()
	r, e, err := s.state.startTrigger(string(args[1]), false)
	if err != nil {
		return errValue(err.Error())
	}
	if r.mode != "sync" {
		held = false
		s.lock.release(c.token)
		return s.runTrigger(wk, r, e, args, "x"+e.id, "", nil)
	}
	// This client holds the lock: its sync trigger starts a round of the lane, which releases the
	// lock (the deferred release finds it released, or another token's, by then).
	return s.lane.start(s, wk, c.token, r, e, args)
}

// runTrigger sends an accepted trigger's execution to the worker and returns its reply. onYield, when
// set, is called when the execution no longer needs the global lock (a sync one's `yield` or `done`).
func (s *Server) runTrigger(wk *workerProc, r *registration, e *execution, args [][]byte, token, flags string, onYield func()) value {
	if s.shard != nil && r.mode == "async" {
		// On a cluster an async registration's execution runs on every shard, each with the record
		// [trigger, args…], and gathers (spec 3.4: count() answers the shard count): the worker runs
		// a partition per shard (cluster_exec.go). async_local and sync run here only.
		flags += "d"
	}
	if r.inorder && r.mode != "sync" {
		// inorder=True: the registration's executions run one after the other (RedisGears gives the
		// registration its own single worker thread).
		r.order.Lock()
	}
	var res value
	pr, err := wk.startTriggerRequest(onYield, r, e, token, flags, args)
	if err == nil {
		res, err = awaitRequest(pr)
	}
	if r.inorder && r.mode != "sync" {
		r.order.Unlock()
	}
	if onYield != nil {
		onYield() // before the reply leaves (a no-op unless the request failed before reaching the worker)
	}
	records, errs := s.state.finishTrigger(r, e, res, err)
	if len(errs) > 0 {
		return errValue(errs[0].String())
	}
	return array(records...)
}

// awaitTrigger waits for a sync lane trigger's answer (lane.go) and returns its reply.
func (s *Server) awaitTrigger(r *registration, e *execution, pr *pendingReq, err error) value {
	var res value
	if err == nil {
		res, err = awaitRequest(pr)
	}
	records, errs := s.state.finishTrigger(r, e, res, err)
	if len(errs) > 0 {
		return errValue(errs[0].String())
	}
	return array(records...)
}

// triggerWorker returns the worker for RG.TRIGGER. Inside EXEC, which holds the global lock, it does
// not wait for a restarting one (the restore needs the lock).
func (s *Server) triggerWorker(c *client) (*workerProc, error) {
	if !c.inExec {
		return s.worker()
	}
	if wk := s.currentWorker(); wk != nil {
		return wk, nil
	}
	return nil, errWorkerDied
}

// triggerResult reads a trigger's `done` answer: its records, its errors, and whether it was aborted.
func triggerResult(res value, err error) (records, errs []value, aborted bool) {
	if err != nil {
		return nil, []value{bulk(err.Error())}, false
	}
	if a := resultArr(res); len(a) >= 3 && a[0].String() == "ok" {
		return a[1].Arr, a[2].Arr, len(a) >= 4 && a[3].String() == "aborted"
	}
	return nil, []value{bulk(resultText(res))}, false
}

var (
	errNoTrigger      = errors.New(msgNoTrigger)
	errNonSyncInMulti = errors.New(msgNonSyncInMulti)
)
