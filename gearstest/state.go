package gearstest

import (
	"strconv"
	"sync"
	"time"
)

// zeroShard is the stand-alone shard id that prefixes registration and execution ids.
const zeroShard = "0000000000000000000000000000000000000000"

// state is the RedisGears bookkeeping that lives in Go: sessions, registrations, executions, id
// counters, requirements and configuration. The worker only runs code.
//
// Id counters (src/execution_plan.c lastEPId/lastFEPId, gears-spec.md §0 and §8): every GB() and every
// register() takes a registration ("flat execution plan") id, which the worker asks for with `newid`.
// A PYEXECUTE whose script registered something takes one more, per PYEXECUTE and not per
// registration: src/commands.c Command_Register builds one internal ShardIDReader plan
// (RedisGears_CreateCtx) and runs it (RedisGears_Run), so it also consumes one execution id, and
// drops that execution when it is done. RG.TRIGGER consumes an execution id for every call that
// reaches RedisGears_Run (not when it is refused, e.g. a non-sync trigger inside MULTI), and
// CommandReader_OnDone (src/readers/command_reader.c) calls RedisGears_DropExecution, so trigger
// executions are listed by RG.DUMPEXECUTIONS only while they run.
type state struct {
	s    *Server
	cfg  *config
	myid string // the shard id that prefixes the ids made here (makeID)

	mu        sync.Mutex // guards everything below
	fepID     int64
	epID      int64
	sessSeq   int64
	sessions  map[string]*session
	regs      map[string]*registration
	triggers  map[string]*registration
	execs     map[string]*execution
	execOrder []*execution // creation order, for the MaxExecutions cap
	reqs      map[string]*requirement
	dead      map[*session]bool
}

type session struct {
	id         string
	desc       string
	hasDesc    bool
	reqs       []string
	regIDs     []string
	script     string
	seq        int64
	origRegIDs []string // the ids of the registrations the script made, for restores
	running    int64    // trigger executions in flight
	dead       bool     // unlinked while executions still ran (RG.PYDUMPSESSIONS DEAD)
	replica    bool     // applied from another shard of the cluster (cluster_regs.go): restored in replica mode
}

// refCount is the session's reference count as RedisGears shows it: every registered flat execution
// plan holds one reference to its session (PythonSessionCtx_ShallowCopyWithFep).
func (ss *session) refCount() int64 {
	if ss.dead {
		return ss.running
	}
	return max(int64(len(ss.regIDs)), 1)
}

// unlinkLocked retires a session that left the session dictionary: it stays listed as dead while
// executions of its registrations still run.
func (st *state) unlinkLocked(ss *session) {
	if ss.running > 0 {
		ss.dead = true
		st.dead[ss] = true
	}
}

type registration struct {
	id      string
	reader  string
	desc    string
	hasDesc bool
	mode    string
	trigger string
	inorder bool
	steps   value
	sess    *session
	order   sync.Mutex // held by a running execution of an inorder registration

	numTriggered, numSuccess, numFailures, numAborted int64
	lastMS, totalMS                                   int64
	lastError                                         string
	hasLastError                                      bool

	ev *eventReg // the reader arguments of a KeysReader/StreamReader registration (events.go)
}

type execution struct {
	id         string
	num        int64
	status     string
	results    []value
	errors     []value
	steps      value
	registered bool
	trigger    bool
	start      time.Time
	dur        time.Duration
	done       chan struct{}
	finished   bool
}

type requirement struct {
	name       string
	basePath   string
	wheels     []string
	downloaded bool
	installed  bool
}

func newState(s *Server) *state {
	myid := zeroShard
	if s.shard != nil {
		myid = s.shard.id
	}
	return &state{
		s: s, cfg: newConfig(), myid: myid,
		sessions: map[string]*session{}, regs: map[string]*registration{}, triggers: map[string]*registration{},
		execs: map[string]*execution{}, reqs: map[string]*requirement{}, dead: map[*session]bool{},
	}
}

// makeID is the id of registration or execution n: "<shard id>-<n>", the shard id being 40 × '0'
// stand-alone and the shard's node id in a cluster (src/common.c SetId).
func (st *state) makeID(n int64) string { return st.myid + "-" + strconv.FormatInt(n, 10) }

// parseID accepts "<40 chars>-<number>" as RedisGears does; anything else is "not found".
func parseID(id string) (int64, bool) {
	if len(id) < 42 || id[40] != '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(id[41:], 10, 64)
	return n, err == nil
}

// canonicalID normalizes an id the way RedisGears' lookup does (it re-prints the parsed number).
func canonicalID(id string) (string, bool) {
	n, ok := parseID(id)
	if !ok {
		return "", false
	}
	return id[:40] + "-" + strconv.FormatInt(n, 10), true
}

// internalIDs are the ids of an internal ShardIDReader plan and its execution (registration apply,
// RG.PAUSEREGISTRATIONS, RG.CLEARREGISTRATIONSSTATS: src/commands.c).
type internalIDs struct{ fep, ep int64 }

// internalPlanLocked consumes the ids of an internal ShardIDReader plan (RedisGears_CreateCtx) and of
// its execution (RedisGears_Run), which is dropped when done. The caller holds st.mu.
func (st *state) internalPlanLocked() internalIDs {
	ids := internalIDs{st.fepID, st.epID}
	st.fepID++
	st.epID++
	return ids
}

// internalPlan is internalPlanLocked for a caller that does not hold st.mu.
func (st *state) internalPlan() internalIDs {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.internalPlanLocked()
}

