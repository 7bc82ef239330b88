package gearstest

import (
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// rgCommand is one RG.* command.
type rgCommand struct {
	minArgs, maxArgs int // argc bounds; maxArgs < 0 means unbounded
	// ownLocking handlers take the global lock themselves (or not at all): they wait for the worker or
	// for executions, which must not stall every other client.
	ownLocking bool
	fn         func(s *Server, c *client, args [][]byte) value
}

func (h *rgCommand) checkArity(argc int) bool {
	return argc >= h.minArgs && (h.maxArgs < 0 || argc <= h.maxArgs)
}

var rgCommands map[string]*rgCommand

func init() {
	rgCommands = map[string]*rgCommand{
		"RG.PYEXECUTE":               {2, -1, true, cmdPyExecute},
		"RG.TRIGGER":                 {2, -1, true, cmdTrigger},
		"RG.TRIGGERONKEY":            {2, -1, true, cmdTrigger},
		"RG.DUMPREGISTRATIONS":       {1, -1, false, cmdDumpRegistrations},
		"RG.UNREGISTER":              {2, 3, true, cmdUnregister},
		"RG.DUMPEXECUTIONS":          {1, -1, false, cmdDumpExecutions},
		"RG.GETEXECUTION":            {2, 3, false, cmdGetExecution},
		"RG.GETRESULTS":              {2, -1, false, cmdGetResults},
		"RG.GETRESULTSBLOCKING":      {2, 2, true, cmdGetResultsBlocking},
		"RG.ABORTEXECUTION":          {2, 2, false, cmdAbortExecution},
		"RG.DROPEXECUTION":           {2, 2, false, cmdDropExecution},
		"RG.PYSTATS":                 {1, -1, false, cmdPyStats},
		"RG.PYDUMPREQS":              {1, -1, false, cmdPyDumpReqs},
		"RG.PYDUMPSESSIONS":          {1, -1, false, cmdPyDumpSessions},
		"RG.PYPROFILE":               {2, -1, false, cmdPyProfile},
		"RG.INFOCLUSTER":             {1, -1, false, func(*Server, *client, [][]byte) value { return bulk("no cluster mode") }},
		"RG.REFRESHCLUSTER":          {1, -1, false, okHandler},
		"RG.NETWORKTEST":             {1, -1, false, cmdNetworkTest},
		"RG.CONFIGGET":               {1, -1, false, cmdConfigGet},
		"RG.CONFIGSET":               {1, -1, false, cmdConfigSet},
		"RG.PAUSEREGISTRATIONS":      {2, 2, false, cmdPause},
		"RG.UNPAUSEREGISTRATIONS":    {2, 2, false, cmdPause},
		"RG.CLEARREGISTRATIONSSTATS": {1, 1, false, cmdClearStats},
		"RG.PYEXPORTREQ":             {2, 2, false, cmdPyExportReq},
		"RG.PYIMPORTREQ":             {2, -1, false, cmdPyImportReq},
		"RG.DUMPPLUGINS":             {1, -1, false, cmdDumpPlugins},
		"RG.PYFREEINTERPRETER": {1, -1, false, func(*Server, *client, [][]byte) value {
			return bulk("Free interpreter is not longer supported")
		}},
		"RG.PYEXECUTEREMOTE": {1, -1, false, func(*Server, *client, [][]byte) value {
			return bulk("Execute remote is not longer supported")
		}},
	}
}

func okHandler(*Server, *client, [][]byte) value { return status("OK") }

func randomHex40() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validSessionID(id string) bool {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cmdPyExecute implements RG.PYEXECUTE (redisgears_python.c RedisGearsPy_Execute).
func cmdPyExecute(s *Server, c *client, args [][]byte) value {
	if c.inExec {
		return errValue("Can not run gears inside a multi exec, lua, or when blocking is not allowed")
	}
	script := string(args[1])
	var (
		unblocking, upgrade, force, hasDesc bool
		id, desc, replaceWith               string
		reqs                                []string
	)
	for i := 2; i < len(args); i++ {
		w := string(args[i])
		switch strings.ToUpper(w) {
		case "UNBLOCKING":
			unblocking = true
		case "UPGRADE":
			upgrade = true
		case "FORCE_REINSTALL_REQUIREMENTS":
			force = true
		case "ID":
			if i+1 >= len(args) {
				return errValue("ID is missing")
			}
			i++
			id = string(args[i])
			if !validSessionID(id) {
				return errValue("ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']")
			}
		case "DESCRIPTION":
			if i+1 >= len(args) {
				return errValue("DESCRIPTION is missing")
			}
			i++
			desc, hasDesc = string(args[i]), true
		case "REPLACE_WITH":
			if i+1 >= len(args) {
				return errValue("REPLACE_WITH is missing")
			}
			i++
			replaceWith = string(args[i])
		case "REQUIREMENTS":
			for _, r := range args[i+1:] {
				reqs = append(reqs, string(r))
			}
			i = len(args)
		default:
			return errValue("Unknown arguments were given: " + w)
		}
	}
	// K1 (hazards.go): the session ids this command names are in flight from here, before it waits
	// for anything (requirements, the locks), until its reply; a second one meanwhile is refused.
	end, refused := s.beginPyExecute(id, replaceWith)
	if refused != nil {
		return *refused
	}
	defer end()
	st := s.state
	if id == "" {
		id = randomHex40() // a random id cannot collide: not marked
	}
	// The session checks come first (as in RedisGearsPy_Execute); requirements are installed without
	// the session lock, as the real server installs them on a background thread, and the checks are
	// made again before the script runs.
	st.sessMu.Lock()
	_, _, _, errV := st.sessionPlan(id, replaceWith, upgrade)
	st.sessMu.Unlock()
	if errV != nil {
		return *errV
	}
	if len(reqs) > 0 {
		f := "0"
		if force {
			f = "1"
		}
		res, err := s.request("reqs", nil, append([]value{bulk(f)}, bulks(reqs)...)...)
		if err != nil {
			return errValue(err.Error())
		}
		r := resultArr(res)
		if len(r) == 0 || r[0].String() != "ok" {
			return errValue(resultText(res))
		}
		if len(r) > 1 {
			st.recordReqs(r[1])
		}
	}
	// The worker is fetched before the session lock: a restart restores sessions under that lock.
	wk, err := s.worker()
	if err != nil {
		return errValue(err.Error())
	}
	// The script runs and commits as on Redis' main thread (RedisGearsPy_Execute runs it there, the
	// apply of its registrations and their onRegistered included): under the global lock, owned by
	// this connection's token, which the worker passes back on the script's own execute()/atomic()
	// calls. The requirements above were installed without it, as the real server installs them in
	// the background while the client is blocked.
	tok := c.token
	s.lockForScript(tok)
	locked := true
	unlock := func() {
		if locked {
			locked = false
			st.sessMu.Unlock()
			s.lock.release(tok)
		}
	}
	defer unlock()
	mode, replaced, old, errV := st.sessionPlan(id, replaceWith, upgrade)
	if errV != nil {
		return *errV
	}
	res, err := wk.request("exec", nil, bulk(id), descValue(desc, hasDesc), bulk(script), bulk(mode), replaced,
		array(bulks(reqs)...), nilValue(), bulk(tok))
	if err != nil {
		return errValue(err.Error())
	}
	r := resultArr(res)
	if len(r) == 0 || r[0].String() != "ok" {
		return errValue(resultText(res))
	}
	var regs []value
	if len(r) > 1 {
		regs = r[1].Arr
	}
	execID := nilValue()
	if len(r) > 2 {
		execID = r[2]
	}
	if len(regs) > 0 {
		st.commit(&session{id: id, desc: desc, hasDesc: hasDesc, reqs: reqs, script: script}, old, regs)
		return status("OK")
	}
	// A run() the script started executes after the script returned, on the real server's thread
	// pool: nobody waits for it under the lock.
	unlock()
	if execID.Kind != kindBulk {
		return status("OK")
	}
	e := st.getExecution(execID.String())
	if e == nil {
		return errValue("execution plan does not exist")
	}
	if unblocking {
		return bulk(e.id)
	}
	select {
	case <-e.done:
	case <-s.stop:
		return errValue("ERR gearstest: server closed")
	}
	st.dropExecution(e)
	return resultsAndErrors(e)
}

// lockForScript takes the global lock for tok, then the session lock. It only tries the session lock
// while it holds the global one and else waits for the session lock holding nothing: a restore holds
// the session lock while its scripts take the global lock per call, and RG.UNREGISTER inside
// MULTI/EXEC takes the session lock under EXEC's global lock.
func (s *Server) lockForScript(tok string) {
	st := s.state
	for {
		s.lock.acquire(tok)
		if st.sessMu.TryLock() {
			return
		}
		s.lock.release(tok)
		st.sessMu.Lock()
		st.sessMu.Unlock() //nolint:staticcheck // only waiting for the holder to finish
	}
}

// sessionPlan decides how a PYEXECUTE applies to the sessions: its exec mode, the session it replaces
// (as a protocol value and as a session), or the error reply. The caller holds sessMu.
func (st *state) sessionPlan(id, replaceWith string, upgrade bool) (string, value, *session, *value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fail := func(msg string) (string, value, *session, *value) {
		v := errValue(msg)
		return "", value{}, nil, &v
	}
	existing := st.sessions[id]
	switch {
	case replaceWith != "":
		if existing != nil {
			return fail("Can not replace an existing session " + id + " with " + replaceWith)
		}
		old := st.sessions[replaceWith]
		if old == nil {
			return fail("Can not replace with " + replaceWith + ", session does not exists.")
		}
		return "replace", bulk(replaceWith), old, nil
	case existing != nil:
		if !upgrade {
			return fail("Session " + id + " already exists")
		}
		return "upgrade", bulk(id), existing, nil
	}
	return "create", nilValue(), nil, nil
}

func resultsAndErrors(e *execution) value {
	return array(array(e.results...), array(e.errors...))
}

// recordReqs stores the requirement metadata the worker reported.
func (st *state) recordReqs(list value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ri := range list.Arr {
		if len(ri.Arr) < 5 {
			continue
		}
		rq := &requirement{name: ri.Arr[0].String(), basePath: ri.Arr[1].String(),
			downloaded: ri.Arr[3].Int != 0 || ri.Arr[3].String() == "1", installed: ri.Arr[4].Int != 0 || ri.Arr[4].String() == "1"}
		for _, w := range ri.Arr[2].Arr {
			rq.wheels = append(rq.wheels, w.String())
		}
		st.reqs[rq.name] = rq
	}
}

// commit applies a PYEXECUTE that registered something: the old session (UPGRADE/REPLACE_WITH) and
// its registrations go, the new ones come. It consumes the ids of the internal registration plan and
// execution (see state).
func (st *state) commit(ss *session, old *session, regs []value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.fepID++
	st.epID++
	if old != nil {
		for _, id := range old.regIDs {
			if r := st.regs[id]; r != nil {
				delete(st.regs, id)
				if st.triggers[r.trigger] == r {
					delete(st.triggers, r.trigger)
				}
			}
		}
		delete(st.sessions, old.id)
		old.regIDs = nil
		st.unlinkLocked(old)
	}
	st.sessSeq++
	ss.seq = st.sessSeq
	for _, rv := range regs {
		a := rv.Arr
		if len(a) < 7 {
			continue
		}
		r := &registration{id: a[0].String(), reader: a[1].String(), mode: a[3].String(), trigger: a[4].String(),
			inorder: a[5].Int != 0 || a[5].String() == "1", steps: a[6], sess: ss}
		if a[2].Kind == kindBulk {
			r.desc, r.hasDesc = a[2].String(), true
		}
		st.regs[r.id] = r
		if r.reader == "CommandReader" {
			st.triggers[r.trigger] = r
		}
		ss.regIDs = append(ss.regIDs, r.id)
	}
	ss.origRegIDs = append([]string(nil), ss.regIDs...)
	st.sessions[ss.id] = ss
}

var errNonSyncInMulti = errValue("ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.")

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
		return errValue("ERR subcommand not found")
	}
	if c.inExec && r.mode != "sync" {
		st.mu.Unlock()
		return errNonSyncInMulti
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

func cmdDumpRegistrations(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	regs := st.sortedRegsLocked()
	out := make([]value, len(regs))
	for i, r := range regs {
		out[i] = st.regEntryLocked(r, true)
	}
	return array(out...)
}

// cmdUnregister implements RG.UNREGISTER. It takes the session lock but not the global lock: a
// restore holds the session lock while its scripts' execute() calls take the global lock.
func cmdUnregister(s *Server, c *client, args [][]byte) value {
	st := s.state
	if st.lockSessionsInExec(c) {
		defer st.sessMu.Unlock()
	}
	id, ok := canonicalID(string(args[1]))
	st.mu.Lock()
	r := st.regs[id]
	if !ok || r == nil {
		st.mu.Unlock()
		return errValue("execution is not registered")
	}
	delete(st.regs, id)
	if st.triggers[r.trigger] == r {
		delete(st.triggers, r.trigger)
	}
	// ABORTPENDING (any other third argument is ignored, as in execution_plan.c) aborts the
	// registration's executions that have not started yet (the worker decides when one starts:
	// see PROTOCOL.md `unregister`); the started ones go on (gears-spec §8).
	abortPending := len(args) == 3 && strings.EqualFold(string(args[2]), "abortpending")
	ss := r.sess
	dropSession := false
	if ss != nil {
		for i, rid := range ss.regIDs {
			if rid == id {
				ss.regIDs = append(ss.regIDs[:i:i], ss.regIDs[i+1:]...)
				break
			}
		}
		if len(ss.regIDs) == 0 && st.sessions[ss.id] == ss {
			delete(st.sessions, ss.id)
			st.unlinkLocked(ss)
			dropSession = true
		}
	}
	st.mu.Unlock()
	// While the worker restarts there is nothing to tell it: the restore reads the state changed above
	// (both hold the session lock) and drops this registration itself.
	if wk := s.currentWorker(); wk != nil {
		msg := []value{bulk(id)}
		if abortPending {
			msg = append(msg, bulk("abortpending"))
		}
		if _, err := wk.request("unregister", nil, msg...); err != nil {
			s.logf('#', "gearstest: unregister %s: %v", id, err)
		}
		if dropSession {
			if _, err := wk.request("dropsession", nil, bulk(ss.id)); err != nil {
				s.logf('#', "gearstest: dropsession %s: %v", ss.id, err)
			}
		}
	}
	return status("OK")
}

// lockSessionsInExec takes the session lock for a command and reports whether it did. Inside
// MULTI/EXEC, which holds the global lock, it never waits for a restore (whose scripts wait for the
// global lock; the restore drops what was unregistered meanwhile when it publishes the worker) and
// polls otherwise: the other holders (an RG.UNREGISTER outside EXEC, PYEXECUTE's checks) do not need
// the global lock, and a PYEXECUTE holds the session lock only while it owns the global lock.
func (st *state) lockSessionsInExec(c *client) bool {
	if !c.inExec {
		st.sessMu.Lock()
		return true
	}
	for !st.sessMu.TryLock() {
		if st.restoring.Load() > 0 {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func cmdDumpExecutions(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	es := make([]*execution, 0, len(st.execs))
	for _, e := range st.execs {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].num < es[j].num })
	out := make([]value, len(es))
	for i, e := range es {
		reg := int64(0)
		if e.registered || e.trigger {
			reg = 1
		}
		out[i] = array(bulk("executionId"), bulk(e.id), bulk("status"), bulk(e.status), bulk("registered"), integer(reg))
	}
	return array(out...)
}

func cmdGetExecution(s *Server, c *client, args [][]byte) value {
	if len(args) == 3 {
		switch strings.ToUpper(string(args[2])) {
		case "SHARD":
		case "CLUSTER":
			return errValue("no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead")
		default:
			return errValue("unknown subcommand")
		}
	}
	st := s.state
	e := st.getExecution(string(args[1]))
	if e == nil {
		return errValue("execution plan does not exist")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	results := int64(-1)
	errs := []value{}
	completed := int64(0)
	dur := time.Since(e.start)
	if e.finished {
		results, errs, completed, dur = int64(len(e.results)), e.errors, 1, e.dur
	}
	var steps []value
	for _, sv := range e.steps.Arr {
		if len(sv.Arr) < 3 {
			continue
		}
		steps = append(steps, array(bulk("type"), sv.Arr[0], bulk("duration"), integer(0),
			bulk("name"), sv.Arr[1], bulk("arg"), sv.Arr[2]))
	}
	plan := array(
		bulk("status"), bulk(e.status),
		bulk("shards_received"), integer(0),
		bulk("shards_completed"), integer(completed),
		bulk("results"), integer(results),
		bulk("errors"), array(errs...),
		bulk("total_duration"), integer(dur.Milliseconds()),
		bulk("read_duration"), integer(0),
		bulk("steps"), array(steps...),
	)
	return array(array(bulk("shard_id"), bulk(zeroShard), bulk("execution_plan"), plan))
}

func cmdGetResults(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue("execution plan does not exist")
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	if !e.finished {
		return errValue("execution is still running")
	}
	return resultsAndErrors(e)
}

func cmdGetResultsBlocking(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue("execution plan does not exist")
	}
	if c.inExec {
		select {
		case <-e.done:
		default:
			// EXEC holds the "main thread": Redis refuses to block a client inside a transaction.
			return errValue("Blocking module command called from transaction")
		}
	}
	select {
	case <-e.done:
	case <-s.stop:
		return errValue("ERR gearstest: server closed")
	case <-time.After(1000 * time.Second):
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return resultsAndErrors(e)
}

func cmdAbortExecution(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue("execution does not exist")
	}
	s.state.mu.Lock()
	running := !e.finished
	s.state.mu.Unlock()
	if running {
		if wk := s.currentWorker(); wk != nil {
			_ = wk.send(bulk("abort"), bulk(e.id))
		}
	}
	return status("OK")
}

func cmdDropExecution(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue("execution plan does not exist")
	}
	s.state.mu.Lock()
	running := !e.finished
	s.state.mu.Unlock()
	if running {
		return errValue("can not drop a not yet finished execution, abort it first.")
	}
	s.state.dropExecution(e)
	return status("OK")
}

// cmdPyStats reports memory figures. The worker's allocator is not instrumented; the Go heap figures
// are plausible stand-ins of the same shape.
func cmdPyStats(s *Server, c *client, args [][]byte) value {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return array(bulk("TotalAllocated"), integer(int64(m.TotalAlloc)), bulk("PeakAllocated"), integer(int64(m.HeapSys)),
		bulk("CurrAllocated"), integer(int64(m.HeapAlloc)))
}

func (st *state) reqEntryLocked(rq *requirement) value {
	yn := func(b bool) value {
		if b {
			return bulk("yes")
		}
		return bulk("no")
	}
	refs := int64(0)
	for _, ss := range st.sessions {
		for _, n := range ss.reqs {
			if n == rq.name {
				refs++
			}
		}
	}
	var wheels value
	if rq.downloaded {
		wheels = array(bulks(rq.wheels)...)
	} else {
		wheels = bulk("Requirement was not yet downloaded so wheels are not available")
	}
	return array(bulk("GearReqVersion"), integer(1), bulk("Name"), bulk(rq.name), bulk("IsDownloaded"), yn(rq.downloaded),
		bulk("IsInstalled"), yn(rq.installed), bulk("CompiledOs"), bulk(runtime.GOOS+"-"+runtime.GOARCH),
		bulk("Wheels"), wheels, bulk("Path"), bulk(rq.basePath), bulk("RefCount"), integer(refs),
		bulk("IsInReqDictionary"), bulk("yes"))
}

func cmdPyDumpReqs(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	names := make([]string, 0, len(st.reqs))
	for n := range st.reqs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]value, len(names))
	for i, n := range names {
		out[i] = st.reqEntryLocked(st.reqs[n])
	}
	return array(out...)
}

