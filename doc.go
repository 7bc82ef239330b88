// Package gears runs Python functions inside Redis with RedisGears 1.2 and calls them from Go as typed
// Go functions.
//
// Command turns a Script — Python source that defines a function — into a Func[T]:
//
//	hello := gears.Command[string]("hello", rdb, gears.Script{
//		Function: "hello",
//		Source:   "def hello(name):\n    return 'hello ' + name\n",
//	})
//	msg, err := hello(ctx, "world") // "hello world", computed inside Redis
//
// The first call registers the function on the server as a CommandReader gear under the trigger, exactly
// once however many goroutines and processes call at the same time; every call then sends RG.TRIGGER and
// decodes the reply into T.
//
// Client is the typed interface to every RG.* command (RG.PYEXECUTE, RG.DUMPREGISTRATIONS,
// RG.PYDUMPSESSIONS, …): it decodes replies of RedisGears 1.0 and 1.2, under RESP2 and RESP3, into
// structs, and Pipeline queues the same commands on a go-redis pipeline.
//
// Server errors are *Error values; Python tracebacks are parsed into their frames and exception, and
// errors.Is matches the server's fixed texts against sentinels such as ErrUnknownTrigger.
//
// The package gearstest provides a RedisGears-compatible server for tests.
package gears
