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

// TestSyncLaneWaitersJoinTheNextRound: the sync RG.TRIGGERs that wait for the global lock (another
// command holds it) all join the round the first of them starts when it gets the lock, instead of
// each waiting for the lock and starting a round of its own (lane.go join).
func TestSyncLaneWaitersJoinTheNextRound(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	const n = 12
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, PoolSize: n + 1})
	t.Cleanup(func() { _ = rdb.Close() })
	// The first sync execution waits for the gate, which an async trigger opens once the others
	// joined its round (an async trigger needs no lock to start; the watchdog gives the reading role
	// to another thread while the first one waits).
	reg, err := rdb.Do(ctx, "RG.PYEXECUTE", `
import sys
import threading
sys.lane_test_gate = threading.Event()  # (a module attribute: callbacks are pickled, a lock is not)
def inc(x):
    import sys
    sys.lane_test_gate.wait(60)
    return execute('INCR', 'n')
def open_gate(x):
    import sys
    sys.lane_test_gate.set()
GB('CommandReader').map(inc).register(trigger='inc', mode='sync')
GB('CommandReader').foreach(open_gate).register(trigger='open', mode='async_local')
`).Result()
	require.NoError(t, err)
	require.Equal(t, "OK", reg)
	// One connection per client, dialled before the lock is taken (a new connection's HELLO waits
	// for the lock like any command).
	clients := make([]*redis.Client, n)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, PoolSize: 1})
		t.Cleanup(func() { _ = clients[i].Close() })
		require.NoError(t, clients[i].Ping(ctx).Err())
	}
	s := srv
	s.lock.acquire("test-holder") // a command holds the lock
	s.lane.mu.Lock()
	rounds0, waiting0 := s.lane.rounds, s.lane.waiting
	s.lane.mu.Unlock()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := clients[i].Do(ctx, "RG.TRIGGER", "inc").Result()
			errs <- err
		}()
	}
	laneState := func() (active bool, joined, rounds, waiting int) {
		s.lane.mu.Lock()
		defer s.lane.mu.Unlock()
		return s.lane.active, s.lane.joined, s.lane.rounds - rounds0, s.lane.waiting - waiting0
	}
	// Every trigger found no round and waits (for the lock or the next round).
	require.Eventually(t, func() bool { _, _, _, w := laneState(); return w == n }, 10*time.Second, time.Millisecond)
	s.lock.release("test-holder")
	// One of them gets the lock and starts a round; the others join it while its execution waits.
	require.Eventually(t, func() bool { a, j, _, _ := laneState(); return a && j == n-1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, rdb.Do(ctx, "RG.TRIGGER", "open").Err())
	for i := 0; i < n; i++ {
		require.NoError(t, <-errs)
	}
	require.Equal(t, fmt.Sprint(n), rdb.Get(ctx, "n").Val())
	_, _, rounds, _ := laneState()
	require.Equal(t, 1, rounds, "the waiters should have joined one round")
}