func (st *state) sessionEntryLocked(ss *session, verbose bool) value {
	needed := int64(0)
	if len(ss.reqs) > 0 {
		needed = 1
	}
	var reqs, regs []value
	for _, n := range ss.reqs {
		if verbose {
			rq := st.reqs[n]
			if rq == nil {
				rq = &requirement{name: n}
			}
			reqs = append(reqs, st.reqEntryLocked(rq))
		} else {
			reqs = append(reqs, bulk(n))
		}
	}
	for _, id := range ss.regIDs {
		if verbose {
			if r := st.regs[id]; r != nil {
				regs = append(regs, st.regEntryLocked(r, false))
			}
		} else {
			regs = append(regs, bulk(id))
		}
	}
	linked, dead := "primary", "false"
	if ss.dead {
		linked, dead = "None", "true"
	}
	return array(bulk("ID"), bulk(ss.id), bulk("sessionDescription"), descValue(ss.desc, ss.hasDesc),
		bulk("refCount"), integer(ss.refCount()), bulk("linked"), bulk(linked), bulk("dead"), bulk(dead),
		bulk("requirementInstallationNeeded"), integer(needed), bulk("requirements"), array(reqs...),
		bulk("registrations"), array(regs...))
}

func cmdPyDumpSessions(s *Server, c *client, args [][]byte) value {
	verbose, dead := false, false
	var names []string
	bySession := false
	for i := 1; i < len(args); i++ {
		w := string(args[i])
		switch strings.ToUpper(w) {
		case "VERBOSE":
			verbose = true
		case "DEAD":
			dead = true
		case "SESSIONS":
			bySession = true
			for _, n := range args[i+1:] {
				names = append(names, string(n))
			}
			i = len(args)
		default:
			return errValue("Unknown option " + w)
		}
	}
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	// DEAD lists the sessions that were replaced or unregistered while executions of theirs still ran.
	pool := st.sessions
	if dead {
		pool = map[string]*session{}
		for ss := range st.dead {
			pool[ss.id] = ss
		}
	}
	if bySession {
		out := make([]value, len(names))
		for i, n := range names {
			if ss := pool[n]; ss != nil {
				out[i] = st.sessionEntryLocked(ss, verbose)
			} else {
				out[i] = bulk("Session " + n + " does not exists")
			}
		}
		return array(out...)
	}
	ids := make([]string, 0, len(pool))
	for id := range pool {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]value, len(ids))
	for i, id := range ids {
		out[i] = st.sessionEntryLocked(pool[id], verbose)
	}
	return array(out...)
}

