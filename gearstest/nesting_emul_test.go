package gearstest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// TestSyncTriggersAmongNestedAsyncOnes: the worker runs async triggers nested on its reading thread
// while the ones below wait for execute() replies, up to GEARS_NEST_MAX deep. A sync trigger read at
// that depth holds Go's global lock; deferring it until the stack unwinds deadlocked the server, since
// the executions below waited for that lock (seen with 50 sync and 50 async clients). With the nesting
// depth set to 1 the situation arises at once; every call must complete and GET must keep answering.
func TestSyncTriggersAmongNestedAsyncOnes(t *testing.T) {
	t.Setenv("GEARS_NEST_MAX", "1")
	srv := gearstest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	defer rdb.Close()
	for _, mode := range []string{"sync", "async"} {
		require.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE", fmt.Sprintf(
			"GB('CommandReader').map(lambda x: execute('GET', 'k')).register(trigger='g%s', mode='%s')", mode, mode)).Err())
	}
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())

	const clients, calls = 20, 50
	errs := make(chan error, 2*clients)
	var wg sync.WaitGroup
	for _, trig := range []string{"gsync", "gasync"} {
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < calls; j++ {
					v, err := rdb.Do(ctx, "RG.TRIGGER", trig).Result()
					if err == nil && fmt.Sprint(v) != "[v]" {
						err = fmt.Errorf("%s replied %v", trig, v)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Equal(t, "v", rdb.Get(ctx, "k").Val())
}
