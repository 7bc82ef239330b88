package gearstest_test

// Conformance tests of cluster mode: they run on gearstest.RunCluster(t, 3), or against a real Redis
// Cluster with RedisGears 1.2.13 when GEARS_CLUSTER_ADDRS=host:port,… is set (3 masters made by
// redis-cli --cluster create).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// clusterTarget is the cluster under test: its node addresses, in slot order.
type clusterTarget struct {
	addrs []string
	cl    *gearstest.Cluster // nil on a real cluster
}

// newClusterTarget starts (or points at) a 3-shard cluster for t.
func newClusterTarget(t *testing.T) *clusterTarget {
	t.Helper()
	if env := os.Getenv("GEARS_CLUSTER_ADDRS"); env != "" {
		tg := &clusterTarget{}
		// Order the nodes by slot, as gearstest's Addrs are.
		slots, err := redis.NewClient(&redis.Options{Addr: strings.Split(env, ",")[0]}).ClusterSlots(context.Background()).Result()
		require.NoError(t, err)
		for _, s := range slots {
			tg.addrs = append(tg.addrs, s.Nodes[0].Addr)
		}
		return tg
	}
	cl := gearstest.RunCluster(t, 3)
	return &clusterTarget{addrs: cl.Addrs(), cl: cl}
}

// clusterClient is a go-redis ClusterClient on the cluster, closed by t.Cleanup.
func (tg *clusterTarget) clusterClient(t testing.TB, proto int) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: tg.addrs, Protocol: proto, ReadTimeout: time.Minute})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// node is a plain client on node i (no redirection followed).
func (tg *clusterTarget) node(t testing.TB, i, proto int) *client {
	return (&target{addr: tg.addrs[i]}).newClient(t, proto)
}

// owner returns the index of the node that owns key, from CLUSTER KEYSLOT and CLUSTER SLOTS.
func (tg *clusterTarget) owner(t testing.TB, key string) int {
	c := tg.node(t, 0, 2)
	slot := c.do("CLUSTER", "KEYSLOT", key).(int64)
	for i, r := range c.do("CLUSTER", "SLOTS").([]any) {
		rr := r.([]any)
		if slot >= rr[0].(int64) && slot <= rr[1].(int64) {
			return i
		}
	}
	t.Fatalf("no node owns slot %d", slot)
	return -1
}

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func TestClusterSlotsShape(t *testing.T) {
	tg := newClusterTarget(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			for i, addr := range tg.addrs {
				c := tg.node(t, i, proto)
				slots := c.do("CLUSTER", "SLOTS").([]any)
				require.Len(t, slots, 3)
				next := int64(0)
				ids := map[string]bool{}
				for j, r := range slots {
					rr := r.([]any)
					require.Len(t, rr, 3, "range %d: first, last and one master", j)
					require.Equal(t, next, rr[0], "range %d starts where the previous ended", j)
					next = rr[1].(int64) + 1
					nodeEntry := rr[2].([]any)
					require.Len(t, nodeEntry, 4, "ip, port, id, endpoints")
					require.Equal(t, tg.addrs[j], nodeEntry[0].(string)+":"+strconv.FormatInt(nodeEntry[1].(int64), 10))
					require.Regexp(t, hex40, nodeEntry[2])
					ids[nodeEntry[2].(string)] = true
					if nodeEntry[0] == strings.Split(addr, ":")[0] && j == i {
						require.Equal(t, nodeEntry[2], c.do("CLUSTER", "MYID"), "MYID of %s", addr)
					}
				}
				require.Equal(t, int64(16384), next)
				require.Len(t, ids, 3)
				if tg.cl != nil { // redis-cli --cluster create's split
					require.Equal(t, []any{int64(0), int64(5460), int64(5461), int64(10922), int64(10923), int64(16383)},
						[]any{slots[0].([]any)[0], slots[0].([]any)[1], slots[1].([]any)[0], slots[1].([]any)[1],
							slots[2].([]any)[0], slots[2].([]any)[1]})
				}
				info := c.do("CLUSTER", "INFO").(string)
				require.Contains(t, info, "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")
				require.Contains(t, info, "\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n")
				myid := c.do("CLUSTER", "MYID").(string)
				require.Regexp(t, "(?m)^"+myid+" "+regexp.QuoteMeta(addr)+"@[0-9]+ myself,master - ", c.do("CLUSTER", "NODES"))
				shards := c.do("CLUSTER", "SHARDS").([]any)
				require.Len(t, shards, 3)
				require.Equal(t, int64(12182), c.do("CLUSTER", "KEYSLOT", "foo"))
				require.Equal(t, int64(12182), c.do("CLUSTER", "KEYSLOT", "x{foo}y"))
				c.expectErr("ERR unknown subcommand 'NOPE'. Try CLUSTER HELP.", "CLUSTER", "NOPE")
				c.expectOK("READONLY")
				c.expectOK("READWRITE")
			}
		})
	}
}

