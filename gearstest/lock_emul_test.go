package gearstest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAtomicExcludesOtherClients(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 3)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
def f(x):
    with atomic():
        execute('SET', 'a', 'half')
        time.sleep(0.4)
        execute('SET', 'a', 'done')
    return 'ok'
GB('CommandReader').map(f).register(trigger='atomic', mode='async_local')
`).Val())
	done := make(chan error, 1)
	go func() { done <- rdb.Do(ctx, "RG.TRIGGER", "atomic").Err() }()
	// Poll while the function runs: no client may see the state inside the atomic block.
	deadline := time.Now().Add(3 * time.Second)
	seen := map[string]bool{}
	for time.Now().Before(deadline) {
		v, _ := other.Get(ctx, "a").Result()
		seen[v] = true
		if v == "done" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, <-done)
	assert.False(t, seen["half"], "a client saw the state inside atomic(): %v", seen)
	assert.True(t, seen["done"])
}

func TestSyncTriggerBlocksOthersUntilYield(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time, threading
def busy(x):
    time.sleep(0.3)
    return 'busy'
def waits(x):
    f = gearsFuture()
    def later():
        time.sleep(0.5)
        f.continueRun('resolved')
    threading.Thread(target=later).start()
    return f
GB('CommandReader').map(busy).register(trigger='busy', mode='sync')
GB('CommandReader').map(waits).register(trigger='waits', mode='sync')
`).Val())

	// A sync execution runs on the "main thread": a PING sent meanwhile waits for it.
	res := make(chan any, 1)
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "busy").Val() }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	require.Equal(t, "PONG", other.Ping(ctx).Val())
	assert.Greater(t, time.Since(start), 100*time.Millisecond)
	assert.Equal(t, []any{"busy"}, <-res)

	// Once it waits on a future it lets the others run.
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "waits").Val() }()
	time.Sleep(150 * time.Millisecond)
	start = time.Now()
	require.Equal(t, "PONG", other.Ping(ctx).Val())
	assert.Less(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, []any{"resolved"}, <-res)
}

func TestMaxExecutionsCap(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, []any{"OK"}, rdb.Do(ctx, "RG.CONFIGSET", "MaxExecutions", "2").Val())
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := rdb.Do(ctx, "RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING").Text()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(id, zeroShard))
		_, err = rdb.Do(ctx, "RG.GETRESULTSBLOCKING", id).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	// The oldest finished execution made room for the third.
	ex := rdb.Do(ctx, "RG.DUMPEXECUTIONS").Val().([]any)
	require.Len(t, ex, 2)
	assert.Equal(t, ids[1], ex[0].([]any)[1])
	assert.Equal(t, ids[2], ex[1].([]any)[1])
	assert.EqualError(t, rdb.Do(ctx, "RG.GETRESULTS", ids[0]).Err(), "execution plan does not exist")
}

func TestInorderRunsOneAtATime(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
def f(x):
    n = execute('INCR', 'running')
    time.sleep(0.05)
    execute('DECR', 'running')
    return n
GB('CommandReader').map(f).register(trigger='ordered', inorder=True, mode='async_local', convertToStr=False)
GB('CommandReader').map(f).register(trigger='free', mode='async_local', convertToStr=False)
`).Val())
	run := func(trigger string) []int64 {
		var mu sync.Mutex
		var got []int64
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := rdb.Do(ctx, "RG.TRIGGER", trigger).Result()
				require.NoError(t, err)
				mu.Lock()
				got = append(got, v.([]any)[0].(int64))
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	for _, n := range run("ordered") {
		assert.Equal(t, int64(1), n, "an inorder execution overlapped another")
	}
	maxSeen := int64(0)
	for _, n := range run("free") {
		maxSeen = max(maxSeen, n)
	}
	assert.Greater(t, maxSeen, int64(1), "plain async_local executions run concurrently")
}

func TestDeadSessionsWhileExecutionsRun(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
GB('CommandReader').map(lambda x: time.sleep(0.6) or 'old').register(trigger='slowup')
`, "ID", "up").Val())
	res := make(chan any, 1)
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "slowup").Val() }()
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'new').register(trigger='slowup')", "ID", "up", "UPGRADE").Val())
	assert.Equal(t, []any{[]any{"ID", "up", "sessionDescription", nil, "refCount", int64(1), "linked", "None", "dead", "true",
		"requirementInstallationNeeded", int64(0), "requirements", []any{}, "registrations", []any{}}},
		rdb.Do(ctx, "RG.PYDUMPSESSIONS", "DEAD").Val())
	assert.Equal(t, []any{"old"}, <-res)
	assert.Equal(t, []any{}, rdb.Do(ctx, "RG.PYDUMPSESSIONS", "DEAD").Val())
	assert.Equal(t, []any{"new"}, rdb.Do(ctx, "RG.TRIGGER", "slowup").Val())
}
