package gears_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// whereScript answers hashtag(): a tag of a slot of the shard the function runs on.
var whereScript = gears.Script{Function: "where", Source: "def where(*args):\n    return hashtag()\n"}

// Every registration lock hashes to one slot, whatever the session: the lock of a session is one key on
// one node, and so is the node gears reads and writes session state through.
func TestClusterLockKeysShareOneSlot(t *testing.T) {
	e := newClusterEnv(t)
	want := e.slot("{gears}")
	for _, sid := range []string{"gears_cache_get", "a", "Z-9_", "gears_" + e.prefix + "x"} {
		assert.Equal(t, "{gears}:reglock:"+sid, gears.LockKey(sid))
		assert.Equal(t, want, e.slot(gears.LockKey(sid)), "slot of %s", gears.LockKey(sid))
	}
}

// A Command registered through a ClusterClient: one RG.PYEXECUTE, sent with every session check to the
// node of the registration lock; the session and its registration on every shard; an async_local call
// runs on the shard it is sent to.
func TestClusterCommandRegistersOnceForEveryShard(t *testing.T) {
	e := newClusterEnv(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			hook := &nodeHook{}
			cc := e.clusterClient(proto, hook)
			trig := e.name("where" + strconv.Itoa(proto))
			sid := "gears_" + trig
			home := e.addrs[e.owner(gears.LockKey(sid))]

			call := gears.Command[string](trig, cc, whereScript, gears.WithMode(gears.AsyncLocal))
			tag, err := call(e.ctx)
			require.NoError(t, err)
			require.NotEmpty(t, tag)

			assert.Equal(t, 1, hook.total("RG.PYEXECUTE"), "one registration for the whole cluster")
			assert.Equal(t, []string{home}, hook.nodes("RG.PYEXECUTE"), "sent to the registration lock's node")
			assert.Equal(t, []string{home}, hook.nodes("RG.PYDUMPSESSIONS"), "the session is read where it is written")
			assert.Equal(t, 2, hook.total("RG.PYDUMPSESSIONS"), "one check before the lock, one under it")
			n, err := cc.Exists(e.ctx, gears.LockKey(sid)).Result()
			require.NoError(t, err)
			assert.Zero(t, n, "the registration lock is released")

			// Every shard holds the session and the one registration, with the same id, and answers the
			// trigger where it is called: async_local runs on the shard called.
			regs := e.registrations(trig)
			require.Len(t, regs[0], 1, "node 0: %v", regs)
			desc := e.session(0, sid).Description
			assert.Regexp(t, markerRE, desc)
			for i := range e.addrs {
				assert.Equal(t, regs[0], regs[i], "node %d holds the same registration", i)
				s := e.session(i, sid)
				assert.Equal(t, desc, s.Description, "node %d", i)
				assert.Equal(t, regs[0], s.RegistrationIDs, "node %d", i)
				reply, err := e.node(i, proto).Do(e.ctx, "RG.TRIGGER", trig).Result()
				require.NoError(t, err, "node %d", i)
				require.Len(t, reply, 1)
				assert.Equal(t, i, e.nodeOfTag(reply.([]any)[0].(string)), "node %d ran the call itself", i)
			}

			// Another process with the same code, through a UniversalClient made with the nodes'
			// addresses, finds it and sends nothing.
			uc := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: e.addrs, Protocol: proto})
			t.Cleanup(func() { _ = uc.Close() })
			require.IsType(t, &redis.ClusterClient{}, uc)
			uc.(*redis.ClusterClient).OnNewNode(func(c *redis.Client) { c.AddHook(hook.on(c.Options().Addr)) })
			again := gears.Command[string](trig, uc, whereScript, gears.WithMode(gears.AsyncLocal))
			_, err = again(e.ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, hook.total("RG.PYEXECUTE"))
			assert.Equal(t, []string{home}, hook.nodes("RG.PYDUMPSESSIONS"))
		})
	}
}

