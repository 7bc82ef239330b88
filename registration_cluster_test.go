package gears_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// keySlot is Redis Cluster's slot of key: CRC16 (XMODEM) of the key or of its first non-empty {tag}.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// The nodes of a cluster can disagree about a session: here two of three lost it (restarted without
// persistence), while the node of the registration lock's slot holds this code. A ClusterClient would send
// the keyless RG.PYDUMPSESSIONS to some other node (by the slot of its first argument while its COMMAND
// table is cold, as here, or at random); gears reads and writes the session on the lock's node, so it
// finds its code and sends no RG.PYEXECUTE that the other shards would refuse.
func TestClusterSessionStateIsReadOnTheLockNode(t *testing.T) {
	require.Equal(t, 12182, keySlot("foo"))
	require.Equal(t, 12182, keySlot("x{foo}y"))
	trig := "counted"
	lock := keySlot(gears.LockKey("gears_" + trig))
	require.NotEqual(t, lock, keySlot("SESSIONS"), "the test needs RG.PYDUMPSESSIONS routed elsewhere by default")
	require.True(t, lock > 0 && lock < 16383)

	// Three fake RedisGears nodes: home owns the lock's slot alone, the others the slots on either side.
	home, low, high := startFake12(t), startFake12(t), startFake12(t)
	nodes := []*fake12{home, low, high}
	port := func(f *fake12) int64 {
		p, _ := strconv.Atoi(f.addr[strings.LastIndexByte(f.addr, ':')+1:])
		return int64(p)
	}
	slots := []any{
		[]any{int64(0), int64(lock - 1), []any{"127.0.0.1", port(low), "low"}},
		[]any{int64(lock), int64(lock), []any{"127.0.0.1", port(home), "home"}},
		[]any{int64(lock + 1), int64(16383), []any{"127.0.0.1", port(high), "high"}},
	}
	for _, f := range nodes {
		f.reply("CLUSTER", slots)
		f.reply("RG.TRIGGER", []any{"called"}) // every shard answers the trigger
	}

	// The session was registered (on every shard, once); then low and high lost it.
	one := redis.NewClient(&redis.Options{Addr: home.addr})
	defer one.Close()
	_, err := gears.Command[string](trig, one, versionedScript("v1"))(context.Background(), "x")
	require.NoError(t, err)
	require.Len(t, home.received("RG.PYEXECUTE"), 1)

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{low.addr}, ReadTimeout: time.Minute})
	defer cc.Close()
	got, err := gears.Command[string](trig, cc, versionedScript("v1"))(context.Background(), "y")
	require.NoError(t, err)
	assert.Equal(t, "called", got)
	assert.Len(t, home.received("RG.PYEXECUTE"), 1, "no second registration")
	assert.Len(t, home.received("RG.PYDUMPSESSIONS"), 3, "the first Func's two checks, then this one's, on the lock's node")
	for _, f := range []*fake12{low, high} {
		assert.Empty(t, f.received("RG.PYEXECUTE"))
		assert.Empty(t, f.received("RG.PYDUMPSESSIONS"))
	}
}
