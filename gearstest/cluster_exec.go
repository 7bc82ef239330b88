package gearstest

import (
	"strconv"
	"strings"
)

// Distributed executions on a gearstest cluster.
//
// On a real RedisGears cluster an execution that is not local (run() in its default mode 'async', an
// RG.TRIGGER of a CommandReader registered with mode='async') runs its plan on every shard over that
// shard's data, and the records move between shards at collect() and repartition() boundaries (and the
// repartition inside groupby/batchgroupby/aggregateby/countby): src/execution_plan.c
// ExecutionPlan_CollectNextRecord, ExecutionPlan_RepartitionNextRecord, EPStatus_CreatedAction.
//
// gearstest runs such an execution in the worker of the shard where it started, once per shard
// "partition" (python/engine.py run_distributed): each partition carries its shard's index, so what a
// step does goes to that shard. The worker passes it in the lock token of its RPCs: a partition's token
// is the execution's token with "@<shard index>" appended (x<execid>@2), and Go routes `call`, `rcall`,
// `lock` and `unlock` of such a token to that shard: its data store, its global lock, its keyspace
// events (target below). hashtag() and ShardsIDReader answer the partition's shard. At a boundary the
// records move between partitions inside the worker (they are not serialized as the real server
// pickles them, so a record that could not be pickled still moves here).
//
// Why not ask every shard's own worker to run its part: a shard's worker would need the
// execution's plan, which lives in the initiator's interpreter (the real server serializes it; the
// gearstest worker keeps live Python functions, closures over session globals included), and
// the records would cross two pipes per boundary. Running the parts in one worker keeps the
// plan as it is and moves records as Python objects. The difference a user can see: all parts of one
// execution share the initiator's interpreter, so a step that writes a global sees, on another
// shard's part, what the initiator's parts wrote (a real shard has its own copy of the session's
// globals). Registrations, sessions and every execution that is not distributed stay in the worker of
// their shard.
//
// The worker runs the parts one after the other, stage by stage (all partitions up to a boundary,
// then the next stage), where the real shards run them at once: records reach a step in a different
// order across shards, which the real server does not define either.

// msgCallNotPermitted is what execute() raises when a command's keys are not all in slots of the
// shard the step runs on: Redis' RM_Call sets errno EPERM when getNodeByQuery does not answer this
// node (module.c RM_Call in Redis 6.2/7.0, for every call of a module on a cluster node that is not a
// replica's master link; CROSSSLOT included), and RedisGears' executeCommand
// (plugins/python/redisgears_python.c, v1.2.13, flags "!v") raises strerror(errno).
const msgCallNotPermitted = "Operation not permitted"

// target returns the server a worker RPC with lock token tok acts on: the worker's own server, or on
// a cluster the shard named by the token's "@<index>" suffix (a partition of a distributed
// execution). It returns nil when that shard is not running (the cluster is still starting or
// closing). A stand-alone server never parses the token.
func (wk *workerProc) target(tok string) *Server {
	s := wk.s
	if s.shard == nil {
		return s
	}
	at := strings.LastIndexByte(tok, '@')
	if at < 0 {
		return s
	}
	j, err := strconv.Atoi(tok[at+1:])
	if err != nil {
		return s
	}
	return s.shard.cl.shardAt(j)
}

// shardAt returns shard j, or nil when there is none (yet).
func (cl *Cluster) shardAt(j int) *Server {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if j < 0 || j >= len(cl.shards) {
		return nil
	}
	return cl.shards[j]
}

// callDenied reports whether execute(args…) may not run on shard s: some key of the command hashes
// to a slot s does not own, or the keys hash to several slots (Redis' getNodeByQuery).
func (s *Server) callDenied(args [][]byte) bool {
	keys := s.commandKeys(strings.ToUpper(string(args[0])), args)
	if len(keys) == 0 {
		return false
	}
	slot := keySlot(keys[0])
	if slot < s.shard.first || slot > s.shard.last {
		return true
	}
	for _, k := range keys[1:] {
		if keySlot(k) != slot {
			return true
		}
	}
	return false
}