func TestClusterGoRedisAcrossSlots(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	tag := uniq(t, "cl")
	for _, proto := range protocols {
		cc := tg.clusterClient(t, proto)
		perNode := make([]int, 3)
		for i := 0; i < 60; i++ {
			key := fmt.Sprintf("%s:%d:%d", tag, proto, i)
			require.NoError(t, cc.Set(ctx, key, i, 0).Err())
			perNode[tg.owner(t, key)]++
		}
		for i := 0; i < 60; i++ {
			key := fmt.Sprintf("%s:%d:%d", tag, proto, i)
			require.Equal(t, strconv.Itoa(i), cc.Get(ctx, key).Val())
		}
		for i, n := range perNode {
			require.NotZero(t, n, "node %d owns none of the keys", i)
		}
	}
	// Each key lives on its owner only; the other nodes redirect.
	key := tag + ":2:7"
	own := tg.owner(t, key)
	slot := tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", key).(int64)
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		if i == own {
			c.expect("7", "GET", key)
			continue
		}
		c.expectErr(fmt.Sprintf("MOVED %d %s", slot, tg.addrs[own]), "GET", key)
	}
	require.NoError(t, tg.clusterClient(t, 3).Del(ctx, key).Err())
}

func TestClusterCrossSlot(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	tag := uniq(t, "xs")
	cc := tg.clusterClient(t, 3)
	// go-redis routes by the first key; the node refuses keys of two slots.
	a, b := tag+":a", tag+":b"
	require.NotEqual(t, tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", a), tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", b))
	require.EqualError(t, cc.MSet(ctx, a, 1, b, 2).Err(), "CROSSSLOT Keys in request don't hash to the same slot")
	// One slot, two keys: fine, on their owner.
	ha, hb := "{"+tag+"}a", "{"+tag+"}b"
	require.NoError(t, cc.MSet(ctx, ha, 1, hb, 2).Err())
	require.Equal(t, []any{"1", "2"}, cc.MGet(ctx, ha, hb).Val())
	require.NoError(t, cc.Del(ctx, ha, hb).Err())

	// In MULTI: a foreign key is refused at once and EXEC aborts.
	own := tg.owner(t, a)
	other := (own + 1) % 3
	conn := tg.node(t, other, 2).conn(t)
	slot := tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", a).(int64)
	var errs []string
	res, _ := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "MULTI")
		p.Do(ctx, "SET", a, "1")
		p.Do(ctx, "EXEC")
		return nil
	})
	for _, r := range res {
		if r.Err() != nil {
			errs = append(errs, r.Err().Error())
		} else {
			errs = append(errs, "ok")
		}
	}
	require.Equal(t, []string{"ok", fmt.Sprintf("MOVED %d %s", slot, tg.addrs[own]),
		"EXECABORT Transaction discarded because of previous errors."}, errs)
}

func TestClusterRedisCLIFollowsMoved(t *testing.T) {
	tg := newClusterTarget(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed")
	}
	key := uniq(t, "cli")
	own := tg.owner(t, key)
	other := (own + 1) % 3
	cli := func(node int, args ...string) string {
		host, port, _ := strings.Cut(tg.addrs[node], ":")
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}
	slot := tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", key).(int64)
	require.Equal(t, fmt.Sprintf("MOVED %d %s", slot, tg.addrs[own]), cli(other, "SET", key, "v1"))
	require.Equal(t, "OK", cli(other, "-c", "SET", key, "v1"))
	require.Equal(t, "v1", cli((other+1)%3, "-c", "GET", key))
	require.Equal(t, "v1", cli(own, "GET", key))
	require.Equal(t, "1", cli(other, "-c", "DEL", key))
}

func TestClusterInfoCluster(t *testing.T) {
	tg := newClusterTarget(t)
	for _, proto := range protocols {
		for i, addr := range tg.addrs {
			c := tg.node(t, i, proto)
			slots := c.do("CLUSTER", "SLOTS").([]any)
			c.expectOK("RG.REFRESHCLUSTER")
			info := c.do("RG.INFOCLUSTER").([]any)
			require.Len(t, info, 5)
			require.Equal(t, []any{"MyId", c.do("CLUSTER", "MYID"), "MyRunId"}, info[:3])
			require.Regexp(t, hex40, info[3])
			nodes := info[4].([]any)
			require.Len(t, nodes, 3)
			seen := map[string]bool{}
			for _, n := range nodes {
				nn := n.([]any)
				require.Len(t, nn, 16)
				require.Equal(t, []any{"id", "ip", "port", "unixSocket", "runid", "minHslot", "maxHslot", "pendingMessages"},
					[]any{nn[0], nn[2], nn[4], nn[6], nn[8], nn[10], nn[12], nn[14]})
				j := -1
				for k, a := range tg.addrs {
					if a == nn[3].(string)+":"+strconv.FormatInt(nn[5].(int64), 10) {
						j = k
					}
				}
				require.GreaterOrEqual(t, j, 0, "node %v is not one of %v", nn, tg.addrs)
				seen[tg.addrs[j]] = true
				rng := slots[j].([]any)
				require.Equal(t, []any{rng[2].([]any)[2], "None", rng[0], rng[1]}, []any{nn[1], nn[7], nn[11], nn[13]})
				if j == i {
					require.Equal(t, info[3], nn[9], "my run id on %s", addr)
				}
			}
			require.Len(t, seen, 3)
		}
	}
}

