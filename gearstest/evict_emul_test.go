package gearstest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func infoInt(t *testing.T, rdb *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("INFO %s has no %s: %q", section, field, info)
	return 0
}

// evictedLogScript registers a sync KeysReader on evicted events that logs "<event>:<key>" in the
// list "evlog" (which has no TTL: the volatile policies never evict it).
const evictedLogScript = "GB().foreach(lambda r: execute('RPUSH', 'evlog', r['event'] + ':' + r['key'])).register(prefix='d:*', eventTypes=['evicted'], mode='sync')"

// TestEvictionFiresEvictedEvents: above maxmemory, a volatile-random server evicts keys with a TTL
// before each command; each eviction is an "evicted" event, and nothing else is evicted.
func TestEvictionFiresEvictedEvents(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", evictedLogScript, "ID", "ev").Val())
	require.NoError(t, rdb.Set(ctx, "keep", strings.Repeat("k", 100), 0).Err())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-random").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", "3000").Val())
	require.Equal(t, map[string]string{"maxmemory": "3000"}, rdb.ConfigGet(ctx, "maxmemory").Val())
	const n = 60
	for i := 0; i < n; i++ {
		require.NoError(t, rdb.Set(ctx, fmt.Sprintf("d:%d", i), strings.Repeat("v", 100), time.Hour).Err())
	}
	// Every command may evict (the events' RPUSHes grow evlog again): read the store directly.
	mini := srv.data.mini
	srv.data.mem.mu.Lock()
	evicted := srv.data.mem.evicted
	srv.data.mem.mu.Unlock()
	require.Positive(t, evicted)
	logged, err := mini.List("evlog")
	require.NoError(t, err)
	require.Len(t, logged, int(evicted), "one event per evicted key")
	for _, e := range logged {
		k, ok := strings.CutPrefix(e, "evicted:d:")
		require.True(t, ok, e)
		require.False(t, mini.Exists("d:"+k), "%s was evicted", e)
	}
	left := 0
	for _, k := range mini.Keys() {
		if strings.HasPrefix(k, "d:") {
			left++
		}
	}
	require.Equal(t, int64(n)-evicted, int64(left))
	require.True(t, mini.Exists("keep"), "a key without TTL is not volatile")
	require.LessOrEqual(t, srv.data.usedMemory(), int64(3000)+200)
	require.Equal(t, evicted+1, infoInt(t, rdb, "stats", "evicted_keys"), "INFO evicted one more key first")
	require.Equal(t, int64(3000), infoInt(t, rdb, "memory", "maxmemory"))
}

// TestVolatileTTLEvictsTheSoonestToExpire: volatile-ttl evicts the key with the nearest expiry.
func TestVolatileTTLEvictsTheSoonestToExpire(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.NoError(t, rdb.Set(ctx, "a", "1", 100*time.Second).Err())
	require.NoError(t, rdb.Set(ctx, "b", "1", 50*time.Second).Err())
	require.NoError(t, rdb.Set(ctx, "c", "1", 200*time.Second).Err())
	require.NoError(t, rdb.Set(ctx, "p", "1", 0).Err())
	used := infoInt(t, rdb, "memory", "used_memory")
	require.Equal(t, int64(4*(1+48+1+16)), used)
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-ttl").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used-1, 10)).Val())
	require.Equal(t, int64(3), rdb.Exists(ctx, "a", "c", "p").Val())
	require.Equal(t, int64(0), rdb.Exists(ctx, "b").Val())
	require.Equal(t, int64(1), infoInt(t, rdb, "stats", "evicted_keys"))
}

