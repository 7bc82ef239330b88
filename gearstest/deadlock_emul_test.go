package gearstest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Emulator-only tests of gearstest's no-deadlock guarantees: Close always returns and a dead worker
// frees every waiter, whatever is in flight (a script whose top level blocks, a hung external store),
// and the Go/worker pipes cannot deadlock when both are full.

// callResult is the outcome of one command sent from a goroutine (asserted in the test goroutine).
type callResult struct {
	what string
	val  any
	err  error
}

// goCall sends args on rdb from a new goroutine and delivers the outcome on out.
func goCall(ctx context.Context, rdb *redis.Client, out chan<- callResult, what string, args ...any) {
	go func() {
		v, err := rdb.Do(ctx, args...).Result()
		out <- callResult{what, v, err}
	}()
}

// collect receives n outcomes, failing the test when one does not come before ctx ends.
func collect(t *testing.T, ctx context.Context, in <-chan callResult, n int) map[string]callResult {
	t.Helper()
	got := map[string]callResult{}
	for i := 0; i < n; i++ {
		select {
		case r := <-in:
			got[r.what] = r
		case <-ctx.Done():
			t.Fatalf("only %d of %d calls in flight returned: %v", i, n, got)
		}
	}
	return got
}

// closeAndCheck closes srv (which must return), then checks that its log has no panic and that every
// goroutine it started ended (before: runtime.NumGoroutine() before Start).
func closeAndCheck(t *testing.T, srv *Server, logs *syncBuffer, before int) {
	t.Helper()
	watchdog := time.AfterFunc(60*time.Second, func() { panic("gearstest: Close did not return") })
	require.NoError(t, srv.Close())
	watchdog.Stop()
	log := logs.String()
	assert.NotContains(t, log, "panic", "the server log:\n%s", log)
	assert.Contains(t, log, "gearstest ready to accept connections", "the log was captured")
	checkNoLeak(t, before)
}

// checkNoLeak waits (bounded) until no more goroutines run than before, and fails with their stacks.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before Start, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// blockingTopLevel is a script whose top level counts itself in 'started', then never returns.
const blockingTopLevel = "import time\nexecute('INCR', 'started')\nwhile True:\n    time.sleep(0.01)\n"

// TestCloseWithBlockingScriptTopLevel: a script whose top level never returns holds the global lock
// (as it holds a real server's main thread: other clients wait, PING included); Close still returns,
// every caller gets an answer, no goroutine is left.
func TestCloseWithBlockingScriptTopLevel(t *testing.T) {
	before := runtime.NumGoroutine()
	logs := &syncBuffer{}
	srv, err := Start(WithLogger(logs))
	require.NoError(t, err)
	ctx := ctxT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 8, ReadTimeout: 60 * time.Second, MaxRetries: -1})
	defer rdb.Close()
	out := make(chan callResult, 4)
	goCall(ctx, rdb, out, "RG.PYEXECUTE", "RG.PYEXECUTE", blockingTopLevel)
	// The script runs (the in-process store is read directly: every client waits for the lock).
	waitUntil(t, 30*time.Second, "the script's top level to run", func() bool {
		v, _ := srv.data.mini.Get("started")
		return v == "1"
	})
	goCall(ctx, rdb, out, "PING", "PING")
	goCall(ctx, rdb, out, "SET", "SET", "k", "v")
	goCall(ctx, rdb, out, "RG.PYEXECUTE 2", "RG.PYEXECUTE", "GB('CommandReader').register(trigger='t')")
	closeAndCheck(t, srv, logs, before)
	got := collect(t, ctx, out, 4)
	require.Error(t, got["RG.PYEXECUTE"].err, "the blocked script ends with the worker")
}

// hungStore is a listener that accepts connections and never answers; it reports the first bytes
// each connection sends.
type hungStore struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	got   chan string
	wg    sync.WaitGroup
}