// hashtag() on each shard is a tag of the first slot the shard owns.
func TestClusterHashtagPerShard(t *testing.T) {
	tg := newClusterTarget(t)
	tag := uniq(t, "ht")
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		c.expectOK("RG.PYEXECUTE", "execute('SET', '{%s}"+tag+"' % hashtag(), hashtag())")
		keys := c.do("KEYS", "*"+tag).([]any)
		require.Len(t, keys, 1, "node %d", i)
		ht := c.do("GET", keys[0]).(string)
		require.Equal(t, "{"+ht+"}"+tag, keys[0])
		first := c.do("CLUSTER", "SLOTS").([]any)[i].([]any)[0]
		require.Equal(t, first, c.do("CLUSTER", "KEYSLOT", ht), "hashtag() %q on node %d", ht, i)
		if i == 0 {
			require.Equal(t, "06S", ht) // slot 0's tag, as stand-alone
		}
		c.expect(int64(1), "DEL", keys[0])
	}
}

// myIDs returns CLUSTER MYID of every node, in slot order.
func (tg *clusterTarget) myIDs(t testing.TB) []string {
	ids := make([]string, len(tg.addrs))
	for i := range tg.addrs {
		ids[i] = tg.node(t, i, 2).do("CLUSTER", "MYID").(string)
	}
	return ids
}

// hashtags returns what hashtag() answers on every node, in slot order, through a sync trigger that
// runs where it is called.
func (tg *clusterTarget) hashtags(t testing.TB) []string {
	trig := uniq(t, "ht")
	c := tg.node(t, 0, 2)
	c.registerScript(uniq(t, "hts"), fmt.Sprintf("GB('CommandReader').map(lambda x: hashtag()).register(trigger=%s, mode='sync')", pyQuote(trig)))
	tags := make([]string, len(tg.addrs))
	for i := range tg.addrs {
		tags[i] = tg.node(t, i, 2).do("RG.TRIGGER", trig).([]any)[0].(string)
	}
	return tags
}

// A registration sent to any node is applied on every shard with the same ids, made by the node that
// ran the script ("<its node id>-<n>"); the session is on every shard; each shard runs it locally.
func TestClusterRegistrationOnEveryShard(t *testing.T) {
	tg := newClusterTarget(t)
	ids := tg.myIDs(t)
	tags := tg.hashtags(t)
	for origin := range tg.addrs {
		sid, trig := uniq(t, "s"), uniq(t, "t")
		script := fmt.Sprintf("GB('CommandReader').map(lambda x: ' '.join([hashtag()] + x[1:])).register(trigger=%s, mode='sync')\n"+
			"GB('CommandReader').register(trigger=%s, mode='async_local')", pyQuote(trig), pyQuote(trig+"_2"))
		ss := tg.node(t, origin, 2).registerScript(sid, script, "DESCRIPTION", "everywhere")
		require.Len(t, ss.regs, 2)
		for _, id := range ss.regs {
			require.Regexp(t, "^"+ids[origin]+"-[0-9]+$", id, "made by node %d", origin)
		}
		for i := range tg.addrs {
			c := tg.node(t, i, 2)
			require.Equal(t, ss.regs, c.sessionRegs(sid), "session %s on node %d", sid, i)
			require.Equal(t, "everywhere", field(t, c.sessionEntry(sid), "sessionDescription"))
			for _, id := range ss.regs {
				require.NotNil(t, c.registration(id), "registration %s on node %d", id, i)
			}
			c.expect(L(tags[i]+" a"), "RG.TRIGGER", trig, "a")
			c.expect(L("['"+trig+"_2']"), "RG.TRIGGER", trig+"_2")
			// Each shard keeps its own statistics.
			entry := c.registration(ss.regs[0])
			require.Equal(t, int64(1), field(t, entry[7].([]any), "numTriggered"), "node %d", i)
		}
	}
}

