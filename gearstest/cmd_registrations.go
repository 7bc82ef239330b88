package gearstest

import (
	"strings"
)

// cmdDumpRegistrations implements RG.DUMPREGISTRATIONS, in registration id order.
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

// cmdUnregister implements RG.UNREGISTER (execution_plan.c) under the global lock, as on the real
// server's main thread. It tells the worker without waiting for its answer: the worker reads the
// message before anything sent after it. While the worker restarts there is nothing to tell: the
// restore drops what the state no longer has when it publishes the new worker (state.restore).
//
// In a cluster the registration goes on every shard (ExecutionPlan_UnregisterSingleReigstration sends
// it to the others after checking it exists locally; a shard without it logs and ignores it). The real
// server replies before the others got the message; gearstest applies it on them first, each under its
// own lock once this shard's is released (never two at once, so two shards unregistering at the same
// time cannot deadlock), so the reply means it is gone everywhere.
func cmdUnregister(s *Server, c *client, args [][]byte) value {
	id, ok := canonicalID(string(args[1]))
	if !ok {
		return errValue(msgNotRegistered)
	}
	// ABORTPENDING (any other third argument is ignored, as in execution_plan.c) aborts the
	// registration's executions that have not started yet (the worker decides when one starts:
	// see PROTOCOL.md `unregister`); the started ones go on (gears-spec §8).
	abortPending := len(args) == 3 && strings.EqualFold(string(args[2]), "abortpending")
	release := s.holdLock(c)
	ok = s.unregisterLocal(id, abortPending)
	release()
	if !ok {
		return errValue(msgNotRegistered)
	}
	if s.shard != nil {
		for _, t := range s.others() {
			token := t.replicaToken()
			t.lock.acquire(token)
			t.unregisterLocal(id, abortPending)
			t.lock.release(token)
		}
	}
	return status("OK")
}

// unregisterLocal removes registration id from this shard (the caller holds the global lock) and
// reports whether it existed.
func (s *Server) unregisterLocal(id string, abortPending bool) bool {
	dropped, ok := s.state.unregister(id)
	if !ok {
		return false
	}
	if wk := s.currentWorker(); wk != nil {
		msg := []value{bulk(id)}
		if abortPending {
			msg = append(msg, bulk("abortpending"))
		}
		_ = wk.post("unregister", msg...)
		if dropped != nil {
			_ = wk.post("dropsession", bulk(dropped.id))
		}
	}
	return true
}

// cmdPause implements RG.PAUSEREGISTRATIONS and RG.UNPAUSEREGISTRATIONS (src/commands.c
// Command_PauseOrUnpausedRegistrations): CommandReader registrations do not support them, StreamReader
// ones do. In a cluster the command runs on every shard (a ShardIDReader execution: each shard checks
// the registration exists there and its reader supports the operation, then applies it) and replies
// the first error, or OK; gearstest lists this shard's error first, then the others' in slot order.
// The other shards' state is changed under their state mutex, not their global lock: this handler runs
// under this shard's lock, and waiting for another shard's would deadlock two shards doing it at once.
//
// The ShardIDReader plan and its execution take a registration id and an execution id (stand-alone
// too), and in a cluster the other shards' counters move past them (state.commit).
func cmdPause(s *Server, c *client, args [][]byte) value {
	pause := !strings.EqualFold(string(args[0]), "RG.UNPAUSEREGISTRATIONS")
	ids := s.state.internalPlan()
	v := s.pauseLocal(string(args[1]), pause)
	if s.shard != nil {
		for _, t := range s.others() {
			t.state.sawIDs(ids)
			if w := t.pauseLocal(string(args[1]), pause); w.Kind == kindError && v.Kind != kindError {
				v = w
			}
		}
	}
	return v
}

// pauseLocal pauses or unpauses registration id on this shard.
func (s *Server) pauseLocal(id string, pause bool) value {
	cid, _ := canonicalID(id)
	s.state.mu.Lock()
	r := s.state.regs[cid]
	s.state.mu.Unlock()
	if r == nil {
		return errValue(msgNoRegistrationOnShard(id, s.state.myid))
	}
	verb := "pause"
	if !pause {
		verb = "unpause"
	}
	if r.ev != nil && r.ev.sr != nil {
		return s.streamPause(r, pause) // StreamReader (streams.go)
	}
	return errValue(msgReaderCannot(r.reader, verb))
}

// cmdClearStats implements RG.CLEARREGISTRATIONSSTATS, on every shard of a cluster (src/commands.c
// Command_FlushRegistrationsStats runs a ShardIDReader execution, whose plan and execution take ids as
// in cmdPause).
func cmdClearStats(s *Server, c *client, args [][]byte) value {
	ids := s.state.internalPlan()
	s.state.clearStats()
	if s.shard != nil {
		for _, t := range s.others() {
			t.state.sawIDs(ids)
			t.state.clearStats()
		}
	}
	return status("OK")
}

// clearStats zeroes the statistics of every registration.
func (st *state) clearStats() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.regs {
		r.numTriggered, r.numSuccess, r.numFailures, r.numAborted = 0, 0, 0, 0
		r.lastMS, r.totalMS = 0, 0
		r.lastError, r.hasLastError = "", false
	}
}