func newHungStore(t *testing.T) *hungStore {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &hungStore{ln: ln, got: make(chan string, 64)}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					select {
					case h.got <- string(buf[:n]):
					default:
					}
				}
			}()
		}
	}()
	return h
}

// waitFor waits until a connection sent something containing s.
func (h *hungStore) waitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for {
		select {
		case b := <-h.got:
			if strings.Contains(b, s) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the store never received %q", s)
		}
	}
}

func (h *hungStore) close() {
	_ = h.ln.Close()
	h.mu.Lock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// TestCloseWithHungStore: with WithRedis pointing at a store that accepts and never answers, a
// command waits for its reply holding the global lock (others wait behind it); Close interrupts it
// and returns, every caller gets an error, no goroutine is left.
func TestCloseWithHungStore(t *testing.T) {
	before := runtime.NumGoroutine()
	hung := newHungStore(t)
	defer hung.close()
	logs := &syncBuffer{}
	// No store deadline to help: only Close may end the hung store calls.
	srv, err := Start(WithLogger(logs), WithRedis("redis://"+hung.ln.Addr().String()), WithStoreTimeout(time.Hour))
	require.NoError(t, err)
	ctx := ctxT(t)
	// Raw connections: a client library's handshake (HELLO) would wait for the hung store first.
	out := make(chan callResult, 3)
	goCallRaw(t, srv.Addr(), out, "SET", "SET", "k", "v")
	hung.waitFor(t, ctx, "SET")
	goCallRaw(t, srv.Addr(), out, "PING", "PING")
	goCallRaw(t, srv.Addr(), out, "RG.PYEXECUTE", "RG.PYEXECUTE", "execute('SET', 'x', '1')")
	closeAndCheck(t, srv, logs, before+1+3) // the hung store's accept loop and its 3 connections
	got := collect(t, ctx, out, 3)
	// Interrupted (an error reply) or cut (the connection closed): never a reply from the store.
	for _, r := range got {
		if r.err == nil && r.what != "PING" { // PING is the front's own reply, once the lock is free
			assert.True(t, strings.HasPrefix(r.val.(string), "-"), "%s: %v", r.what, r.val)
		}
	}
}

// goCallRaw sends one command on a new raw connection from a new goroutine and delivers the first line
// of the reply (or the read error) on out.
func goCallRaw(t *testing.T, addr string, out chan<- callResult, what string, args ...string) {
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	go func() {
		if _, err := nc.Write([]byte(respCmd(args...))); err != nil {
			out <- callResult{what, nil, err}
			return
		}
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil {
			out <- callResult{what, nil, err}
			return
		}
		out <- callResult{what, line, nil}
	}()
}

// TestStoreTimeout: a reply the store does not send within WithStoreTimeout fails the command, which
// releases the global lock (PING answers after it).
func TestStoreTimeout(t *testing.T) {
	hung := newHungStore(t)
	defer hung.close()
	srv := Run(t, WithRedis("redis://"+hung.ln.Addr().String()), WithStoreTimeout(100*time.Millisecond))
	ctx := ctxT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 2, ReadTimeout: 30 * time.Second, MaxRetries: -1,
		Protocol: 2, DisableIdentity: true}) // RESP2: no HELLO, which would wait for the hung store first
	defer rdb.Close()
	err := rdb.Get(ctx, "k").Err()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), msgStoreFailed) && strings.HasSuffix(err.Error(), "i/o timeout"), "%v", err)
	require.Equal(t, "PONG", rdb.Ping(ctx).Val())
	// execute() from a script gets the same error (Python sees it with the store's CRLF).
	err = rdb.Do(ctx, "RG.PYEXECUTE", "execute('GET', 'k')").Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "i/o timeout")
}