// UPGRADE through another node replaces the session on every shard; RG.UNREGISTER through a third
// removes it everywhere (the other shards get it by a cluster message on a real cluster: polled).
func TestClusterUpgradeAndUnregister(t *testing.T) {
	tg := newClusterTarget(t)
	ids := tg.myIDs(t)
	sid, trig := uniq(t, "s"), uniq(t, "t")
	script := func(v string) string {
		return fmt.Sprintf("GB('CommandReader').map(lambda x: %s).register(trigger=%s, mode='sync')", pyQuote(v), pyQuote(trig))
	}
	first := tg.node(t, 0, 2).registerScript(sid, script("v1"))
	tg.node(t, 2, 2).expectOK("RG.PYEXECUTE", script("v2"), "ID", sid, "UPGRADE")
	upgraded := tg.node(t, 2, 2).sessionRegs(sid)
	require.Len(t, upgraded, 1)
	require.Regexp(t, "^"+ids[2]+"-[0-9]+$", upgraded[0])
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		require.Equal(t, upgraded, c.sessionRegs(sid), "node %d", i)
		require.Nil(t, c.registration(first.regs[0]), "the old registration on node %d", i)
		c.expect(L("v2"), "RG.TRIGGER", trig)
	}
	// REPLACE_WITH through node 1: the new session replaces the old one everywhere.
	sid2 := uniq(t, "s2")
	tg.node(t, 1, 2).expectOK("RG.PYEXECUTE", script("v3"), "ID", sid2, "REPLACE_WITH", sid)
	tg.node(t, 1, 2).cleanupSession(sid2)
	replaced := tg.node(t, 1, 2).sessionRegs(sid2)
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		require.Nil(t, c.sessionEntry(sid), "node %d", i)
		require.Equal(t, replaced, c.sessionRegs(sid2), "node %d", i)
		c.expect(L("v3"), "RG.TRIGGER", trig)
	}
	// RG.UNREGISTER through node 0.
	tg.node(t, 0, 2).expectOK("RG.UNREGISTER", replaced[0])
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		waitFor(t, 10*time.Second, fmt.Sprintf("the registration gone from node %d", i), func() bool {
			return c.registration(replaced[0]) == nil
		})
		require.Nil(t, c.sessionEntry(sid2), "node %d", i)
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)
	}
	tg.node(t, 1, 2).expectErr("execution is not registered", "RG.UNREGISTER", replaced[0])
}

// RG.TRIGGERONKEY on a node that does not own the key's slot is redirected with MOVED (its key is
// argument 2 in COMMAND); a ClusterClient follows it to the owner, where the trigger runs. RG.TRIGGER
// (no key) runs where it is sent.
func TestClusterTriggerOnKeyMoved(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	tags := tg.hashtags(t)
	trig := uniq(t, "t")
	tg.node(t, 0, 2).registerScript(uniq(t, "s"),
		fmt.Sprintf("GB('CommandReader').map(lambda x: ' '.join([hashtag()] + x[1:])).register(trigger=%s, mode='async_local')", pyQuote(trig)))
	cmd := tg.node(t, 0, 2).do("COMMAND", "INFO", "RG.TRIGGERONKEY").([]any)[0].([]any)
	require.Equal(t, []any{int64(2), int64(2), int64(1)}, cmd[3:6], "first key, last key, step")
	for _, proto := range protocols {
		cc := tg.clusterClient(t, proto)
		for k := 0; k < 12; k++ {
			key := fmt.Sprintf("%s:%d", uniq(t, "k"), k)
			own := tg.owner(t, key)
			slot := tg.node(t, 0, 2).do("CLUSTER", "KEYSLOT", key).(int64)
			for i := range tg.addrs {
				c := tg.node(t, i, proto)
				if i == own {
					c.expect(L(tags[own]+" "+key+" arg"), "RG.TRIGGERONKEY", trig, key, "arg")
					continue
				}
				c.expectErr(fmt.Sprintf("MOVED %d %s", slot, tg.addrs[own]), "RG.TRIGGERONKEY", trig, key, "arg")
				c.expect(L(tags[i]+" a"), "RG.TRIGGER", trig, "a")
			}
			v, err := cc.Do(ctx, "RG.TRIGGERONKEY", trig, key, "arg").Result()
			require.NoError(t, err)
			require.Equal(t, []any{tags[own] + " " + key + " arg"}, canon(v), "key %s through a ClusterClient", key)
		}
	}
	// redis-cli -c follows the MOVED too.
	if _, err := exec.LookPath("redis-cli"); err == nil {
		key := uniq(t, "cli")
		other := (tg.owner(t, key) + 1) % len(tg.addrs)
		host, port, _ := strings.Cut(tg.addrs[other], ":")
		out, err := exec.Command("redis-cli", "-c", "-h", host, "-p", port, "RG.TRIGGERONKEY", trig, key, "arg").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, tags[tg.owner(t, key)]+" "+key+" arg", strings.TrimSpace(string(out)))
	}
}

// A KeysReader registration sent to one node fires on each shard for the keys that shard owns.
func TestClusterKeysReaderPerShard(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	tags := tg.hashtags(t)
	prefix := uniq(t, "kr")
	tg.node(t, 1, 2).registerScript(uniq(t, "s"), fmt.Sprintf(
		"GB('KeysReader').foreach(lambda x: execute('SET', '{%%s}:seen' %% x['key'], hashtag())).register(prefix=%s, eventTypes=['set'], mode='sync')",
		pyQuote(prefix+":*")))
	cc := tg.clusterClient(t, 3)
	perNode := make([]int, len(tg.addrs))
	for k := 0; k < 30; k++ {
		key := fmt.Sprintf("%s:%d", prefix, k)
		require.NoError(t, cc.Set(ctx, key, k, 0).Err())
		own := tg.owner(t, key)
		perNode[own]++
		require.Equal(t, tags[own], cc.Get(ctx, "{"+key+"}:seen").Val(), "key %s", key)
		require.NoError(t, cc.Del(ctx, key, "{"+key+"}:seen").Err())
	}
	for i, n := range perNode {
		require.NotZero(t, n, "node %d owns none of the keys", i)
	}
}