func cmdPyProfile(s *Server, c *client, args [][]byte) value {
	sub := strings.ToUpper(string(args[1]))
	if sub != "STATS" && sub != "RESET" {
		return errValue("Wrong subcommand given to RG.PYPROFILE")
	}
	if len(args) < 3 {
		return errValue("ERR wrong number of arguments for 'rg.pyprofile' command")
	}
	s.state.mu.Lock()
	ss := s.state.sessions[string(args[2])]
	s.state.mu.Unlock()
	if ss == nil {
		return errValue("session does not exists")
	}
	if sub == "RESET" {
		return status("OK")
	}
	// Profiling data is only collected with ProfileExecutions=1, which gearstest does not implement:
	// pstats fails on an empty profile as it does on the real server.
	return errValue("Error type: <class 'TypeError'>, Value: Cannot create or construct a <class 'pstats.Stats'> object from <cProfile.Profile object>")
}

func cmdConfigGet(s *Server, c *client, args [][]byte) value {
	return s.state.cfg.get(args[1:])
}

func cmdConfigSet(s *Server, c *client, args [][]byte) value {
	v, changed := s.state.cfg.set(args[1:])
	// A restarting worker gets the whole configuration in its init message.
	if len(changed) > 0 {
		if wk := s.currentWorker(); wk != nil {
			for _, kv := range changed {
				_ = wk.send(bulk("config"), bulk(kv[0]), bulk(kv[1]))
			}
		}
	}
	return v
}

