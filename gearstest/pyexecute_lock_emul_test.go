package gearstest

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RG.PYEXECUTE holds the global lock while its script runs (spec_pyexecute_lock_test.go shows the
// exclusion); these cover what only gearstest has: worker deaths and restores.

// within runs fn and fails the test when it does not return in d (a deadlock).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v (deadlock?)", what, d)
	}
}

func TestWorkerDeathDuringScriptReleasesTheLock(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 2)
	errc := make(chan error, 1)
	go func() {
		errc <- rdb.Do(ctx, "RG.PYEXECUTE", "import time\nwith atomic():\n    execute('SET', 'inside', '1')\n"+
			"    time.sleep(30)\n").Err()
	}()
	require.Eventually(t, func() bool {
		srv.lock.mu.Lock()
		defer srv.lock.mu.Unlock()
		return srv.lock.depth > 0 && strings.HasPrefix(srv.lock.owner, "c")
	}, 5*time.Second, 10*time.Millisecond)
	// The script holds the lock: another client waits.
	setc := make(chan error, 1)
	go func() { setc <- other.Set(ctx, "after", "1", 0).Err() }()
	select {
	case err := <-setc:
		t.Fatalf("SET ran while the script held the lock: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, srv.KillWorker())
	require.EqualError(t, <-errc, "ERR gearstest: python worker died, execution aborted")
	select {
	case err := <-setc:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the global lock was not released after the worker died")
	}
	assert.Equal(t, "1", other.Get(ctx, "inside").Val())
}

func TestRestoreWithTopLevelExecuteDoesNotDeadlock(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	// Its top level runs again on every restore, per use locking, while other clients keep going.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import time\nexecute('INCR', 'runs')\ntime.sleep(0.3)\n"+
		"execute('INCR', 'runs')\nGB('CommandReader').register(trigger='restored')\n", "ID", "r1").Val())
	require.Equal(t, "2", rdb.Get(ctx, "runs").Val())
	require.NoError(t, srv.KillWorker())
	var (
		wg  sync.WaitGroup
		oks atomic.Int64
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newRDB(t, srv.Addr(), 2)
			for j := 0; j < 5; j++ {
				assert.NoError(t, c.Incr(ctx, "others").Err())
				// Sent to the dying worker before the server noticed its death: that error, else OK.
				if err := c.Do(ctx, "RG.PYEXECUTE", "execute('INCR', 'scripts')").Err(); err != nil {
					assert.EqualError(t, err, errWorkerDied.Error())
				} else {
					oks.Add(1)
				}
				_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Do(ctx, "RG.UNREGISTER", "nosuch")
					p.Get(ctx, "runs")
					return nil
				})
				assert.EqualError(t, err, "execution is not registered")
			}
		}()
	}
	within(t, 30*time.Second, "clients during a restore", wg.Wait)
	require.Eventually(t, func() bool {
		v, err := rdb.Do(ctx, "RG.TRIGGER", "restored", "x").Result()
		return err == nil && assert.ObjectsAreEqual([]any{"['restored', 'x']"}, v)
	}, 20*time.Second, 50*time.Millisecond)
	assert.Equal(t, "4", rdb.Get(ctx, "runs").Val())
	assert.Equal(t, strconv.FormatInt(oks.Load(), 10), rdb.Get(ctx, "scripts").Val())
	assert.Equal(t, "20", rdb.Get(ctx, "others").Val())
}

func TestPyExecuteAndUnregisterInsideMultiDoNotDeadlock(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 8; j++ {
				script := fmt.Sprintf("import time\nexecute('INCR', 'n')\ntime.sleep(0.01)\n"+
					"def f():\n    execute('INCR', 'onreg')\n"+
					"GB('CommandReader').register(trigger='t%d_%d', onRegistered=f)\n", i, j)
				assert.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE", script).Err())
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 8; j++ {
				// A registration id that may or may not exist yet: both replies are fine here.
				_, _ = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Do(ctx, "RG.UNREGISTER", fmt.Sprintf("%s-%d", zeroShard, j+1))
					return nil
				})
			}
		}()
	}
	within(t, 60*time.Second, "PYEXECUTE with RG.UNREGISTER inside MULTI/EXEC", wg.Wait)
	assert.Equal(t, "24", rdb.Get(ctx, "n").Val())
	assert.Equal(t, "24", rdb.Get(ctx, "onreg").Val())
}

func TestUnregisterInsideMultiDuringRestore(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	// On its restore (runs > 1) the script's top level waits for the test to open a gate.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import time\n"+
		"if execute('INCR', 'runs') > 1:\n"+
		"    while execute('GET', 'gate') != '1':\n"+
		"        time.sleep(0.005)\n"+
		"GB('CommandReader').register(trigger='gone')\n"+
		"GB('CommandReader').register(trigger='kept')\n", "ID", "slow").Val())
	regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 2)
	goneID := regs[0].([]any)[1].(string)
	require.NoError(t, srv.KillWorker())
	// While the restore re-runs the script (held at the gate), EXEC holds the global lock and
	// unregisters without waiting for the restore.
	require.Eventually(t, func() bool { return rdb.Get(ctx, "runs").Val() == "2" && srv.currentWorker() == nil },
		10*time.Second, time.Millisecond)
	within(t, 5*time.Second, "RG.UNREGISTER inside MULTI/EXEC during a restore", func() {
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "RG.UNREGISTER", goneID)
			return nil
		})
		assert.NoError(t, err)
	})
	require.Nil(t, srv.currentWorker(), "the restore was still waiting at the gate")
	require.NoError(t, rdb.Set(ctx, "gate", "1", 0).Err())
	require.Eventually(t, func() bool {
		v, err := rdb.Do(ctx, "RG.TRIGGER", "kept", "x").Result()
		return err == nil && assert.ObjectsAreEqual([]any{"['kept', 'x']"}, v)
	}, 20*time.Second, 50*time.Millisecond)
	// The restored worker forgot the unregistered trigger too: it can be registered again.
	require.Len(t, rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any), 1)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='gone')").Val())
	require.Equal(t, []any{"['gone', 'y']"}, rdb.Do(ctx, "RG.TRIGGER", "gone", "y").Val())
}
