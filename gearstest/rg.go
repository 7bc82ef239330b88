package gearstest

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
		"RG.INFOCLUSTER":             {1, -1, false, func(*Server, *client, [][]byte) value { return bulk(msgNoClusterMode) }},
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
