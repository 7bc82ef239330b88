package gearstest

import (
	"strings"
	"time"
)

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
		return errValue(msgNotRegistered)
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

func cmdPause(s *Server, c *client, args [][]byte) value {
	id, _ := canonicalID(string(args[1]))
	s.state.mu.Lock()
	r := s.state.regs[id]
	s.state.mu.Unlock()
	if r == nil {
		return errValue(msgNoRegistrationOnShard(string(args[1])))
	}
	verb := "pause"
	if strings.EqualFold(string(args[0]), "RG.UNPAUSEREGISTRATIONS") {
		verb = "unpause"
	}
	return errValue(msgReaderCannot(r.reader, verb))
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
