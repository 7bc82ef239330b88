package gearstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gateFiles returns the paths of a marker file (the function creates it when it reached the point the
// test waits for) and a gate file (the test creates it to let the function go on): the test and the
// function synchronise on events, not on time.
func gateFiles(t *testing.T) (marker, gate string) {
	dir := t.TempDir()
	return filepath.Join(dir, "marker"), filepath.Join(dir, "gate")
}

// pyGateHelpers defines reached() and wait_gate() for a script, given gateFiles' paths.
func pyGateHelpers(marker, gate string) string {
	return fmt.Sprintf(`
import os, time
def reached():
    open(%q, 'w').close()
def wait_gate():
    deadline = time.time() + 60
    while not os.path.exists(%q) and time.time() < deadline:
        time.sleep(0.002)
`, marker, gate)
}

func waitFile(t *testing.T, path, what string) {
	t.Helper()
	waitUntil(t, 30*time.Second, what, func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}

func openGateFile(t *testing.T, gate string) {
	t.Helper()
	require.NoError(t, os.WriteFile(gate, nil, 0o600))
}

// notAnsweredYet asserts that nothing arrived on ch in a short window: a command that should wait for
// the global lock has not been answered. Under load the window may pass before the command even
// reaches the server, which makes the check weaker, never wrong; the order checks that follow hold
// either way.
func notAnsweredYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s was answered while the lock was held: %v", what, v)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestAtomicHidesItsIntermediateState is emulator-only (the conformance version is
// TestAtomicExcludesOtherClients in spec_concurrency_test.go): a client reading a key that an atomic()
// block changes twice sees only the value from after the block.
func TestAtomicHidesItsIntermediateState(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 3)
	require.NoError(t, other.Ping(ctx).Err()) // connected before the lock is held
	marker, gate := gateFiles(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", pyGateHelpers(marker, gate)+`
def f(x):
    with atomic():
        execute('SET', 'a', 'half')
        reached()
        wait_gate()
        execute('SET', 'a', 'done')
    return 'ok'
GB('CommandReader').map(f).register(trigger='atomic', mode='async_local')
`).Val())
	done := make(chan error, 1)
	go func() { done <- rdb.Do(ctx, "RG.TRIGGER", "atomic").Err() }()
	waitFile(t, marker, "the function to hold atomic()")
	type reply struct {
		v   string
		err error
	}
	got := make(chan reply, 1)
	go func() {
		v, err := other.Get(ctx, "a").Result()
		got <- reply{v, err}
	}()
	notAnsweredYet(t, got, "GET a")
	openGateFile(t, gate)
	r := <-got
	require.NoError(t, r.err)
	assert.Equal(t, "done", r.v, "a client saw the state inside atomic()")
	require.NoError(t, <-done)
}

func TestSyncTriggerBlocksOthersUntilYield(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 2)
	require.NoError(t, other.Ping(ctx).Err())
	marker, gate := gateFiles(t)
	marker2, gate2 := gateFiles(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", pyGateHelpers(marker, gate)+fmt.Sprintf(`
import threading
def busy(x):
    reached()
    wait_gate()
    execute('RPUSH', 'order', 'busy')
    return 'busy'
def waits(x):
    f = gearsFuture()
    def later():
        deadline = time.time() + 60
        while not os.path.exists(%q) and time.time() < deadline:
            time.sleep(0.002)
        f.continueRun('resolved')
    open(%q, 'w').close()
    threading.Thread(target=later).start()
    return f
GB('CommandReader').map(busy).register(trigger='busy', mode='sync')
GB('CommandReader').map(waits).register(trigger='waits', mode='sync')
`, gate2, marker2)).Val())

	// A sync execution runs on the "main thread": a command sent meanwhile waits for it.
	res := make(chan any, 1)
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "busy").Val() }()
	waitFile(t, marker, "the sync function to run")
	pushed := make(chan error, 1)
	go func() { pushed <- other.RPush(ctx, "order", "other").Err() }()
	notAnsweredYet(t, pushed, "RPUSH from another client")
	openGateFile(t, gate)
	require.NoError(t, <-pushed)
	assert.Equal(t, []any{"busy"}, <-res)
	assert.Equal(t, []string{"busy", "other"}, other.LRange(ctx, "order", 0, -1).Val(), "the other client's command ran after the sync function")

	// Once it waits on a future it lets the others run: PING answers while the future is unresolved.
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "waits").Val() }()
	waitFile(t, marker2, "the sync function to return its future")
	require.Equal(t, "PONG", other.Ping(ctx).Val())
	require.NoError(t, other.RPush(ctx, "order", "while waiting").Err())
	openGateFile(t, gate2)
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
def overlap(x):
    # Waits (bounded) until a second execution has started: the first cannot have finished before
    # it, so two ran at once. 0 if that never happened.
    execute('INCR', 'started2')
    deadline = time.time() + 20
    while int(execute('GET', 'started2')) < 2:
        if time.time() > deadline:
            return 0
        time.sleep(0.002)
    return 2
GB('CommandReader').map(f).register(trigger='ordered', inorder=True, mode='async_local', convertToStr=False)
GB('CommandReader').map(overlap).register(trigger='free', mode='async_local', convertToStr=False)
`).Val())
	run := func(trigger string) []int64 {
		var mu sync.Mutex
		var got []int64
		var errs []error
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := rdb.Do(ctx, "RG.TRIGGER", trigger).Result()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				got = append(got, v.([]any)[0].(int64))
			}()
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Len(t, got, 6)
		return got
	}
	for _, n := range run("ordered") {
		assert.Equal(t, int64(1), n, "an inorder execution overlapped another")
	}
	assert.Equal(t, []int64{2, 2, 2, 2, 2, 2}, run("free"), "plain async_local executions run concurrently")
}

func TestDeadSessionsWhileExecutionsRun(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	marker, gate := gateFiles(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", pyGateHelpers(marker, gate)+`
GB('CommandReader').map(lambda x: reached() or wait_gate() or 'old').register(trigger='slowup')
`, "ID", "up").Val())
	res := make(chan any, 1)
	go func() { res <- rdb.Do(ctx, "RG.TRIGGER", "slowup").Val() }()
	waitFile(t, marker, "the old version's execution to run")
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'new').register(trigger='slowup')", "ID", "up", "UPGRADE").Val())
	assert.Equal(t, []any{[]any{"ID", "up", "sessionDescription", nil, "refCount", int64(1), "linked", "None", "dead", "true",
		"requirementInstallationNeeded", int64(0), "requirements", []any{}, "registrations", []any{}}},
		rdb.Do(ctx, "RG.PYDUMPSESSIONS", "DEAD").Val())
	openGateFile(t, gate)
	assert.Equal(t, []any{"old"}, <-res)
	assert.Equal(t, []any{}, rdb.Do(ctx, "RG.PYDUMPSESSIONS", "DEAD").Val())
	assert.Equal(t, []any{"new"}, rdb.Do(ctx, "RG.TRIGGER", "slowup").Val())
}