// WithKeyRouting on a cluster: RG.TRIGGERONKEY goes to the shard that owns the key (the first call too,
// without a MOVED detour), which runs the async_local function and writes the key locally.
func TestClusterKeyRoutedCommandRunsOnTheKeysShard(t *testing.T) {
	e := newClusterEnv(t)
	hook := &nodeHook{}
	cc := e.clusterClient(3, hook)
	trig := e.name("put")
	put := gears.Command[string](trig, cc, gears.Script{Function: "put",
		Source: "def put(key, value):\n    execute('SET', key, value)\n    return hashtag()\n"},
		gears.WithKeyRouting(), gears.WithMode(gears.AsyncLocal))
	perNode := make([]int, len(e.addrs))
	for i := 0; i < 30; i++ {
		key := e.name("k" + strconv.Itoa(i))
		own := e.owner(key)
		before, total := hook.at(e.addrs[own], "RG.TRIGGERONKEY"), hook.total("RG.TRIGGERONKEY")
		tag, err := put(e.ctx, key, "v"+strconv.Itoa(i))
		require.NoError(t, err, "key %s", key)
		assert.Equal(t, own, e.nodeOfTag(tag), "key %s ran on the shard that owns it", key)
		assert.Equal(t, before+1, hook.at(e.addrs[own], "RG.TRIGGERONKEY"), "key %s", key)
		assert.Equal(t, total+1, hook.total("RG.TRIGGERONKEY"), "key %s: sent once, to its owner", key)
		v, err := e.node(own, 2).Get(e.ctx, key).Result()
		require.NoError(t, err)
		assert.Equal(t, "v"+strconv.Itoa(i), v)
		require.NoError(t, cc.Del(e.ctx, key).Err())
		perNode[own]++
	}
	for i, n := range perNode {
		assert.NotZero(t, n, "node %d owns none of the keys", i)
	}
}

// Deploy, Plan, Undeploy and the Builder's Register through a ClusterClient act once, on every shard.
func TestClusterDeployPlanUndeploy(t *testing.T) {
	e := newClusterEnv(t)
	hook := &nodeHook{}
	cc := e.clusterClient(2, hook)
	trig := e.name("deployed")
	s := gears.Session{ID: e.name("session"), Source: fmt.Sprintf(
		"GB('CommandReader').map(lambda x: hashtag()).register(trigger=%q, mode='async_local')\n", trig)}

	act, err := gears.Plan(e.ctx, cc, s)
	require.NoError(t, err)
	assert.Equal(t, gears.Created, act)
	d, err := gears.Deploy(e.ctx, cc, s)
	require.NoError(t, err)
	assert.Equal(t, gears.Created, d.Action)
	require.Len(t, d.RegistrationIDs, 1)
	for i := range e.addrs {
		assert.Equal(t, d.RegistrationIDs, e.session(i, s.ID).RegistrationIDs, "node %d", i)
	}
	act, err = gears.Plan(e.ctx, cc, s)
	require.NoError(t, err)
	assert.Equal(t, gears.Unchanged, act)
	d2, err := gears.Deploy(e.ctx, cc, s)
	require.NoError(t, err)
	assert.Equal(t, gears.Deployment{Action: gears.Unchanged, RegistrationIDs: d.RegistrationIDs}, d2)
	assert.Equal(t, 1, hook.total("RG.PYEXECUTE"))

	// The Builder registers through Deploy: an upgrade of the same session, once.
	b, err := gears.CommandReader().Map("lambda x: 'built'").Register(e.ctx, cc, gears.WithSessionID(s.ID),
		gears.WithTrigger(trig), gears.WithMode(gears.AsyncLocal))
	require.NoError(t, err)
	assert.Equal(t, gears.Upgraded, b.Action)
	assert.Equal(t, 2, hook.total("RG.PYEXECUTE"))
	for i := range e.addrs {
		reply, err := e.node(i, 2).Do(e.ctx, "RG.TRIGGER", trig).Result()
		require.NoError(t, err, "node %d", i)
		assert.Equal(t, []any{"built"}, reply, "node %d", i)
	}

	ids, err := gears.Undeploy(e.ctx, cc, s.ID)
	require.NoError(t, err)
	assert.Len(t, ids, 1)
	for i := range e.addrs {
		assert.True(t, e.session(i, s.ID).Missing, "node %d", i)
		assert.Empty(t, e.registrations(trig)[i], "node %d", i)
	}
	// Every session command of the four went to the lock's node.
	home := e.addrs[e.owner(gears.LockKey(s.ID))]
	for _, name := range []string{"RG.PYEXECUTE", "RG.PYDUMPSESSIONS", "RG.UNREGISTER"} {
		assert.Equal(t, []string{home}, hook.nodes(name), name)
	}
}

