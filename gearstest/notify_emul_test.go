package gearstest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestExternalRedisKeyspaceNotifications: with an external Redis, a write made by a plain client
// directly to that Redis fires an async KeysReader registration exactly once (keyspace
// notifications), and a write made through gearstest fires it exactly once too (its own notification
// is recognised and skipped). The user's notify-keyspace-events flags are kept.
func TestExternalRedisKeyspaceNotifications(t *testing.T) {
	redisAddr := startRedisServer(t)
	ctx := ctxT(t)
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = direct.Close() })
	require.NoError(t, direct.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err())

	srv := Run(t, WithRedis("redis://"+redisAddr))
	flags := direct.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
	for _, f := range "EKA" { // Redis writes g$lshzxetd as A
		require.Contains(t, flags, string(f), "notify-keyspace-events %q", flags)
	}

	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
		"GB().foreach(lambda r: execute('INCR', 'count:' + r['key'])).register(prefix='ev:*', mode='async')").Val())
	regID := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)[0].([]any)[1].(string)

	count := func(key string) func() bool {
		return func() bool { return direct.Get(ctx, "count:"+key).Val() == "1" }
	}
	require.NoError(t, direct.Set(ctx, "ev:outside", "1", 0).Err()) // a plain client, straight to Redis
	require.Eventually(t, count("ev:outside"), 20*time.Second, 5*time.Millisecond)
	require.NoError(t, rdb.HSet(ctx, "ev:through", "f", "v").Err()) // through gearstest
	require.Eventually(t, count("ev:through"), 20*time.Second, 5*time.Millisecond)
	// MULTI/EXEC through gearstest: Redis notifies its writes, which fire after EXEC.
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "ev:multi", "1", 0)
		return nil
	})
	require.NoError(t, err)
	require.Eventually(t, count("ev:multi"), 20*time.Second, 5*time.Millisecond)
	// A barrier: notifications are read in order, so once the registration ran for this later write,
	// any second run for the two writes above was started already.
	require.NoError(t, direct.LPush(ctx, "ev:barrier", "x").Err())
	require.Eventually(t, count("ev:barrier"), 20*time.Second, 5*time.Millisecond)

	stats := func() (triggered, done int64) {
		for _, e := range rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any) {
			entry := e.([]any)
			if entry[1] != regID {
				continue
			}
			data := entry[7].([]any)
			m := map[string]int64{}
			for i := 0; i+1 < len(data); i += 2 {
				if n, ok := data[i+1].(int64); ok {
					m[data[i].(string)] = n
				}
			}
			return m["numTriggered"], m["numSuccess"] + m["numFailures"] + m["numAborted"]
		}
		return -1, -1
	}
	require.Eventually(t, func() bool { tr, d := stats(); return tr == d }, 20*time.Second, 5*time.Millisecond)
	tr, d := stats()
	require.Equal(t, int64(4), tr, "runs started")
	require.Equal(t, int64(4), d, "runs finished")
	for _, k := range []string{"ev:outside", "ev:through", "ev:multi", "ev:barrier"} {
		require.Equal(t, "1", direct.Get(context.Background(), "count:"+k).Val(), k)
	}
}
