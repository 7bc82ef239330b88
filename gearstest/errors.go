package gearstest

import "errors"

// Error texts of a real RedisGears 1.2.13 (Redis 7.0.15 with the rg module), byte for byte: the
// conformance tests (spec_*_test.go) check them against a real server, and gears-spec.md §1 lists
// them. A text with a variable part is a function.
const (
	msgGearsInMulti       = "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
	msgIDMissing          = "ID is missing"
	msgBadSessionID       = "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
	msgDescMissing        = "DESCRIPTION is missing"
	msgReplaceWithMissing = "REPLACE_WITH is missing"
	msgNoPlan             = "execution plan does not exist"
	msgNoExecution        = "execution does not exist"
	msgStillRunning       = "execution is still running"
	msgDropRunning        = "can not drop a not yet finished execution, abort it first."
	msgNoCluster          = "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead"
	msgUnknownSubcommand  = "unknown subcommand"
	msgBlockingInTx       = "Blocking module command called from transaction"
	msgNotRegistered      = "execution is not registered"
	msgNoTrigger          = "ERR subcommand not found"
	msgNonSyncInMulti     = "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."
	msgProfileSubcommand  = "Wrong subcommand given to RG.PYPROFILE"
	msgProfileArity       = "ERR wrong number of arguments for 'rg.pyprofile' command"
	msgNoSession          = "session does not exists"
	msgNoRequirement      = "requirement does not exists"
	// RG.PYPROFILE STATS without ProfileExecutions=1: pstats fails on the empty profile.
	msgEmptyProfile = "Error type: <class 'TypeError'>, Value: Cannot create or construct a <class 'pstats.Stats'> " +
		"object from <cProfile.Profile object>"
	msgFreeInterpreter = "Free interpreter is not longer supported" // a bulk reply, not an error
	msgExecuteRemote   = "Execute remote is not longer supported"   // a bulk reply, not an error
	msgNoClusterMode   = "no cluster mode"                          // RG.INFOCLUSTER, a bulk reply

	msgMultiNested   = "ERR MULTI calls can not be nested"
	msgWatchInMulti  = "ERR WATCH inside MULTI is not allowed"
	msgExecAbort     = "EXECABORT Transaction discarded because of previous errors."
	msgInvalidArgRPC = "Invalid argument" // RedisModule_Call's errno text for a wrong arity
)

func msgUnknownArgument(arg string) string { return "Unknown arguments were given: " + arg }
func msgUnknownOption(opt string) string   { return "Unknown option " + opt }
func msgSessionExists(id string) string    { return "Session " + id + " already exists" }
func msgSessionMissing(id string) string   { return "Session " + id + " does not exists" }
func msgReplaceExisting(id, with string) string {
	return "Can not replace an existing session " + id + " with " + with
}
func msgReplaceMissing(with string) string {
	return "Can not replace with " + with + ", session does not exists."
}
func msgNoRegistrationOnShard(id, shard string) string {
	return "Execution " + id + " does not exists on shard " + shard
}
func msgReaderCannot(reader, verb string) string {
	return "Reader " + reader + " does not support " + verb
}

// RG.CONFIGGET/RG.CONFIGSET errors (one per key, inside the reply array).
func msgConfigUnsupported(key string) string { return "(error) Unsupported config parameter: " + key }
func msgConfigNoValue(key string) string     { return "(error) Value was not given to " + key }
func msgConfigNotRuntime(key string) string {
	return "(error) " + key + " is not configurable at runtime"
}
func msgConfigNotModifiable(key string) string {
	return "(error) Config value " + key + " not modifiable at runtime"
}
func msgConfigSetFailed(key string) string { return "(error) Failed setting config value " + key }

// msgWrongArity is Redis' error for a command with the wrong number of arguments (name lower-cased).
func msgWrongArity(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// Texts of gearstest's own errors (no real-server counterpart).
var (
	// errWorkerDied is what every request in flight gets when the Python worker dies.
	errWorkerDied   = errors.New("ERR gearstest: python worker died, execution aborted")
	errServerClosed = errors.New("ERR gearstest: server closed")
)

const (
	msgImportReqUnsupported = "ERR gearstest: RG.PYIMPORTREQ is not supported (install requirements with RG.PYEXECUTE ... REQUIREMENTS)"
	msgStoreUnavailable     = "ERR gearstest: data store unavailable: " // + the dial error
	msgStoreFailed          = "ERR gearstest: data store: "             // + the I/O error
)
