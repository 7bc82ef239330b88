package gearstest

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCloseRightAfterStart is emulator-only: closing a server at once after Start (before its accept
// loop has had a chance to run) must return, not wait forever for an accept loop that starts later.
func TestCloseRightAfterStart(t *testing.T) {
	for i := 0; i < 5; i++ {
		s, err := Start()
		if err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(30*time.Second, func() { panic("gearstest: Close did not return") })
		err = s.Close()
		watchdog.Stop()
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// syncBuffer is a log sink that tests can read while the server writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCloseWithWorkInFlight is emulator-only: Close while async and sync triggers, run()s, a
// RG.GETRESULTSBLOCKING and a BLPOP are in flight returns, every caller gets an error (none hangs), the
// server logs no panic (a trigger's execution used to be finished twice, by Close's abortAll and by
// RG.TRIGGER itself: "close of closed channel"), and no goroutine outlives the server.
func TestCloseWithWorkInFlight(t *testing.T) {
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprint(round), func(t *testing.T) { closeWithWorkInFlight(t) })
	}
}

func closeWithWorkInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	logs := &syncBuffer{}
	srv, err := Start(WithLogger(logs))
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			_ = srv.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32, ReadTimeout: 60 * time.Second, MaxRetries: -1})
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
def slow(x):
    execute('INCR', 'started')
    time.sleep(30)
    return 'never'
def pending(x):
    execute('INCR', 'started')
    return gearsFuture()
GB('CommandReader').map(slow).register(trigger='slow')
GB('CommandReader').map(pending).register(trigger='pending', mode='sync')
`).Val())

	const asyncTriggers, syncTriggers, runs = 8, 4, 2
	type outcome struct {
		what string
		err  error
	}
	results := make(chan outcome, asyncTriggers+syncTriggers+runs+1)
	call := func(what string, args ...any) {
		go func() {
			results <- outcome{what, rdb.Do(ctx, args...).Err()}
		}()
	}
	for i := 0; i < asyncTriggers; i++ {
		call("async RG.TRIGGER", "RG.TRIGGER", "slow")
	}
	for i := 0; i < syncTriggers; i++ {
		call("sync RG.TRIGGER", "RG.TRIGGER", "pending")
	}
	for i := 0; i < runs; i++ {
		id, err := rdb.Do(ctx, "RG.PYEXECUTE", "import time\nGB('ShardsIDReader').map(lambda x: execute('INCR', 'started') and time.sleep(30)).run()", "UNBLOCKING").Text()
		require.NoError(t, err)
		call("RG.GETRESULTSBLOCKING", "RG.GETRESULTSBLOCKING", id)
	}
	call("BLPOP", "BLPOP", "nothing", "0")
	// Every trigger and run() is inside its Python function.
	want := fmt.Sprint(asyncTriggers + syncTriggers + runs)
	waitUntil(t, 30*time.Second, "every execution to start", func() bool {
		v, _ := rdb.Get(ctx, "started").Result()
		return v == want
	})

	watchdog := time.AfterFunc(60*time.Second, func() { panic("gearstest: Close did not return") })
	require.NoError(t, srv.Close())
	watchdog.Stop()
	closed = true
	var got []string
	for i := 0; i < cap(results); i++ {
		select {
		case r := <-results:
			if r.err == nil {
				got = append(got, r.what+": no error")
			}
		case <-ctx.Done():
			t.Fatalf("a call in flight did not return after Close (%d of %d did)", i, cap(results))
		}
	}
	assert.Empty(t, got, "calls in flight must fail when the server closes")
	_ = rdb.Close()

	log := logs.String()
	assert.NotContains(t, log, "panic", "the server log:\n%s", log)
	assert.Contains(t, log, "gearstest ready to accept connections", "the log was captured")

	// Every goroutine the server started ends (bounded wait: some exit just after Close returns).
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = runtime.NumGoroutine()
		if after <= before || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines before Start, %d after Close:\n%s", before, after, buf)
	}
}

// waitUntil polls cond until it holds (it observes a state: no fixed sleep) and fails the test after
// limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
