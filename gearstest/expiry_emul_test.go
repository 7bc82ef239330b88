package gearstest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestInProcessStoreExpiresKeysInRealTime is emulator-only: miniredis counts TTLs down only when
// told to, so the in-process store runs a clock; a key set with PX must be gone shortly after, both
// for clients and for execute() inside a gear function.
func TestInProcessStoreExpiresKeysInRealTime(t *testing.T) {
	srv := Run(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	require.NoError(t, rdb.Do(ctx, "SET", "short", "v", "PX", "150").Err())
	require.NoError(t, rdb.Do(ctx, "SET", "long", "v", "EX", "100").Err())
	require.Equal(t, "v", rdb.Get(ctx, "short").Val())

	require.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE",
		"GB('CommandReader').map(lambda x: execute('EXISTS', x[1])).register(trigger='exists', mode='sync', convertToStr=False)").Err())
	require.Eventually(t, func() bool {
		return rdb.Exists(ctx, "short").Val() == 0
	}, 3*time.Second, 10*time.Millisecond, "a key with PX 150 never expired")
	require.Equal(t, []any{int64(0)}, rdb.Do(ctx, "RG.TRIGGER", "exists", "short").Val())
	require.Equal(t, []any{int64(1)}, rdb.Do(ctx, "RG.TRIGGER", "exists", "long").Val())
	ttl := rdb.TTL(ctx, "long").Val()
	require.True(t, ttl > 90*time.Second && ttl <= 100*time.Second, "TTL of long: %v", ttl)
}
