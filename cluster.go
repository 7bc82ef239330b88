package gears

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster support.
//
// RedisGears 1.2 on a cluster keeps one copy of every session and registration on every shard: an
// RG.PYEXECUTE sent to any shard registers on all of them and replies once every shard has applied it
// (src/commands.c, Command_Register: a ShardIDReader execution that upgrades the registration context on
// each shard, whose done-callback sends the reply). The RG.* session commands (RG.PYEXECUTE,
// RG.PYDUMPSESSIONS, RG.DUMPREGISTRATIONS, RG.UNREGISTER) have no key (plugins/python/redisgears_python.c
// registers them with first key 0), so a go-redis ClusterClient sends each to whichever node it picks:
// the node of the hash of their first argument while its COMMAND table is cold, a random master once it
// is warm. RG.TRIGGERONKEY is registered with its key at position 2 (src/readers/command_reader.c).
//
// gears sends everything that reads or writes a session's state to one node: the master of the slot of
// the session's registration lock key (LockKey, one slot for all sessions thanks to its {gears} hash
// tag). Under the lock, the check, the RG.PYEXECUTE and the check after it then see one node's state, in
// order. On a healthy cluster any node would answer the same once RG.PYEXECUTE has replied; pinning
// matters when the nodes disagree — a shard that restarted without persistence and came back without the
// session must not make a process decide to create it again (that node would answer "missing" to a
// process, and the RG.PYEXECUTE it then sent would fail on every other shard, where the session
// exists). Assumed where the real server's behaviour is not documented: a cluster's nodes can disagree
// only after such a restart, and the lock's node is as good a reference as any.

// masterForKeyer is implemented by *redis.ClusterClient (and so by a redis.UniversalClient built with
// several addresses): it gives the client of the master that owns a key's slot.
type masterForKeyer interface {
	MasterForKey(ctx context.Context, key string) (*redis.Client, error)
}

// isCluster reports whether rdb routes commands over a Redis Cluster.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(masterForKeyer)
	return ok
}

// nodeOf returns a Client on the master of key's slot when c sends through a cluster client, and c
// itself otherwise.
func nodeOf(ctx context.Context, c *Client, key string) (*Client, error) {
	mk, ok := c.Redis().(masterForKeyer)
	if !ok {
		return c, nil
	}
	node, err := mk.MasterForKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("finding the cluster node of %s: %w", key, err)
	}
	return NewClient(node), nil
}

// home returns the Client through which the deployer reads and writes its session's state: on a
// cluster, the master of the registration lock's slot (see above); otherwise the deployer's client.
// It is looked up on every use, so that a new slot map (a failover) is followed.
func (r *deployer) home(ctx context.Context) (*Client, error) {
	return nodeOf(ctx, r.client, r.lock.key)
}

// anyNodeKey is a key of a random slot, to pick a random master with nodeOf (spreading RunAsync's
// executions over the cluster as a ClusterClient spreads keyless commands).
func anyNodeKey() string { return strconv.FormatUint(rand.Uint64(), 36) }

// doKeyed sends a command whose first key is its argument number pos (RG.TRIGGERONKEY: 2). go-redis
// would learn the key position from the server's COMMAND table, but only after its first command: set
// here, a cluster client routes even the first call to the key's shard, with no MOVED round trip.
func doKeyed(ctx context.Context, rdb redis.UniversalClient, pos int8, args []any) (any, error) {
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(pos)
	_ = rdb.Process(ctx, cmd)
	return cmd.Result()
}