// TestClusterExactlyOnceAcrossProcesses: 12 OS processes, each with its own ClusterClient, call the same
// Command at once on a 3-shard cluster: one RG.PYEXECUTE in all, one registration on every shard; then
// 12 processes of a new version upgrade it once.
func TestClusterExactlyOnceAcrossProcesses(t *testing.T) {
	e := newClusterEnv(t)
	addrs := strings.Join(e.addrs, ",")
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			trig := e.name("once" + strconv.Itoa(proto))
			sid := "gears_" + trig
			for _, v := range []string{"v1", "v2"} {
				replies, pyExecutes := runHelpers(t, addrs, proto, trig, repeat(v, helperN))
				for i, r := range replies {
					assert.Equal(t, fmt.Sprintf("%s:%d", v, i), r, "process %d", i)
				}
				assert.Equal(t, 1, pyExecutes, "%s: one process registered for the whole cluster", v)
				regs := e.registrations(trig)
				require.Len(t, regs[0], 1, "%s: one registration: %v", v, regs)
				for i := range e.addrs {
					assert.Equal(t, regs[0], regs[i], "%s: node %d", v, i)
					assert.Regexp(t, `^gears:[0-9a-f]{32}/`+v+`$`, e.session(i, sid).Description, "node %d", i)
				}
			}
		})
	}
}

// RG.TRIGGERONKEY is routed by its key from a ClusterClient's very first command, before go-redis has
// read the server's COMMAND table (which it would otherwise route by the trigger's name).
func TestClusterTriggerOnKeyFirstCommand(t *testing.T) {
	e := newClusterEnv(t)
	trig := e.name("first")
	_, err := gears.Deploy(e.ctx, e.clusterClient(2, nil), gears.Session{ID: e.name("s"), Source: fmt.Sprintf(
		"GB('CommandReader').map(lambda x: hashtag()).register(trigger=%q, mode='async_local')\n", trig)})
	require.NoError(t, err)
	key := ""
	for i := 0; key == ""; i++ {
		if k := e.name("k" + strconv.Itoa(i)); e.owner(k) != e.owner(trig) {
			key = k
		}
	}
	for _, send := range []func(cc *redis.ClusterClient) ([]any, error){
		func(cc *redis.ClusterClient) ([]any, error) {
			return gears.NewClient(cc).TriggerOnKey(e.ctx, trig, key)
		},
		func(cc *redis.ClusterClient) ([]any, error) {
			p := gears.NewClient(cc).Pipeline()
			cmd := p.TriggerOnKey(e.ctx, trig, key)
			if err := p.Exec(e.ctx); err != nil {
				return nil, err
			}
			return cmd.Result()
		},
		func(cc *redis.ClusterClient) ([]any, error) {
			tag, err := gears.Command[string](trig, cc, whereScript, gears.WithKeyRouting(),
				gears.WithMode(gears.AsyncLocal), gears.WithOnConflict(gears.Keep), gears.WithSessionID(e.name("s")))(e.ctx, key)
			return []any{tag}, err
		},
	} {
		hook := &nodeHook{}
		cc := e.clusterClient(3, hook)
		reply, err := send(cc)
		require.NoError(t, err)
		require.Len(t, reply, 1)
		assert.Equal(t, e.owner(key), e.nodeOfTag(reply[0].(string)))
		assert.Equal(t, []string{e.addrs[e.owner(key)]}, hook.nodes("RG.TRIGGERONKEY"), "no MOVED detour")
		assert.Equal(t, 1, hook.total("RG.TRIGGERONKEY"))
	}
}

// A Command in RedisGears' default mode, async, runs on every shard of a cluster: a slice gets one record
// per shard ([]any), and a single T is refused with an error that names the mode to use instead.
func TestClusterAsyncCommandRunsOnEveryShard(t *testing.T) {
	e := newClusterEnv(t)
	cc := e.clusterClient(3, &nodeHook{})
	trig := e.name("everywhere")
	all := gears.Command[[]any](trig, cc, whereScript)
	tags, err := all(e.ctx)
	require.NoError(t, err)
	require.Len(t, tags, len(e.addrs), "one record per shard: %v", tags)
	seen := map[int]bool{}
	for _, tag := range tags {
		seen[e.nodeOfTag(tag.(string))] = true
	}
	assert.Len(t, seen, len(e.addrs), "every shard ran it once: %v", tags)

	one := gears.Command[string](trig, cc, whereScript)
	_, err = one(e.ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("expected one result record, got %d (a function in mode async on a Redis Cluster", len(e.addrs)))
	assert.Contains(t, err.Error(), "WithMode(AsyncLocal)")
}
