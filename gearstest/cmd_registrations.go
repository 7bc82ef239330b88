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
func cmdUnregister(s *Server, c *client, args [][]byte) value {
	defer s.holdLock(c)()
	id, ok := canonicalID(string(args[1]))
	if !ok {
		return errValue(msgNotRegistered)
	}
	dropped, ok := s.state.unregister(id)
	if !ok {
		return errValue(msgNotRegistered)
	}
	if wk := s.currentWorker(); wk != nil {
		msg := []value{bulk(id)}
		// ABORTPENDING (any other third argument is ignored, as in execution_plan.c) aborts the
		// registration's executions that have not started yet (the worker decides when one starts:
		// see PROTOCOL.md `unregister`); the started ones go on (gears-spec §8).
		if len(args) == 3 && strings.EqualFold(string(args[2]), "abortpending") {
			msg = append(msg, bulk("abortpending"))
		}
		_ = wk.post("unregister", msg...)
		if dropped != nil {
			_ = wk.post("dropsession", bulk(dropped.id))
		}
	}
	return status("OK")
}

// cmdPause implements RG.PAUSEREGISTRATIONS and RG.UNPAUSEREGISTRATIONS, which CommandReader
// registrations (the only ones gearstest has) do not support.
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
	if r.ev != nil && r.ev.sr != nil {
		return s.streamPause(r, verb == "pause") // StreamReader (streams.go)
	}
	return errValue(msgReaderCannot(r.reader, verb))
}

// cmdClearStats implements RG.CLEARREGISTRATIONSSTATS.
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