// RG.CLEARREGISTRATIONSSTATS and RG.PAUSEREGISTRATIONS run on every shard (a ShardIDReader execution):
// the statistics are cleared everywhere; a registration unknown everywhere is reported with the id of
// one of the shards.
func TestClusterRegistrationCommandsOnEveryShard(t *testing.T) {
	tg := newClusterTarget(t)
	ids := tg.myIDs(t)
	trig := uniq(t, "t")
	ss := tg.node(t, 0, 2).registerScript(uniq(t, "s"), fmt.Sprintf("GB('CommandReader').register(trigger=%s, mode='sync')", pyQuote(trig)))
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		c.expect(L("['"+trig+"']"), "RG.TRIGGER", trig)
		require.Equal(t, int64(1), field(t, c.registration(ss.regs[0])[7].([]any), "numTriggered"), "node %d", i)
	}
	tg.node(t, 1, 2).expectOK("RG.CLEARREGISTRATIONSSTATS")
	for i := range tg.addrs {
		require.Equal(t, int64(0), field(t, tg.node(t, i, 2).registration(ss.regs[0])[7].([]any), "numTriggered"), "node %d", i)
	}
	c := tg.node(t, 2, 2)
	c.expectErr("Reader CommandReader does not support pause", "RG.PAUSEREGISTRATIONS", ss.regs[0])
	c.expectErr("Reader CommandReader does not support unpause", "RG.UNPAUSEREGISTRATIONS", ss.regs[0])
	missing := ids[0] + "-999999999"
	text := c.doErr("RG.PAUSEREGISTRATIONS", missing)
	require.Regexp(t, "^Execution "+missing+" does not exists on shard ("+strings.Join(ids, "|")+")$", text)
}

// Distributed executions (issue 10): run() in its default mode 'async' and RG.TRIGGER of an async
// registration run on every shard; the records move at collect()/repartition() boundaries
// (src/execution_plan.c, v1.2.13). Records come from the shards in no defined order: the tests
// compare them as sets.

// clusterKeys writes n keys "<prefix>:<i>" = value(i) through a ClusterClient and returns the keys
// each node owns; every node owns at least one.
func (tg *clusterTarget) clusterKeys(t *testing.T, prefix string, n int, value func(i int) string) [][]string {
	t.Helper()
	cc := tg.clusterClient(t, 2)
	ctx := testCtx(t)
	per := make([][]string, len(tg.addrs))
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("%s:%d", prefix, i)
		require.NoError(t, cc.Set(ctx, key, value(i), 0).Err())
		o := tg.owner(t, key)
		per[o] = append(per[o], key)
	}
	for i, keys := range per {
		require.NotEmpty(t, keys, "node %d owns none of the keys", i)
	}
	t.Cleanup(func() {
		for _, keys := range per {
			for _, k := range keys {
				_ = cc.Del(context.Background(), k).Err()
			}
		}
	})
	return per
}

// runRecords runs RG.PYEXECUTE script on c and returns its records as a sorted list of strings,
// requiring no errors.
func runRecords(c *client, script string) []string {
	c.t.Helper()
	res := c.do("RG.PYEXECUTE", script).([]any)
	require.Len(c.t, res, 2)
	require.Equal(c.t, []any{}, res[1], "errors of %s", script)
	return sortedStrings(c.t, res[0].([]any))
}

func sortedStrings(t testing.TB, recs []any) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		s, ok := r.(string)
		require.True(t, ok, "record %#v is not a string", r)
		out[i] = s
	}
	sort.Strings(out)
	return out
}

func flat(per [][]string) []string {
	var out []string
	for _, k := range per {
		out = append(out, k...)
	}
	sort.Strings(out)
	return out
}

// run() of a KeysReader reads every shard's keys and gathers them at the shard that ran it;
// async_local reads the local shard only; collect=False keeps each shard's records where they are,
// so the reply has the initiator's own (ExecutionPlan_CollectNextRecord is the only step that moves
// records to the initiator).
func TestClusterRunKeysReaderGathers(t *testing.T) {
	tg := newClusterTarget(t)
	prefix := uniq(t, "k")
	per := tg.clusterKeys(t, prefix, 30, strconv.Itoa)
	all := flat(per)
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		run := "GB().map(lambda r: r['key']).run('" + prefix + ":*'%s)"
		require.Equal(t, all, runRecords(c, fmt.Sprintf(run, "")), "node %d", i)
		local := append([]string(nil), per[i]...)
		sort.Strings(local)
		require.Equal(t, local, runRecords(c, fmt.Sprintf(run, ", mode='async_local'")), "node %d async_local", i)
		require.Equal(t, local, runRecords(c, fmt.Sprintf(run, ", collect=False")), "node %d collect=False", i)
		// KeysOnlyReader: a PythonReader over SCAN on each shard.
		require.Equal(t, all, runRecords(c, "GB('KeysOnlyReader').run('"+prefix+":*')"), "node %d KeysOnlyReader", i)
	}
}

