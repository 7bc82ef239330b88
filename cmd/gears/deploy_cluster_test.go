package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

// gears deploy --cluster, given any one node of a 3-shard cluster, registers each file once for the whole
// cluster: every shard holds the session and answers its trigger; a second deploy changes nothing.
func TestDeployCluster(t *testing.T) {
	cl := gearstest.RunCluster(t, 3)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a1"))

	// A node that does not own the registration lock's slot: without --cluster the lock's SET is
	// refused with MOVED; with it, the ClusterClient follows the slot map.
	node0 := redis.NewClient(&redis.Options{Addr: cl.Addrs()[0]})
	t.Cleanup(func() { _ = node0.Close() })
	slot, err := node0.ClusterKeySlot(context.Background(), gears.LockKey("c-a")).Result()
	require.NoError(t, err)
	slots, err := node0.ClusterSlots(context.Background()).Result()
	require.NoError(t, err)
	foreign := ""
	for _, r := range slots {
		if int64(r.Start) > slot || int64(r.End) < slot {
			foreign = r.Nodes[0].Addr
		}
	}
	r := runCLI(t, "", "deploy", dir, "--addr", foreign, "--prefix", "c-")
	require.Equal(t, 1, r.code, r.stdout)
	assert.Contains(t, r.stderr, "MOVED")

	r = runCLI(t, "", "deploy", dir, "--cluster", "--addr", foreign, "--prefix", "c-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created   c-a (a.py) 1 registration\n"+
		"1 file(s): 1 created, 0 upgraded, 0 unchanged, 0 failed\n", r.stdout)
	var ids []string
	for i, addr := range cl.Addrs() {
		rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: time.Minute})
		t.Cleanup(func() { _ = rdb.Close() })
		c := gears.NewClient(rdb)
		ss, err := c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{"c-a"}})
		require.NoError(t, err)
		require.Len(t, ss, 1)
		require.Len(t, ss[0].RegistrationIDs, 1, "node %d", i)
		if ids == nil {
			ids = ss[0].RegistrationIDs
		}
		assert.Equal(t, ids, ss[0].RegistrationIDs, "node %d holds the same registration", i)
		out, err := c.Trigger(context.Background(), "ta")
		require.NoError(t, err)
		assert.Equal(t, []any{"a1"}, out, "node %d", i)
	}

	r = runCLI(t, "", "deploy", dir, "--cluster", "--addr", cl.Addrs()[2], "--prefix", "c-")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "unchanged c-a (a.py)\n"+
		"1 file(s): 0 created, 0 upgraded, 1 unchanged, 0 failed\n", r.stdout)
}
