package gearstest_test

// Id counters moved by internal ShardIDReader plans (src/commands.c: RG.CLEARREGISTRATIONSSTATS,
// RG.PAUSEREGISTRATIONS and the apply of a registration each create one plan and run it once), and, in a
// cluster, by ids received from another shard (src/common.c SetId: a given id sets the counter to
// MAX(id + 1, counter)). Relative values only, so that they hold on a shared server too. Then more of
// a cluster's registrations (spec_cluster_test.go has the first ones): concurrent ones, StreamReader
// pausing, requirements.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// idNum returns the counter part of a registration or execution id ("<40 hex>-<n>").
func idNum(t testing.TB, id string) int64 {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	require.Equal(t, 40, i, "id %q", id)
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	require.NoError(t, err, "id %q", id)
	return n
}

// RG.CLEARREGISTRATIONSSTATS and RG.PAUSEREGISTRATIONS (even when the registration cannot be paused) take
// one registration id and one execution id each.
func TestInternalPlansTakeIDs(t *testing.T) {
	c := newTarget(t).newClient(t, 2)
	reg := func() int64 {
		return idNum(t, c.registerScript(uniq(t, "s"), fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t")))).regs[0])
	}
	run := func() int64 {
		id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING").(string)
		c.do("RG.GETRESULTSBLOCKING", id)
		c.expectOK("RG.DROPEXECUTION", id)
		return idNum(t, id)
	}
	first := reg()
	require.Equal(t, first+3, reg(), "a registering RG.PYEXECUTE takes three ids")
	second := first + 3
	c.expectOK("RG.CLEARREGISTRATIONSSTATS")
	third := reg()
	require.Equal(t, second+4, third, "RG.CLEARREGISTRATIONSSTATS took one")
	c.expectErr("Reader CommandReader does not support pause", "RG.PAUSEREGISTRATIONS", fmt.Sprintf("%s-%d", strings.Repeat("0", 40), third))
	require.Equal(t, third+4, reg(), "RG.PAUSEREGISTRATIONS took one")

	e := run()
	require.Equal(t, e+1, run())
	c.expectOK("RG.CLEARREGISTRATIONSSTATS")
	require.Equal(t, e+3, run(), "RG.CLEARREGISTRATIONSSTATS took an execution id")
}

// In a cluster a shard's counters move past the ids it received: after a registration made by node 0,
// node 1's next registration id is above node 0's internal apply plan, and back.
func TestClusterIDCountersFollowReceivedIDs(t *testing.T) {
	tg := newClusterTarget(t)
	reg := func(node int) int64 {
		c := tg.node(t, node, 2)
		return idNum(t, c.registerScript(uniq(t, "s"), fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t")))).regs[0])
	}
	n0 := reg(0)
	n1 := reg(1)
	require.GreaterOrEqual(t, n1, n0+3, "node 1 saw node 0's apply plan (%d)", n0+1)
	require.Equal(t, n1+3, reg(0), "node 0 saw node 1's apply plan (%d)", n1+1)
	if tg.cl != nil { // fresh counters
		require.Equal(t, []int64{1, 4}, []int64{n0, n1})
	}
}

// Registrations of different sessions sent to every node at once (safe on a real server: K1 is about
// one session id) all end up on every shard with the same ids.
func TestClusterConcurrentRegistrations(t *testing.T) {
	tg := newClusterTarget(t)
	const perNode = 4
	n := len(tg.addrs) * perNode
	sids, trigs := make([]string, n), make([]string, n)
	clients := make([]*client, n)
	for i := range sids {
		sids[i], trigs[i] = uniq(t, fmt.Sprintf("s%d", i)), uniq(t, fmt.Sprintf("t%d", i))
		clients[i] = tg.node(t, i%len(tg.addrs), 2)
		clients[i].cleanupSession(sids[i])
	}
	errs := make([]error, n)
	parallelDo(n, func(i int) {
		script := fmt.Sprintf("GB('CommandReader').map(lambda x: %s).register(trigger=%s, mode='sync')", pyQuote(sids[i]), pyQuote(trigs[i]))
		errs[i] = clients[i].Do(testCtx(t), "RG.PYEXECUTE", script, "ID", sids[i]).Err()
	})
	for i, err := range errs {
		require.NoError(t, err, "session %d", i)
	}
	ids := tg.myIDs(t)
	for i := range sids {
		regs := tg.node(t, 0, 2).sessionRegs(sids[i])
		require.Len(t, regs, 1)
		require.Regexp(t, "^"+ids[i%len(tg.addrs)]+"-", regs[0])
		for node := range tg.addrs {
			c := tg.node(t, node, 2)
			require.Equal(t, regs, c.sessionRegs(sids[i]), "session %d on node %d", i, node)
			c.expect(L(sids[i]), "RG.TRIGGER", trigs[i])
		}
	}
}

// A StreamReader registration reads the streams of each shard on that shard; RG.PAUSEREGISTRATIONS and
// RG.UNPAUSEREGISTRATIONS sent to one node pause and unpause it on every shard.
func TestClusterStreamReaderPauseEverywhere(t *testing.T) {
	tg := newClusterTarget(t)
	ctx := testCtx(t)
	p := uniq(t, "st")
	ss := tg.node(t, 0, 2).registerScript(uniq(t, "s"), fmt.Sprintf(
		"GB('StreamReader').foreach(lambda r: execute('SET', '{%%s}:seen' %% r['key'], r['id'])).register(prefix=%s, trimStream=False)",
		pyQuote(p+":*")))
	cc := tg.clusterClient(t, 2)
	perNode := make([]int, len(tg.addrs))
	for k := 0; k < 12; k++ {
		key := fmt.Sprintf("%s:%d", p, k)
		perNode[tg.owner(t, key)]++
		require.NoError(t, cc.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: "1-1", Values: []any{"f", "v"}}).Err())
		waitFor(t, 30*time.Second, "the entry of "+key+" read on its shard", func() bool { return cc.Get(ctx, "{"+key+"}:seen").Val() == "1-1" })
		require.NoError(t, cc.Del(ctx, key, "{"+key+"}:seen").Err())
	}
	for i, n := range perNode {
		require.NotZero(t, n, "node %d owns none of the streams", i)
	}
	status := func(node int) any {
		return field(t, tg.node(t, node, 2).registration(ss.regs[0])[7].([]any), "status")
	}
	tg.node(t, 1, 2).expectOK("RG.PAUSEREGISTRATIONS", ss.regs[0])
	for i := range tg.addrs {
		require.Equal(t, "PAUSED", status(i), "node %d", i)
	}
	tg.node(t, 2, 2).expectOK("RG.UNPAUSEREGISTRATIONS", ss.regs[0])
	for i := range tg.addrs {
		require.Equal(t, "OK", status(i), "node %d", i)
	}
}

// A session with REQUIREMENTS sent to one node has them on every shard: the functions import them
// there and RG.PYDUMPREQS lists them on each node.
func TestClusterRequirementsOnEveryShard(t *testing.T) {
	tg := newClusterTarget(t)
	sid, trig := uniq(t, "s"), uniq(t, "t")
	tg.node(t, 2, 2).registerScript(sid, fmt.Sprintf(
		"import requests\nGB('CommandReader').map(lambda x: requests.__name__).register(trigger=%s, mode='sync')", pyQuote(trig)),
		"REQUIREMENTS", "requests")
	for i := range tg.addrs {
		c := tg.node(t, i, 2)
		c.expect(L("requests"), "RG.TRIGGER", trig)
		require.Equal(t, L("requests"), field(t, c.sessionEntry(sid), "requirements"), "node %d", i)
		found := false
		for _, e := range c.do("RG.PYDUMPREQS").([]any) {
			if r := e.([]any); len(r) > 3 && r[3] == "requests" {
				found = true
			}
		}
		require.True(t, found, "requests not in RG.PYDUMPREQS of node %d", i)
	}
}
