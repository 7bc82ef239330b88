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
// Cluster mode (StartCluster, RunCluster, `gears serve --shards N`): N shards, each a full Server with
// its own store, worker and slot range, answering the cluster commands and redirecting keyed commands
// (RG.TRIGGERONKEY's key included) with MOVED. A registration sent to any shard is applied on every
// shard with the ids of the shard that ran the script, and RG.UNREGISTER, RG.PAUSEREGISTRATIONS,
// RG.UNPAUSEREGISTRATIONS and RG.CLEARREGISTRATIONSSTATS act on every shard, as on RedisGears 1.2.13.
// One difference: a real cluster ships the serialized registrations to the other shards, while
// gearstest replays the script there in a replica mode (registrations take the origin's ids in order,
// run() is skipped, the top level's execute() does nothing and returns None, log() is silent), so a
// script whose registrations depend on what its top level read with execute() fails to apply on the
// other shards (their "-ERR shard-<id>: …" errors come back).
//
// A run() in mode 'async' and the RG.TRIGGER of an async registration run on every shard: the worker of
// the shard where the execution started runs a part per shard, each part's execute(), atomic() and
// readers reaching its shard's store and lock (cluster_exec.go). All parts of one execution share that
// worker's session globals, where a real shard has its own copy.
//
// Not there (yet): RG.PYPROFILE statistics (ProfileExecutions), replication and persistence of
// registrations across server restarts, cluster failover, resharding and replicas.
package gearstest