// ShardsIDReader gives one record per shard, its node id; async_local only the local one.
func TestClusterShardsIDReader(t *testing.T) {
	tg := newClusterTarget(t)
	var ids []string
	for i := range tg.addrs {
		ids = append(ids, tg.node(t, i, 2).do("CLUSTER", "MYID").(string))
	}
	sort.Strings(ids)
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		require.Equal(t, ids, runRecords(c, "GB('ShardsIDReader').run()"), "node %d", i)
		require.Equal(t, []string{c.do("CLUSTER", "MYID").(string)},
			runRecords(c, "GB('ShardsIDReader').run(mode='async_local')"), "node %d async_local", i)
		c.expect(L(L("3"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run()")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run(mode='async_local')")
		// limit() before collect() runs on every shard, after it on the gathered records.
		c.expect(L(L("3"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').limit(1).count().run()")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').collect().limit(1).count().run()")
		// hashtag() answers the shard each part runs on: one tag of each shard's first slot.
		var firsts, got []int64
		for _, r := range c.do("CLUSTER", "SLOTS").([]any) {
			firsts = append(firsts, r.([]any)[0].(int64))
		}
		for _, tag := range runRecords(c, "GB('ShardsIDReader').map(lambda r: hashtag()).run()") {
			got = append(got, c.do("CLUSTER", "KEYSLOT", tag).(int64))
		}
		sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
		require.Equal(t, firsts, got, "node %d: slots of the hashtags", i)
	}
}

// RG.TRIGGER of an async registration runs on every shard, each with the record [trigger, args…],
// and gathers (spec 3.4: count() answers the shard count); async_local and sync run where called.
func TestClusterTriggerFanOut(t *testing.T) {
	tg := newClusterTarget(t)
	c := tg.node(t, 0, 2)
	count := c.regTrigger(".count()", "")
	countLocal := c.regTrigger(".count()", "mode='async_local'")
	countSync := c.regTrigger(".count()", "mode='sync'")
	args := c.regTrigger(".map(lambda r: '|'.join(r[1:]))", "")
	tags := c.regTrigger(".map(lambda r: hashtag())", "")
	localTags := c.regTrigger(".map(lambda r: hashtag())", "mode='async_local'")
	var firsts []int64
	for _, r := range c.do("CLUSTER", "SLOTS").([]any) {
		firsts = append(firsts, r.([]any)[0].(int64))
	}
	// RG.PYEXECUTE replied once every shard applied the registrations: each answers the same from
	// wherever it is called.
	for i := range tg.addrs {
		n := tg.node(t, i, 2)
		n.expect(L("3"), "RG.TRIGGER", count)
		n.expect(L("1"), "RG.TRIGGER", countLocal)
		n.expect(L("1"), "RG.TRIGGER", countSync)
		n.expect(L("a|b", "a|b", "a|b"), "RG.TRIGGER", args, "a", "b")
		// Each shard's part answers its own hashtag().
		var got []int64
		for _, tag := range sortedStrings(t, n.do("RG.TRIGGER", tags).([]any)) {
			got = append(got, n.do("CLUSTER", "KEYSLOT", tag).(int64))
		}
		sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
		require.Equal(t, firsts, got, "node %d", i)
		local := n.do("RG.TRIGGER", localTags).([]any)
		require.Len(t, local, 1)
		require.Equal(t, firsts[i], n.do("CLUSTER", "KEYSLOT", local[0]), "node %d: async_local hashtag()", i)
	}
}

// execute() runs on the shard the step runs on: a command whose keys are not all in that shard's
// slots fails with 'Operation not permitted' (RM_Call's EPERM on a cluster node), as cache_get's GET
// did on a real cluster (issue 10); keyless commands and local keys run.
func TestClusterExecuteForeignKey(t *testing.T) {
	tg := newClusterTarget(t)
	c := tg.node(t, 0, 2)
	prefix := uniq(t, "k")
	per := tg.clusterKeys(t, prefix, 12, func(i int) string { return "v" + strconv.Itoa(i) })
	local, foreign := per[0][0], per[1][0]
	get := c.regTrigger(".map(lambda r: execute('GET', r[1]))", "mode='async_local'")
	c.expect(L("v"+strings.TrimPrefix(local, prefix+":")), "RG.TRIGGER", get, local)
	c.expectTriggerErr(tracebackErr("gears.error: Operation not permitted"), "RG.TRIGGER", get, foreign)
	// Two keys of different slots, even both local: CROSSSLOT is EPERM too.
	if len(per[0]) > 1 {
		mget := c.regTrigger(".map(lambda r: str(execute('MGET', r[1], r[2])))", "mode='async_local'")
		c.expectTriggerErr(tracebackErr("gears.error: Operation not permitted"), "RG.TRIGGER", mget, per[0][0], per[0][1])
	}
	// The same in a sync execution and at a script's top level (both on the main thread).
	getSync := c.regTrigger(".map(lambda r: execute('GET', r[1]))", "mode='sync'")
	c.expectTriggerErr(tracebackErr("gears.error: Operation not permitted"), "RG.TRIGGER", getSync, foreign)
	c.expectTriggerErr(tracebackErr("gears.error: Operation not permitted"), "RG.PYEXECUTE", "execute('GET', "+pyQuote(foreign)+")")
	ping := c.regTrigger(".map(lambda r: execute('PING'))", "mode='async_local'")
	c.expect(L("PONG"), "RG.TRIGGER", ping)
	// In a run() the readers read what each shard has, and each part's execute() reaches its shard:
	// every shard writes a key of its own hashtag.
	mark := uniq(t, "m")
	c.expect(L(L("3"), L()), "RG.PYEXECUTE",
		"GB('ShardsIDReader').foreach(lambda r: execute('SET', '{%s}"+mark+"' % hashtag(), r)).count().run()")
	cc := tg.clusterClient(t, 2)
	for i := range tg.addrs {
		n := tg.node(t, i, 2)
		keys := n.do("KEYS", "*"+mark).([]any)
		require.Len(t, keys, 1, "node %d", i)
		require.Equal(t, n.do("CLUSTER", "MYID"), n.do("GET", keys[0]))
		require.NoError(t, cc.Del(testCtx(t), keys[0].(string)).Err())
	}
}

// Aggregations across shards: count, countby, aggregate, avg, groupby, batchgroupby and
// repartition give the results of the whole cluster's data.
func TestClusterAggregations(t *testing.T) {
	tg := newClusterTarget(t)
	prefix := uniq(t, "k")
	const n = 30
	per := tg.clusterKeys(t, prefix, n, func(i int) string { return strconv.Itoa(i % 3) })
	_ = per
	pat := "'" + prefix + ":*'"
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		c.expect(L(L("30"), L()), "RG.PYEXECUTE", "GB().count().run("+pat+")")
		c.expect(L(L("30"), L()), "RG.PYEXECUTE", "GB().map(lambda r: int(r['value'])).aggregate(0, lambda a, r: a + r, lambda a, r: a + r).run("+pat+")")
		c.expect(L(L("1.0"), L()), "RG.PYEXECUTE", "GB().avg(lambda r: int(r['value'])).run("+pat+")")
		want := []string{"{'key': '0', 'value': 10}", "{'key': '1', 'value': 10}", "{'key': '2', 'value': 10}"}
		require.Equal(t, want, runRecords(c, "GB().countby(lambda r: r['value']).run("+pat+")"), "countby on node %d", i)
		require.Equal(t, want, runRecords(c, "GB().groupby(lambda r: r['value'], lambda k, a, r: (a or 0) + 1).run("+pat+")"), "groupby on node %d", i)
		require.Equal(t, want, runRecords(c, "GB().batchgroupby(lambda r: r['value'], lambda k, l: len(l)).run("+pat+")"), "batchgroupby on node %d", i)
		require.Equal(t, []string{"0", "1", "2"}, runRecords(c, "GB().map(lambda r: r['value']).distinct().run("+pat+")"))
		// accumulate() alone is local: one partial count per shard, gathered by run()'s collect().
		var total int
		partial := runRecords(c, "GB().accumulate(lambda a, r: (a or 0) + 1).run("+pat+")")
		require.Len(t, partial, 3, "node %d: %v", i, partial)
		for j, p := range partial {
			v, err := strconv.Atoi(p)
			require.NoError(t, err)
			require.Positive(t, v, "shard %d's count", j)
			total += v
		}
		require.Equal(t, n, total)
		// sort() gathers every shard's list before it sorts: the order is the whole cluster's.
		sorted := L()
		for _, v := range []string{"0", "1", "2"} {
			for j := 0; j < n/3; j++ {
				sorted = append(sorted, v)
			}
		}
		c.expect(L(sorted, L()), "RG.PYEXECUTE", "GB().map(lambda r: int(r['value'])).sort().run("+pat+")")
		// repartition(f) moves each record to the shard that owns f(r): there execute() may write
		// the key; without it, the records of other shards' keys fail with EPERM.
		dst := uniq(t, "d")
		c.expect(L(L("30"), L()), "RG.PYEXECUTE", "GB().map(lambda r: r['key']).repartition(lambda k: '"+dst+"' + k)"+
			".foreach(lambda k: execute('SET', '"+dst+"' + k, 'x')).count().run("+pat+")")
		res := c.do("RG.PYEXECUTE", "GB().map(lambda r: r['key']).foreach(lambda k: execute('SET', '"+dst+"' + k, 'x')).run("+pat+")").([]any)
		require.NotEmpty(t, res[1], "the writes of other shards' keys fail")
		for _, e := range res[1].([]any) {
			c.match(tracebackErr("gears.error: Operation not permitted"), e, "error")
		}
		cc := tg.clusterClient(t, 2)
		for j := 0; j < n; j++ {
			k := fmt.Sprintf("%s%s:%d", dst, prefix, j)
			require.Equal(t, "x", cc.Get(testCtx(t), k).Val(), "key %s", k)
			require.NoError(t, cc.Del(testCtx(t), k).Err())
		}
	}
}

// The readers of a distributed run() read each shard's own data, the way the C readers open keys
// (keys_reader.c KeysReader_Next with noScan: a key the shard lacks is an 'empty' record;
// streams_reader.c: the XREAD of a shard that does not own the stream gives no reply, so no
// records and no error).
func TestClusterReadersOnEveryShard(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	cc := tg.clusterClient(t, 2)
	key, stream := uniq(t, "k"), uniq(t, "s")
	require.NoError(t, cc.Set(ctx, key, "v", 0).Err())
	require.NoError(t, cc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"f", "v1"}}).Err())
	require.NoError(t, cc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"f", "v2"}}).Err())
	t.Cleanup(func() { _ = cc.Del(context.Background(), key).Err(); _ = cc.Del(context.Background(), stream).Err() })
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		require.Equal(t, []string{"empty", "empty", "string"},
			runRecords(c, "GB().map(lambda r: r['type']).run('"+key+"', noScan=True)"), "node %d", i)
		require.Equal(t, []string{"v1", "v2"},
			runRecords(c, "GB('StreamReader').map(lambda r: r['value']['f']).run('"+stream+"')"), "node %d", i)
	}
}

