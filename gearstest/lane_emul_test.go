package gearstest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// laneHeads is how many sync triggers the lane has sent and not seen done or yield.
func laneHeads(s *Server) int {
	s.lane.mu.Lock()
	defer s.lane.mu.Unlock()
	return len(s.lane.heads)
}

// TestSyncLaneWorkerDiesMidRound: sync triggers that joined a round of the lane (sent to the worker
// behind one that never ends) fail when the worker dies, and the lock the round held is free again:
// a GET that waited for it answers, and after the restart sync triggers run again.
func TestSyncLaneWorkerDiesMidRound(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	const n = 10
	// One connection per call, made before: a new connection's HELLO waits for the lock like any
	// command.
	conns := make([]*redis.Client, n+2)
	for i := range conns {
		conns[i] = redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, ReadTimeout: 30 * time.Second, PoolSize: 1})
		t.Cleanup(func() { _ = conns[i].Close() })
		require.NoError(t, conns[i].Ping(ctx).Err())
	}
	rdb := conns[0]
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import time\n"+
		"def forever(x):\n    execute('INCR', 'started')\n    while True:\n        time.sleep(0.01)\n"+
		"GB('CommandReader').map(forever).register(trigger='hold', mode='sync')\n"+
		"GB('CommandReader').map(lambda x: execute('INCR', 'quick')).register(trigger='quick', mode='sync')\n").Val())
	out := make(chan callResult, n+2)
	goCall(ctx, conns[0], out, "hold", "RG.TRIGGER", "hold")
	waitUntil(t, 30*time.Second, "the sync trigger holding the lane to start", func() bool {
		v, _ := srv.data.mini.Get("started")
		return v == "1"
	})
	for i := 0; i < n; i++ {
		goCall(ctx, conns[1+i], out, fmt.Sprint("quick", i), "RG.TRIGGER", "quick")
	}
	waitUntil(t, 30*time.Second, "the sync triggers to join the round", func() bool { return laneHeads(srv) == n+1 })
	goCall(ctx, conns[n+1], out, "GET", "GET", "started")
	require.NoError(t, srv.KillWorker())
	got := collect(t, ctx, out, n+2)
	died := errWorkerDied.Error()
	assert.EqualError(t, got["hold"].err, died)
	for i := 0; i < n; i++ {
		assert.EqualError(t, got[fmt.Sprint("quick", i)].err, died, "quick%d", i)
	}
	assert.Equal(t, "1", got["GET"].val)
	assert.Equal(t, 0, laneHeads(srv))
	require.Equal(t, []any{"1"}, rdb.Do(ctx, "RG.TRIGGER", "quick").Val(), "none of the joined ones ran")
	require.Equal(t, "OK", rdb.Set(ctx, "k", "v", 0).Val())
}

// TestSyncLaneWithFutures: many clients' sync triggers in rounds of the lane, half of them waiting on a
// gearsFuture (their yield passes the lock to the next one), all answer, and the plain ones ran
// one at a time with no other command between their two execute() calls.
func TestSyncLaneWithFutures(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	const n = 20
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, PoolSize: 2 * n})
	t.Cleanup(func() { _ = rdb.Close() })
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import threading
import time
def resolve(f, v):
    # continueRun() before the function returned the future raises: try until it did.
    while True:
        try:
            f.continueRun(v)
            return
        except Exception as e:
            if 'untill it returned' not in str(e):
                raise
            time.sleep(0.001)
def fut(x):
    f = gearsFuture()
    threading.Thread(target=resolve, args=(f, x[1])).start()
    return f
GB('CommandReader').map(fut).register(trigger='fut', mode='sync')
def pair(x):
    a = execute('INCR', 'pair')
    b = execute('INCR', 'pair')
    return b - a
GB('CommandReader').map(pair).register(trigger='pair', mode='sync')
`).Val())
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				arg := fmt.Sprint(i, "-", j)
				if v, err := rdb.Do(ctx, "RG.TRIGGER", "fut", arg).Result(); err != nil || fmt.Sprint(v) != "["+arg+"]" {
					mu.Lock()
					bad = append(bad, fmt.Sprint("fut ", arg, ": ", v, err))
					mu.Unlock()
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if v, err := rdb.Do(ctx, "RG.TRIGGER", "pair").Result(); err != nil || fmt.Sprint(v) != "[1]" {
					mu.Lock()
					bad = append(bad, fmt.Sprint("pair: ", v, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.Empty(t, bad)
	require.Equal(t, fmt.Sprint(2*n*10), rdb.Get(ctx, "pair").Val())
	require.Equal(t, 0, laneHeads(srv))
}
