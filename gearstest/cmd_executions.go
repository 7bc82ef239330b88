package gearstest

import (
	"sort"
	"strings"
	"time"
)

// cmdDumpExecutions implements RG.DUMPEXECUTIONS, in execution id order.
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

// cmdGetExecution implements RG.GETEXECUTION. Stand-alone only SHARD exists. On a shard of a cluster
// the entry names the shard's node id, and CLUSTER (the default there) answers the same one entry: the
// real server gathers every shard's SHARD entry of the execution (commands.c Command_ExecutionGet), but
// a distributed execution's parts all run in the initiator's worker here and keep no statistics of
// their own (an assumption: the other shards' entries are left out).
func cmdGetExecution(s *Server, c *client, args [][]byte) value {
	if len(args) == 3 {
		switch strings.ToUpper(string(args[2])) {
		case "SHARD":
		case "CLUSTER":
			if s.shard == nil {
				return errValue(msgNoCluster)
			}
		default:
			return errValue(msgUnknownSubcommand)
		}
	}
	st := s.state
	e := st.getExecution(string(args[1]))
	if e == nil {
		return errValue(msgNoPlan)
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
	return array(array(bulk("shard_id"), bulk(st.myid), bulk("execution_plan"), plan))
}

// cmdGetResults implements RG.GETRESULTS of a finished execution.
func cmdGetResults(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue(msgNoPlan)
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	if !e.finished {
		return errValue(msgStillRunning)
	}
	return resultsAndErrors(e)
}

// cmdGetResultsBlocking implements RG.GETRESULTSBLOCKING: it waits for the execution without the
// global lock (refused inside EXEC unless the execution is done).
func cmdGetResultsBlocking(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue(msgNoPlan)
	}
	if c.inExec {
		select {
		case <-e.done:
		default:
			// EXEC holds the "main thread": Redis refuses to block a client inside a transaction.
			return errValue(msgBlockingInTx)
		}
	}
	select {
	case <-e.done:
	case <-s.stop:
		return errValue(errServerClosed.Error())
	case <-time.After(1000 * time.Second):
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return resultsAndErrors(e)
}

// cmdAbortExecution implements RG.ABORTEXECUTION: the worker aborts the execution (best effort).
func cmdAbortExecution(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue(msgNoExecution)
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

// cmdDropExecution implements RG.DROPEXECUTION of a finished execution.
func cmdDropExecution(s *Server, c *client, args [][]byte) value {
	e := s.state.getExecution(string(args[1]))
	if e == nil {
		return errValue(msgNoPlan)
	}
	s.state.mu.Lock()
	running := !e.finished
	s.state.mu.Unlock()
	if running {
		return errValue(msgDropRunning)
	}
	s.state.dropExecution(e)
	return status("OK")
}
