package gearstest

import (
	"runtime"
	"sort"
	"strings"
)

// cmdPyStats reports memory figures. The worker's allocator is not instrumented; the Go heap figures
// are plausible stand-ins of the same shape.
func cmdPyStats(s *Server, c *client, args [][]byte) value {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return array(bulk("TotalAllocated"), integer(int64(m.TotalAlloc)), bulk("PeakAllocated"), integer(int64(m.HeapSys)),
		bulk("CurrAllocated"), integer(int64(m.HeapAlloc)))
}

// cmdPyDumpReqs implements RG.PYDUMPREQS, by requirement name.
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

// cmdPyDumpSessions implements RG.PYDUMPSESSIONS [VERBOSE] [DEAD] [SESSIONS id...].
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
			return errValue(msgUnknownOption(w))
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
				out[i] = bulk(msgSessionMissing(n))
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

// cmdPyProfile implements RG.PYPROFILE STATS|RESET <session>.
func cmdPyProfile(s *Server, c *client, args [][]byte) value {
	sub := strings.ToUpper(string(args[1]))
	if sub != "STATS" && sub != "RESET" {
		return errValue(msgProfileSubcommand)
	}
	if len(args) < 3 {
		return errValue(msgProfileArity)
	}
	s.state.mu.Lock()
	ss := s.state.sessions[string(args[2])]
	s.state.mu.Unlock()
	if ss == nil {
		return errValue(msgNoSession)
	}
	if sub == "RESET" {
		return status("OK")
	}
	// Profiling data is only collected with ProfileExecutions=1, which gearstest does not implement:
	// pstats fails on an empty profile as it does on the real server.
	return errValue(msgEmptyProfile)
}

// cmdPyExportReq implements RG.PYEXPORTREQ (the requirement's metadata; no wheel data).
func cmdPyExportReq(s *Server, c *client, args [][]byte) value {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	rq := st.reqs[string(args[1])]
	if rq == nil {
		return errValue(msgNoRequirement)
	}
	return array(st.reqEntryLocked(rq), array())
}

// cmdPyImportReq refuses RG.PYIMPORTREQ, which gearstest does not implement.
func cmdPyImportReq(s *Server, c *client, args [][]byte) value {
	return errValue(msgImportReqUnsupported)
}
