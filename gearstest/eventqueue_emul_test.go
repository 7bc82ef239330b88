package gearstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// gatedRestoreScript registers a sync and an async KeysReader registration on k:*. Its top level
// counts its runs in "boots"; when it is re-run by a restore (boots > 1) it waits until the test
// sets "gate", which holds the worker restart open while the test writes.
const gatedRestoreScript = `
import time
n = execute('INCR', 'boots')
if n > 1:
    while execute('GET', 'gate') is None:
        time.sleep(0.005)
GB().foreach(lambda r: execute('RPUSH', 'order', r['key'])).register(prefix='k:*', mode='sync')
GB().foreach(lambda r: execute('INCR', 'async_n')).register(prefix='k:*')
`

func infoField(t *testing.T, rdb *redis.Client, field string) string {
	t.Helper()
	info, err := rdb.Info(context.Background(), "gearstest").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO gearstest has no %s: %q", field, info)
	return ""
}

// killAndHoldRestore kills the worker and returns once the restarted worker is re-running the
// gated script (before its registrations are restored).
func killAndHoldRestore(t *testing.T, srv *Server, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, srv.KillWorker())
	waitUntil(t, 2*time.Minute, "the restore to start", func() bool { return rdb.Get(ctx, "boots").Val() == "2" })
}

// TestEventsDuringRestartAreQueued: writes made while the worker restarts fire the restored
// registrations once the sessions are back, in the order of the writes; none is lost or doubled.
func TestEventsDuringRestartAreQueued(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", gatedRestoreScript, "ID", "q").Val())
	require.NoError(t, rdb.Set(ctx, "k:0", "v", 0).Err())
	require.Equal(t, []string{"k:0"}, rdb.LRange(ctx, "order", 0, -1).Val())
	waitUntil(t, time.Minute, "the async execution of k:0", func() bool { return rdb.Get(ctx, "async_n").Val() == "1" })

	killAndHoldRestore(t, srv, rdb)
	keys := []string{"k:3", "k:1", "k:2", "k:1"}
	for _, k := range keys {
		require.NoError(t, rdb.Set(ctx, k, "v", 0).Err())
	}
	// Both registrations' executions of the four writes wait in the queue; none ran yet.
	require.Equal(t, "8", infoField(t, rdb, "events_restart_queued"))
	require.Equal(t, "8", infoField(t, rdb, "events_restart_waiting"))
	require.Equal(t, []string{"k:0"}, rdb.LRange(ctx, "order", 0, -1).Val())

	require.NoError(t, rdb.Set(ctx, "gate", "1", 0).Err())
	waitUntil(t, 2*time.Minute, "the queued events to be delivered", func() bool {
		return rdb.Get(ctx, "async_n").Val() == "5"
	})
	numTriggered := func(i int) any {
		regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
		return regs[i].([]any)[7].([]any)[3]
	}
	// Each registration ran once per write: the one before the restart and the four queued.
	require.Equal(t, int64(5), numTriggered(0))
	require.Equal(t, int64(5), numTriggered(1))
	require.Equal(t, append([]string{"k:0"}, keys...), rdb.LRange(ctx, "order", 0, -1).Val())
	require.Equal(t, "0", infoField(t, rdb, "events_restart_waiting"))
	require.Equal(t, "0", infoField(t, rdb, "events_restart_dropped"))
	// After the delivery, events fire directly again.
	require.NoError(t, rdb.Set(ctx, "k:9", "v", 0).Err())
	require.Equal(t, "k:9", rdb.LIndex(ctx, "order", -1).Val())
	require.Equal(t, "8", infoField(t, rdb, "events_restart_queued"))
}

// TestEventQueueBound: beyond the bound, executions are dropped, with a log line and a counter.
func TestEventQueueBound(t *testing.T) {
	w := &logWatch{want: "dropping the execution of registration", hit: make(chan struct{})}
	srv := Run(t, WithLogger(w))
	srv.ev.queue.mu.Lock()
	srv.ev.queue.max = 3
	srv.ev.queue.mu.Unlock()
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", gatedRestoreScript, "ID", "q").Val())
	killAndHoldRestore(t, srv, rdb)
	for _, k := range []string{"k:1", "k:2", "k:3"} {
		require.NoError(t, rdb.Set(ctx, k, "v", 0).Err())
	}
	// 6 executions for 3 slots: the sync and async ones of k:1, the sync one of k:2 are queued.
	require.Equal(t, "3", infoField(t, rdb, "events_restart_queued"))
	require.Equal(t, "3", infoField(t, rdb, "events_restart_dropped"))
	select {
	case <-w.hit:
	default:
		t.Fatal("no log line for the dropped executions")
	}
	require.NoError(t, rdb.Set(ctx, "gate", "1", 0).Err())
	waitUntil(t, 2*time.Minute, "the queued events to be delivered", func() bool {
		return rdb.Get(ctx, "async_n").Val() == "1"
	})
	waitUntil(t, 2*time.Minute, "the delivery to end", func() bool {
		return infoField(t, rdb, "events_restart_waiting") == "0"
	})
	require.Equal(t, []string{"k:1", "k:2"}, rdb.LRange(ctx, "order", 0, -1).Val())
}

// TestQueuedEventOverridesTheReply: a client command hooked by commands= whose event is queued
// during a restart waits for the delivery, and gets the reply the function overrides.
func TestQueuedEventOverridesTheReply(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
n = execute('INCR', 'boots')
if n > 1:
    while execute('GET', 'gate') is None:
        time.sleep(0.005)
GB().foreach(lambda r: override_reply('+over ' + r['key'])).register(prefix='h:*', commands=['HSET'], mode='sync')
`, "ID", "o").Val())
	require.Equal(t, "over h:0", rdb.Do(ctx, "HSET", "h:0", "f", "v").Val())
	killAndHoldRestore(t, srv, rdb)
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := rdb.Do(ctx, "HSET", "h:1", "f", "v").Result()
		done <- result{v, err}
	}()
	waitUntil(t, time.Minute, "the event to be queued", func() bool {
		return infoField(t, rdb, "events_restart_waiting") == "1"
	})
	select {
	case r := <-done:
		t.Fatalf("HSET replied %v, %v before its queued execution ran", r.v, r.err)
	default:
	}
	require.NoError(t, rdb.Set(ctx, "gate", "1", 0).Err())
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, "over h:1", r.v)
}