// TestNoevictionOOM: under noeviction, denyoom commands are refused above the limit with Redis'
// text; reads and deletes are not; a MULTI that queues one is aborted.
func TestNoevictionOOM(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.NoError(t, rdb.Set(ctx, "big", strings.Repeat("x", 500), 0).Err())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", "100").Val())
	require.Equal(t, map[string]string{"maxmemory-policy": "noeviction"}, rdb.ConfigGet(ctx, "maxmemory-policy").Val())
	require.EqualError(t, rdb.Set(ctx, "k", "v", 0).Err(), "OOM command not allowed when used memory > 'maxmemory'.")
	require.EqualError(t, rdb.LPush(ctx, "l", "v").Err(), "OOM command not allowed when used memory > 'maxmemory'.")
	require.Equal(t, 500, len(rdb.Get(ctx, "big").Val()))

	conn := dialRaw(t, srv.Addr())
	conn.send(t, respCmd("MULTI"))
	require.Equal(t, "+OK\r\n", conn.reply(t))
	conn.send(t, respCmd("GET", "big"))
	require.Equal(t, "-OOM command not allowed when used memory > 'maxmemory'.\r\n", conn.reply(t))
	conn.send(t, respCmd("EXEC"))
	require.Equal(t, "-EXECABORT Transaction discarded because of previous errors.\r\n", conn.reply(t))

	require.Equal(t, int64(1), rdb.Del(ctx, "big").Val())
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	require.Equal(t, int64(0), infoInt(t, rdb, "stats", "evicted_keys"))
}

// TestMaxmemoryConfigErrors: Redis' texts for bad values; the policies gearstest does not emulate
// are refused, saying so.
func TestMaxmemoryConfigErrors(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.EqualError(t, rdb.ConfigSet(ctx, "maxmemory-policy", "bogus").Err(),
		"ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")
	require.EqualError(t, rdb.ConfigSet(ctx, "maxmemory", "12x").Err(),
		"ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value")
	for _, p := range []string{"allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu"} {
		err := rdb.ConfigSet(ctx, "maxmemory-policy", p).Err()
		require.Error(t, err)
		require.Contains(t, err.Error(), "ERR gearstest: maxmemory-policy "+p+" is not emulated")
	}
	require.Equal(t, map[string]string{"maxmemory-policy": "noeviction"}, rdb.ConfigGet(ctx, "maxmemory-policy").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", "1kb").Val())
	require.Equal(t, map[string]string{"maxmemory": "1024"}, rdb.ConfigGet(ctx, "maxmemory").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", "1K").Val())
	require.Equal(t, map[string]string{"maxmemory": "1000"}, rdb.ConfigGet(ctx, "maxmemory").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory-policy", "ALLKEYS-RANDOM").Val())
	require.Equal(t, map[string]string{"maxmemory-policy": "allkeys-random"}, rdb.ConfigGet(ctx, "maxmemory-policy").Val())
}

// TestExternalRedisEvictedEvents: with WithRedis, the external Redis evicts by itself and its
// keyspace notifications bring the evicted events to the registrations.
func TestExternalRedisEvictedEvents(t *testing.T) {
	addr := startRedisServer(t)
	srv := Run(t, WithRedis("redis://"+addr))
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", evictedLogScript, "ID", "ev").Val())
	used := infoInt(t, rdb, "memory", "used_memory")
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-random").Val())
	require.Equal(t, "OK", rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+200_000, 10)).Val())
	val := strings.Repeat("v", 1000)
	for i := 0; i < 500; i++ {
		require.NoError(t, rdb.Set(ctx, fmt.Sprintf("d:%d", i), val, time.Hour).Err())
	}
	require.Positive(t, infoInt(t, rdb, "stats", "evicted_keys"))
	// The registration's own LPUSHes to evlog use memory too, so Redis may evict more keys after
	// the loop (each brings one more event): wait until the log has caught up with the count.
	var evicted int64
	waitUntil(t, time.Minute, "an event per evicted key", func() bool {
		evicted = infoInt(t, rdb, "stats", "evicted_keys")
		return rdb.LLen(ctx, "evlog").Val() == evicted && infoInt(t, rdb, "stats", "evicted_keys") == evicted
	})
	logged := rdb.LRange(ctx, "evlog", 0, -1).Val()
	require.Len(t, logged, int(evicted))
	for _, e := range logged {
		require.True(t, strings.HasPrefix(e, "evicted:d:"), e)
	}
}