// TestDeadWorkerFreesEveryWaiter: when the worker dies, everything that waits for it returns: a
// script whose top level blocks (and the clients waiting for the lock it holds), an async trigger
// in flight, RG.GETRESULTSBLOCKING of a run() in flight.
func TestDeadWorkerFreesEveryWaiter(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import time\n"+
		"def forever(x):\n    execute('INCR', 'started')\n    while True:\n        time.sleep(0.01)\n"+
		"GB('CommandReader').map(forever).register(trigger='forever')\n").Val())
	out := make(chan callResult, 6)
	goCall(ctx, rdb, out, "RG.TRIGGER", "RG.TRIGGER", "forever")
	runID, err := rdb.Do(ctx, "RG.PYEXECUTE", "import time\n"+
		"GB('ShardsIDReader').map(lambda x: execute('INCR', 'started') and time.sleep(3600)).run()", "UNBLOCKING").Text()
	require.NoError(t, err)
	goCall(ctx, rdb, out, "RG.GETRESULTSBLOCKING", "RG.GETRESULTSBLOCKING", runID)
	waitUntil(t, 30*time.Second, "the trigger and the run() to start", func() bool {
		return rdb.Get(ctx, "started").Val() == "2"
	})
	goCall(ctx, rdb, out, "RG.PYEXECUTE", "RG.PYEXECUTE", blockingTopLevel)
	waitUntil(t, 30*time.Second, "the script's top level to run", func() bool {
		v, _ := srv.data.mini.Get("started")
		return v == "3"
	})
	goCall(ctx, rdb, out, "PING", "PING")
	goCall(ctx, rdb, out, "SET", "SET", "k", "v")
	goCall(ctx, rdb, out, "GET", "GET", "started")
	select {
	case r := <-out:
		t.Fatalf("%s returned while the worker was alive: %v %v", r.what, r.val, r.err)
	default:
	}
	require.NoError(t, srv.KillWorker())
	got := collect(t, ctx, out, 6)
	died := errWorkerDied.Error()
	assert.EqualError(t, got["RG.PYEXECUTE"].err, died)
	assert.EqualError(t, got["RG.TRIGGER"].err, died)
	assert.Equal(t, []any{[]any{}, []any{died}}, got["RG.GETRESULTSBLOCKING"].val)
	assert.Equal(t, "PONG", got["PING"].val)
	assert.Equal(t, "OK", got["SET"].val)
	assert.Equal(t, "3", got["GET"].val)
}

// TestFullPipesBothWays fills both pipes between Go and the worker at once: many big triggers (Go →
// worker) whose functions write and read big values with execute() and return big records (worker →
// Go). The worker's watchdog, which hands its reading role to another thread when one is stuck, is
// turned off: the design alone must not deadlock (Go's reader never waits for a write).
func TestFullPipesBothWays(t *testing.T) {
	t.Setenv("GEARS_STEAL_AFTER_MS", "3600000")
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
def big(x):
    execute('SET', x[2], x[1])
    v = execute('GET', x[2])
    return [len(v), v[-8:], x[1]]
GB('CommandReader').map(big).register(trigger='big', mode='async_local')
GB('CommandReader').map(big).register(trigger='bigsync', mode='sync')
`).Val())
	const calls, size = 16, 1 << 20
	out := make(chan callResult, calls)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: calls, ReadTimeout: 60 * time.Second})
	defer client.Close()
	for i := 0; i < calls; i++ {
		payload := strings.Repeat("x", size-8) + fmt.Sprintf("%08d", i)
		trigger := []string{"big", "bigsync"}[i%2]
		goCall(ctx, client, out, fmt.Sprint(i), "RG.TRIGGER", trigger, payload, fmt.Sprintf("key%d", i))
	}
	got := collect(t, ctx, out, calls)
	for i := 0; i < calls; i++ {
		r := got[fmt.Sprint(i)]
		require.NoError(t, r.err, "call %d", i)
		rec := r.val.([]any)
		require.Len(t, rec, 1)
		s := rec[0].(string)
		want := fmt.Sprintf("[%d, '%08d', '", size, i)
		require.True(t, strings.HasPrefix(s, want), "call %d: %.60s", i, s)
		require.Greater(t, len(s), size, "call %d: the record carries the payload back", i)
	}
}
