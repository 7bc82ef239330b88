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
	release := s.holdLock(c)
	defer release()
	r, e, err := s.state.startTrigger(string(args[1]), c.inExec)
	if err != nil {
		return errValue(err.Error())
	}
	token, flags, onYield := c.token, "", release
	switch {
	case r.mode != "sync":
		release()
		token, onYield = "x"+e.id, nil
	case c.inExec:
		flags = "m" // EXEC keeps the lock for the whole transaction (release is a no-op there)
	}
	if s.shard != nil && r.mode == "async" {
		// On a cluster an async registration's execution runs on every shard, each with the record
		// [trigger, args…], and gathers (spec 3.4: count() answers the shard count): the worker runs
		// a partition per shard (cluster_exec.go). async_local and sync run here only.
		flags += "d"
	}
	msg := make([]value, 0, 3+len(args))
	msg = append(msg, bulk(r.id), bulk(e.id), bulk(token), bulk(flags))
	for _, a := range args[1:] {
		msg = append(msg, bulkBytes(a))
	}
	if r.inorder && r.mode != "sync" {
		// inorder=True: the registration's executions run one after the other (RedisGears gives the
		// registration its own single worker thread).
		r.order.Lock()
	}
	res, err := wk.request("trigger", onYield, msg...)
	if r.inorder && r.mode != "sync" {
		r.order.Unlock()
	}
	release() // before the reply leaves (a no-op unless the request failed before reaching the worker)
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
