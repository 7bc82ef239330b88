package gears_test

// The library's Redis Cluster tests run on gearstest.RunCluster(t, 3), or against a real Redis Cluster of
// RedisGears 1.2.13 masters when GEARS_CLUSTER_ADDRS=host:port,… is set (three masters made by
// redis-cli --cluster create, as gearstest/spec_cluster_test.go expects). On a real cluster the tests use
// names of their own and unregister what they registered.

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

// clEnv is one test's cluster: its nodes in slot order and their slot ranges.
type clEnv struct {
	t      testing.TB
	ctx    context.Context
	addrs  []string   // node addresses, in slot order
	ranges [][2]int64 // the slots of each node, first..last
	log    *cgLog     // every shard's log (gearstest only)
	prefix string     // starts every trigger, session and key the test creates
}

// newClusterEnv starts a 3-shard gearstest cluster for t, or points at GEARS_CLUSTER_ADDRS.
func newClusterEnv(t testing.TB) *clEnv {
	t.Helper()
	e := &clEnv{t: t, ctx: context.Background(), prefix: "gt" + randomHex(4) + "_"}
	first := ""
	if env := os.Getenv("GEARS_CLUSTER_ADDRS"); env != "" {
		first = strings.Split(env, ",")[0]
	} else {
		e.log = &cgLog{t: t}
		t.Cleanup(e.log.stop)
		cl := gearstest.RunCluster(t, 3, gearstest.WithLogger(e.log))
		first = cl.Addrs()[0]
	}
	c := redis.NewClient(&redis.Options{Addr: first})
	defer c.Close()
	slots, err := c.ClusterSlots(e.ctx).Result()
	require.NoError(t, err)
	for _, s := range slots {
		e.addrs = append(e.addrs, s.Nodes[0].Addr)
		e.ranges = append(e.ranges, [2]int64{int64(s.Start), int64(s.End)})
	}
	require.Len(t, e.addrs, 3, "a cluster of three masters")
	t.Cleanup(e.unregisterOwn)
	return e
}

// name returns a unique trigger, session or key name for this test.
func (e *clEnv) name(s string) string { return e.prefix + s }

// clusterClient is a go-redis ClusterClient on the cluster; hook, when not nil, sees every command each
// node is sent (node level: the commands a ClusterClient routes and those sent to one node directly).
func (e *clEnv) clusterClient(proto int, hook *nodeHook) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: e.addrs, Protocol: proto, ReadTimeout: time.Minute,
		PoolSize: 128})
	if hook != nil {
		cc.OnNewNode(func(c *redis.Client) { c.AddHook(hook.on(c.Options().Addr)) })
	}
	e.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// node is a plain client on node i: no redirection is followed.
func (e *clEnv) node(i, proto int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.addrs[i], Protocol: proto, ReadTimeout: time.Minute})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// slot is CLUSTER KEYSLOT of key.
func (e *clEnv) slot(key string) int64 {
	e.t.Helper()
	n, err := e.node(0, 2).ClusterKeySlot(e.ctx, key).Result()
	require.NoError(e.t, err)
	return n
}

// owner is the index of the node that owns key.
func (e *clEnv) owner(key string) int {
	e.t.Helper()
	s := e.slot(key)
	for i, r := range e.ranges {
		if s >= r[0] && s <= r[1] {
			return i
		}
	}
	e.t.Fatalf("no node owns slot %d", s)
	return -1
}

// unregisterOwn unregisters every registration of the test, on every node (RG.UNREGISTER applies to all
// shards; a registration a shard holds alone is found there).
func (e *clEnv) unregisterOwn() {
	ctx := context.Background()
	for i := range e.addrs {
		c := redis.NewClient(&redis.Options{Addr: e.addrs[i]})
		g := gears.NewClient(c)
		if sessions, err := g.PyDumpSessions(ctx, nil); err == nil {
			for _, s := range sessions {
				if strings.HasPrefix(s.ID, "gears_"+e.prefix) || strings.HasPrefix(s.ID, e.prefix) {
					for _, id := range s.RegistrationIDs {
						_ = g.Unregister(ctx, id, true)
					}
				}
			}
		}
		_ = c.Close()
	}
}

// registrations returns, for every node, the ids of the CommandReader registrations of trigger.
func (e *clEnv) registrations(trigger string) [][]string {
	e.t.Helper()
	out := make([][]string, len(e.addrs))
	for i := range e.addrs {
		regs, err := gears.NewClient(e.node(i, 2)).DumpRegistrations(e.ctx)
		require.NoError(e.t, err)
		for _, r := range regs {
			if r.Data.Args.Trigger == trigger {
				out[i] = append(out[i], r.ID)
			}
		}
	}
	return out
}

// session reads session id on node i.
func (e *clEnv) session(i int, id string) gears.SessionInfo {
	e.t.Helper()
	ss, err := gears.NewClient(e.node(i, 2)).PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{id}})
	require.NoError(e.t, err)
	require.Len(e.t, ss, 1)
	return ss[0]
}

// nodeOfSlot is the index of the node whose range holds the slot of hashtag tag (what hashtag() returns
// on a shard: a tag of one of its slots).
func (e *clEnv) nodeOfTag(tag string) int {
	e.t.Helper()
	return e.owner("{" + tag + "}")
}

var markerRE = regexp.MustCompile(`^gears:[0-9a-f]{32}$`)

// nodeHook counts the commands each node is sent, by node address and command name.
type nodeHook struct {
	mu sync.Mutex
	n  map[string]map[string]int
}

func (h *nodeHook) on(addr string) redis.Hook { return nodeHookOf{h: h, addr: addr} }

// at is how many name commands node addr was sent.
func (h *nodeHook) at(addr, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[addr][name]
}

// total is how many name commands all nodes were sent.
func (h *nodeHook) total(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.n {
		n += m[name]
	}
	return n
}

// nodes lists the nodes that were sent name commands.
func (h *nodeHook) nodes(name string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for addr, m := range h.n {
		if m[name] > 0 {
			out = append(out, addr)
		}
	}
	return out
}

type nodeHookOf struct {
	h    *nodeHook
	addr string
}

func (k nodeHookOf) DialHook(next redis.DialHook) redis.DialHook { return next }
func (k nodeHookOf) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			k.count(cmd)
		}
		return next(ctx, cmds)
	}
}
func (k nodeHookOf) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		k.count(cmd)
		return next(ctx, cmd)
	}
}

func (k nodeHookOf) count(cmd redis.Cmder) {
	k.h.mu.Lock()
	defer k.h.mu.Unlock()
	if k.h.n == nil {
		k.h.n = map[string]map[string]int{}
	}
	if k.h.n[k.addr] == nil {
		k.h.n[k.addr] = map[string]int{}
	}
	k.h.n[k.addr][strings.ToUpper(cmd.Name())]++
}

// String names the env's nodes, for messages.
func (e *clEnv) String() string { return fmt.Sprint(e.addrs) }