func cmdPause(s *Server, c *client, args [][]byte) value {
	id, _ := canonicalID(string(args[1]))
	s.state.mu.Lock()
	r := s.state.regs[id]
	s.state.mu.Unlock()
	if r == nil {
		return errValue("Execution " + string(args[1]) + " does not exists on shard " + zeroShard)
	}
	verb := "pause"
	if strings.EqualFold(string(args[0]), "RG.UNPAUSEREGISTRATIONS") {
		verb = "unpause"
	}
	return errValue("Reader " + r.reader + " does not support " + verb)
}

func cmdClearStats(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.regs {
		r.numTriggered, r.numSuccess, r.numFailures, r.numAborted = 0, 0, 0, 0
		r.lastMS, r.totalMS = 0, 0
		r.lastError, r.hasLastError = "", false
	}
	return status("OK")
}

func cmdPyExportReq(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	rq := st.reqs[string(args[1])]
	if rq == nil {
		return errValue("requirement does not exists")
	}
	return array(st.reqEntryLocked(rq), array())
}

func cmdPyImportReq(s *Server, c *client, args [][]byte) value {
	return errValue("ERR gearstest: RG.PYIMPORTREQ is not supported (install requirements with RG.PYEXECUTE ... REQUIREMENTS)")
}

func cmdDumpPlugins(s *Server, c *client, args [][]byte) value {
	return array(array(bulk("GearsPythonPlugin"), integer(10213)))
}