// RG.NETWORKTEST, which crashes a stand-alone RedisGears (hazard C1), replies OK on a cluster's nodes.
func TestClusterNetworkTest(t *testing.T) {
	tg := newClusterTarget(t)
	for i := range tg.addrs {
		tg.node(t, i, 2).expectOK("RG.NETWORKTEST")
	}
}

// A run() started on a shard has an id of that shard (<its node id>-<n>); RG.GETEXECUTION … SHARD
// names the shard, and the results gather every shard's records.
func TestClusterRunExecutionID(t *testing.T) {
	tg := newClusterTarget(t)
	var ids []string
	for i := range tg.addrs {
		ids = append(ids, tg.node(t, i, 2).do("CLUSTER", "MYID").(string))
	}
	want := append([]string(nil), ids...)
	sort.Strings(want)
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING").(string)
		require.Regexp(t, "^"+ids[i]+"-[0-9]+$", id, "node %d", i)
		res := c.do("RG.GETRESULTSBLOCKING", id).([]any)
		require.Equal(t, want, sortedStrings(t, res[0].([]any)))
		entry := c.do("RG.GETEXECUTION", id, "SHARD").([]any)
		require.Len(t, entry, 1)
		require.Equal(t, []any{"shard_id", ids[i], "execution_plan"}, entry[0].([]any)[:3])
		c.expectOK("RG.DROPEXECUTION", id)
	}
}

