// Package gearstest runs a RedisGears 1.2 compatible server for tests and local runs: a RESP front end
// written in Go, a data store (an in-process miniredis, or an external Redis), and a real CPython worker
// process that runs the gear functions. It is to RedisGears what miniredis is to Redis.
//
// In a test:
//
//	srv := gearstest.Run(t) // stopped by t.Cleanup
//	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
//	rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='hello')")
//	rdb.Do(ctx, "RG.TRIGGER", "hello", "world") // ["['hello', 'world']"]
//
// In a program, Start returns a server that Close stops; `gears serve` (cmd/gears) wraps it.
//
// How it is built:
//
//   - Clients speak RESP2 or RESP3 (HELLO) to a redcon front end. Every command that is not RG.* goes
//     to the data store over the client's own store connection, and the reply is relayed byte for byte,
//     so SELECT, WATCH and the protocol version stay per client. MULTI is queued in the front so that
//     RG commands can take part in transactions; Pub/Sub connections are bridged to the store.
//   - One global lock models Redis' main thread: every command holds it while it runs, sync executions
//     for their whole run (until they wait on a future), atomic() blocks while they last. Blocking
//     commands of clients wait without it; inside gear functions they answer at once, as on RedisGears.
//   - Sessions, registrations, executions, id counters and configuration live in Go; the Python worker
//     (one long-lived process, gearstest/python, protocol in python/PROTOCOL.md) only runs code. If it
//     dies, calls in flight get an error, and it is restarted with every registered session restored
//     under the same registration ids.
//   - execute() calls run in-process on miniredis (no network round trip), or on pooled connections to
//     the external Redis given with WithRedis.
//
// Not there (yet): cluster mode, the KeysReader, KeysOnlyReader and StreamReader registrations,
// command hooks, RG.PYPROFILE statistics (ProfileExecutions), replication and persistence of
// registrations across server restarts.
package gearstest
