package gearstest

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// logWatch is a log writer that signals when a line containing want was written.
type logWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	hit  chan struct{}
	once sync.Once
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

// TestAsyncSelfTriggerWarns: an async KeysReader registration whose function writes under its own
// prefix triggers itself without end, as on the real server (gears-spec 8.1), and the log says so.
func TestAsyncSelfTriggerWarns(t *testing.T) {
	w := &logWatch{want: "keeps re-triggering itself", hit: make(chan struct{})}
	srv := Run(t, WithLogger(w))
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	require.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE",
		"GB().foreach(lambda r: execute('INCR', 'loop:n')).register(prefix='loop:*')", "ID", "loop").Err())
	require.NoError(t, rdb.Set(ctx, "loop:start", "1", 0).Err())
	select {
	case <-w.hit:
	case <-time.After(2 * time.Minute):
		t.Fatal("no warning about the self-triggering registration")
	}
	n, err := rdb.Get(ctx, "loop:n").Int()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, selfTriggerWarn, "the registration ran again and again")
	regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 1)
	require.NoError(t, rdb.Do(ctx, "RG.UNREGISTER", regs[0].([]any)[1]).Err())
}

// TestEventRegistrationsSurviveWorkerRestart: the restored session keeps its KeysReader registration.
// FLUSHALL raises no keyspace event (Redis notifies none per key), so it triggers nothing.
func TestEventRegistrationsSurviveWorkerRestart(t *testing.T) {
	srv := Run(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	require.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE",
		"GB().foreach(lambda r: execute('INCR', 'count')).register(prefix='k:*', mode='sync')", "ID", "ev").Err())
	require.NoError(t, rdb.Set(ctx, "k:1", "v", 0).Err())
	require.Equal(t, "1", rdb.Get(ctx, "count").Val())
	require.NoError(t, srv.KillWorker())
	// A run() succeeds once the restarted worker (and its restored sessions) is there; a command sent
	// while the old one is dying gets an error.
	require.Eventually(t, func() bool {
		v, err := rdb.Do(ctx, "RG.PYEXECUTE", "GB('ShardsIDReader').run()").Result()
		return err == nil && len(v.([]any)) == 2
	}, 2*time.Minute, 20*time.Millisecond, "the worker never came back")
	require.NoError(t, rdb.Set(ctx, "k:2", "v", 0).Err())
	require.Equal(t, "2", rdb.Get(ctx, "count").Val())
	require.NoError(t, rdb.FlushAll(ctx).Err())
	regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 1)
	data := regs[0].([]any)[7].([]any)
	require.Equal(t, "numTriggered", data[2])
	require.Equal(t, int64(2), data[3])
	require.Equal(t, int64(0), rdb.Exists(ctx, "count").Val())
}