// An async KeysReader registration's key event runs on every shard (keys_reader.c runs it in its
// mode, and an async execution is distributed): the shard that owns the key reads it, the others
// read it with noScan and find nothing ('empty'); async_local runs on the owner only.
func TestClusterAsyncKeyEventOnEveryShard(t *testing.T) {
	tg := newClusterTarget(t)
	c := tg.node(t, 0, 2)
	cc := tg.clusterClient(t, 2)
	ctx := testCtx(t)
	for _, mode := range []string{"async", "async_local"} {
		prefix, log := uniq(t, "p"), uniq(t, "log")
		c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('RPUSH', '{%%s}%s' %% hashtag(), "+
			"r['type'] + ':' + r['key'])).register(prefix='%s*', mode='%s', eventTypes=['set'])", log, prefix, mode))
		key := prefix + ":x"
		require.NoError(t, cc.Set(ctx, key, "v", 0).Err())
		own := tg.owner(t, key)
		for i := range tg.addrs {
			n := tg.node(t, i, 2)
			want := L()
			if i == own {
				want = L("string:" + key)
			} else if mode == "async" {
				want = L("empty:" + key)
			}
			var lkey string
			if len(want) > 0 {
				waitFor(t, time.Minute, fmt.Sprintf("%s: node %d's part", mode, i), func() bool {
					keys := n.do("KEYS", "*"+log).([]any)
					if len(keys) == 1 {
						lkey = keys[0].(string)
					}
					return lkey != ""
				})
				n.expect(want, "LRANGE", lkey, 0, -1)
				t.Cleanup(func() { _ = cc.Del(context.Background(), lkey).Err() })
			}
		}
		if mode == "async_local" {
			// The owner's part has run: no other shard ran one.
			for i := range tg.addrs {
				if i != own {
					tg.node(t, i, 2).expect(L(), "KEYS", "*"+log)
				}
			}
		}
		require.NoError(t, cc.Del(ctx, key).Err())
	}
}