// sawIDsLocked moves the counters past ids received from another shard (src/common.c SetId: a given id
// sets lastID to MAX(id + 1, lastID)); a negative number is ignored. The caller holds st.mu.
func (st *state) sawIDsLocked(fep, ep int64) {
	if fep >= 0 {
		st.fepID = max(st.fepID, fep+1)
	}
	if ep >= 0 {
		st.epID = max(st.epID, ep+1)
	}
}

// sawIDs is sawIDsLocked for a caller that does not hold st.mu.
func (st *state) sawIDs(ids internalIDs) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sawIDsLocked(ids.fep, ids.ep)
}

func (st *state) newFEPID() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	id := st.makeID(st.fepID)
	st.fepID++
	return id
}

func (st *state) newEPID() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := st.epID
	st.epID++
	return n
}

// addExecution records a new running execution and applies the MaxExecutions cap.
func (st *state) addExecution(e *execution) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.execs[e.id] = e
	st.execOrder = append(st.execOrder, e)
	st.evictLocked()
}

func (st *state) evictLocked() {
	max := int(st.cfg.intValue("MaxExecutions"))
	if len(st.execs) <= max {
		if len(st.execOrder) > 2*len(st.execs)+64 {
			st.compactLocked()
		}
		return
	}
	for _, e := range st.execOrder {
		if len(st.execs) <= max {
			break
		}
		if e.finished && st.execs[e.id] == e {
			delete(st.execs, e.id)
		}
	}
	st.compactLocked()
}

func (st *state) compactLocked() {
	kept := st.execOrder[:0]
	for _, e := range st.execOrder {
		if st.execs[e.id] == e {
			kept = append(kept, e)
		}
	}
	for i := len(kept); i < len(st.execOrder); i++ {
		st.execOrder[i] = nil
	}
	st.execOrder = kept
}

// startTrigger accepts an RG.TRIGGER call of trigger: it counts it and creates its execution, which
// RG.DUMPEXECUTIONS lists while it runs.
func (st *state) startTrigger(trigger string, inExec bool) (*registration, *execution, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.triggers[trigger]
	if r == nil {
		return nil, nil, errNoTrigger
	}
	if inExec && r.mode != "sync" {
		return nil, nil, errNonSyncInMulti
	}
	r.numTriggered++
	if r.sess != nil {
		r.sess.running++
	}
	e := &execution{num: st.epID, status: "running", trigger: true, start: time.Now(), done: make(chan struct{})}
	st.epID++
	e.id = st.makeID(e.num)
	st.execs[e.id] = e
	st.execOrder = append(st.execOrder, e)
	st.evictLocked()
	return r, e, nil
}

// finishTrigger records the end of a trigger's execution in its registration's statistics and drops
// the execution (CommandReader_OnDone). It returns the records and errors to reply.
func (st *state) finishTrigger(r *registration, e *execution, res value, err error) (records, errs []value) {
	records, errs, aborted := triggerResult(res, err)
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
	// done is closed once, by whoever finishes the execution first.
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
	return records, errs
}

// newRunExecution creates the execution of a run() inside a script (`newexec`).
func (st *state) newRunExecution(steps value) string {
	e := &execution{num: st.newEPID(), status: "running", steps: steps, start: time.Now(), done: make(chan struct{})}
	e.id = st.makeID(e.num)
	st.addExecution(e)
	return e.id
}

// runDone records the end of a run() execution (`execdone`).
func (st *state) runDone(id, status string, records, errs value) {
	st.mu.Lock()
	e := st.execs[id]
	if e == nil || e.finished {
		st.mu.Unlock()
		return
	}
	e.status = status
	e.results = records.Arr
	e.errors = errs.Arr
	e.dur = time.Since(e.start)
	e.finished = true
	st.mu.Unlock()
	close(e.done)
}

func (st *state) getExecution(id string) *execution {
	cid, ok := canonicalID(id)
	if !ok {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.execs[cid]
}

func (st *state) dropExecution(e *execution) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.execs[e.id] == e {
		delete(st.execs, e.id)
	}
}

// finishAborted ends a running execution with an error (worker death, server close).
func (st *state) finishAborted(e *execution, msg string) {
	st.mu.Lock()
	if e.finished {
		st.mu.Unlock()
		return
	}
	e.status = "aborted"
	e.errors = append(e.errors, bulk(msg))
	e.dur = time.Since(e.start)
	e.finished = true
	st.mu.Unlock()
	close(e.done)
}

// workerDied aborts the run() executions the dead worker was running.
func (st *state) workerDied() {
	st.mu.Lock()
	var running []*execution
	for _, e := range st.execs {
		if !e.finished && !e.trigger {
			running = append(running, e)
		}
	}
	st.mu.Unlock()
	for _, e := range running {
		st.finishAborted(e, errWorkerDied.Error())
	}
}

// abortAll ends every running run() execution (Close), so no handler waits forever. A trigger's
// execution is finished by its RG.TRIGGER handler, whose worker request fails once the worker is gone
// (as in workerDied).
func (st *state) abortAll() {
	st.mu.Lock()
	var running []*execution
	for _, e := range st.execs {
		if !e.finished && !e.trigger {
			running = append(running, e)
		}
	}
	st.mu.Unlock()
	for _, e := range running {
		st.finishAborted(e, "gearstest: server closed")
	}
}

func bulks(ss []string) []value {
	vs := make([]value, len(ss))
	for i, s := range ss {
		vs[i] = bulk(s)
	}
	return vs
}

func resultArr(v value) []value {
	if v.Kind == kindArray {
		return v.Arr
	}
	return nil
}

// resultText returns the error text of a `["err", text]` result.
func resultText(v value) string {
	if r := resultArr(v); len(r) > 1 {
		return r[1].String()
	}
	return "gearstest: malformed answer from the python worker"
}
