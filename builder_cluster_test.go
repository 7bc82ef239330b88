package gears_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// The Builder's runs through a ClusterClient: run() in async mode reads every shard and gathers the
// records on the node that ran it; RunAsync's handle reads the results from that node.
func TestClusterBuilderRun(t *testing.T) {
	e := newClusterEnv(t)
	hook := &nodeHook{}
	cc := e.clusterClient(3, hook)
	var ids []any
	for i := range e.addrs {
		id, err := e.node(i, 2).ClusterMyID(e.ctx).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	sortAny := func(v []any) []any {
		out := append([]any(nil), v...)
		sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
		return out
	}

	res, err := gears.ShardsIDReader().Run(e.ctx, cc)
	require.NoError(t, err)
	assert.Empty(t, res.Errors)
	assert.Equal(t, sortAny(ids), sortAny(res.Records), "one record per shard: its id")

	// Keys on every shard, read by one run.
	var want []any
	for i := 0; i < 12; i++ {
		key := e.name(fmt.Sprintf("k%d", i))
		require.NoError(t, cc.Set(e.ctx, key, i, 0).Err())
		t.Cleanup(func() { _ = cc.Del(e.ctx, key).Err() })
		want = append(want, key)
	}
	res, err = gears.KeysReader(e.prefix+"*").Map("lambda r: r['key']").Run(e.ctx, cc)
	require.NoError(t, err)
	assert.Empty(t, res.Errors)
	assert.Equal(t, sortAny(want), sortAny(res.Records))

	for n := 0; n < 6; n++ { // on random nodes: each handle asks the node that ran it
		x, err := gears.ShardsIDReader().RunAsync(e.ctx, cc)
		require.NoError(t, err)
		res, err = x.Wait(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, sortAny(ids), sortAny(res.Records), "run %d", n)
	}
	assert.Equal(t, hook.total("RG.PYEXECUTE"), 8)
	for _, addr := range hook.nodes("RG.GETRESULTSBLOCKING") {
		assert.NotZero(t, hook.at(addr, "RG.PYEXECUTE"), "results read from %s, which ran no execution", addr)
	}
}
