package gearstest

import (
	"strconv"
	"strings"
	"sync"
)

// Registrations in a cluster (gears-spec.md §3.4; src/commands.c Command_Register, src/execution_plan.c
// FlatExecutionPlane_RegistrationCtxUpgradeInternal, v1.2.13). On a real cluster the shard that got the
// RG.PYEXECUTE runs the script, which only prepares its registrations (verified, serialized); then an
// internal ShardIDReader execution applies them on every shard under that shard's lock, with the same
// registration ids (made by the origin: "<origin node id>-<n>"), and RG.PYEXECUTE replies once every
// shard answered: OK, or an array of the shards' errors "-ERR shard-<node id>: <reason>" (the shards
// that succeeded keep what they applied; nothing is rolled back).
//
// gearstest cannot ship serialized plans between workers (cloudpickle by value of the worker's own
// objects), so it replays the script instead: the origin runs and commits it as stand-alone, then each
// other shard runs the same source in replica mode (python/PROTOCOL.md `exec`, flag `r`): register()
// takes the origin's ids in order, run() is skipped, the top level's execute() does nothing and returns
// None, log() is silent; onRegistered callbacks run on every shard, as they do on a real cluster. A
// script whose registrations depend on what its top level read with execute() may therefore register
// differently on the other shards (then their error comes back); such a script is rare and fragile.

// appliedSession is what an RG.PYEXECUTE committed on the shard that ran it, for the other shards.
type appliedSession struct {
	replaced string      // the session it replaced (UPGRADE, REPLACE_WITH) or ""
	regIDs   []string    // the ids of its registrations, in the order the script made them
	plan     internalIDs // the ids of the internal ShardIDReader plan and execution that applies them
}

// others returns the other shards of s's cluster, in slot order.
func (s *Server) others() []*Server {
	var out []*Server
	for _, t := range s.shard.cl.shards {
		if t != nil && t != s {
			out = append(out, t)
		}
	}
	return out
}

// replicate applies the registrations an RG.PYEXECUTE committed on s to every other shard, all at once,
// and returns the errors of the shards that failed, in slot order (the real server lists them in the
// order the shards answered).
func (s *Server) replicate(a pyExecuteArgs, applied *appliedSession) []value {
	others := s.others()
	errs := make([]string, len(others))
	var wg sync.WaitGroup
	for i, t := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if reason := t.applyReplica(a, applied); reason != "" {
				errs[i] = msgShardError(t.shard.id, reason)
			}
		}()
	}
	wg.Wait()
	var out []value
	for _, e := range errs {
		if e != "" {
			out = append(out, errValue(e))
		}
	}
	return out
}

// msgShardError is a shard's failure to apply a registration: "-ERR shard-<node id>: <reason>". The
// text starts with '-', so it goes on the wire with two dashes (gears-spec.md §0).
func msgShardError(id, reason string) string {
	return "-ERR shard-" + id + ": " + strings.ReplaceAll(strings.ReplaceAll(reason, "\r", " "), "\n", " ")
}

// replicaToken returns a lock token of its own for one apply (or unregister) coming from another
// shard: tokens are re-entrant (lock.go), so two applies reaching one shard at once need two.
func (t *Server) replicaToken() string {
	return "~replica" + strconv.FormatInt(t.shard.cl.tokens.Add(1), 10)
}

// applyReplica applies on t the session another shard committed: t installs its requirements, then,
// under its global lock (the real apply runs under LockHandler_Acquire), replaces the session it
// replaced there (if t has it) and runs the script in replica mode. It returns the reason it failed,
// or "".
//
// The session being replaced is looked up by name on t: the real apply unregisters the old
// registration ids the origin names and unlinks the old session by name, and gearstest's shards hold
// the same sessions with the same ids as long as every apply succeeded. A shard that already has a
// session of the new name (an earlier apply failed elsewhere) has it replaced.
func (t *Server) applyReplica(a pyExecuteArgs, applied *appliedSession) string {
	if err := t.installReqs(a.reqs, a.force); err != nil {
		return err.Error()
	}
	wk, err := t.worker()
	if err != nil {
		return err.Error()
	}
	token := t.replicaToken()
	t.lock.acquire(token)
	defer t.lock.release(token)
	st := t.state
	st.mu.Lock()
	var old *session
	if applied.replaced != "" {
		old = st.sessions[applied.replaced]
	}
	if old == nil {
		old = st.sessions[a.id]
	}
	st.mu.Unlock()
	mode, replaced := "create", nilValue()
	if old != nil {
		mode, replaced = "replace", bulk(old.id)
		if old.id == a.id {
			mode = "upgrade"
		}
	}
	res, err := wk.request("exec", nil, bulk(a.id), descValue(a.desc, a.hasDesc), bulk(a.script), bulk(mode),
		replaced, array(bulks(a.reqs)...), array(bulks(applied.regIDs)...), bulk(token), bulk("r"))
	if err != nil {
		return err.Error()
	}
	r := resultArr(res)
	if len(r) == 0 || r[0].String() != "ok" {
		return resultText(res)
	}
	if len(r) < 2 || len(r[1].Arr) != len(applied.regIDs) {
		return "Failed register execution" // not reached: the worker refuses a replay that registers less
	}
	st.commit(&session{id: a.id, desc: a.desc, hasDesc: a.hasDesc, reqs: a.reqs, script: a.script}, old, r[1].Arr, &applied.plan)
	return ""
}
