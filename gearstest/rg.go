package gearstest

import "sync"

// rgCommand is one RG.* command. Its handler runs in one of two ways (runRG):
//   - ownLocking false: runRG holds the global lock around it (EXEC holds it already). Such a handler
//     never waits for the worker or for an execution, so execute() from a gear function may call it,
//     under the lock the gear holds (doRGCall).
//   - ownLocking true: the handler talks to the worker or waits for executions. It takes the global
//     lock itself with holdLock, once, for the steps that need it, so that its waits do not stall
//     every other client. execute() cannot call it: it would wait for the very worker that asks.
type rgCommand struct {
	minArgs, maxArgs int // argc bounds; maxArgs < 0 means unbounded
	ownLocking       bool
	fn               func(s *Server, c *client, args [][]byte) value
}

// The command table: every RG command, its arity and locking, and its handler (cmd_*.go).
var rgCommands map[string]*rgCommand

// checkArity reports whether argc (the command name included) suits the command.
func (h *rgCommand) checkArity(argc int) bool {
	return argc >= h.minArgs && (h.maxArgs < 0 || argc <= h.maxArgs)
}

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
		"RG.INFOCLUSTER":             {1, -1, false, cmdInfoCluster},
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
			return bulk(msgFreeInterpreter)
		}},
		"RG.PYEXECUTEREMOTE": {1, -1, false, func(*Server, *client, [][]byte) value {
			return bulk(msgExecuteRemote)
		}},
	}
}

// holdLock takes the global lock for c's command, unless c runs inside EXEC (which holds it for the
// whole transaction), and returns what releases it. The release is idempotent, so that a handler may
// release early (RG.TRIGGER of an async registration, a sync one on `yield`) and still defer it.
func (s *Server) holdLock(c *client) (release func()) {
	if c.inExec {
		return func() {}
	}
	s.lock.acquire(c.token)
	return sync.OnceFunc(func() { s.lock.release(c.token) })
}
