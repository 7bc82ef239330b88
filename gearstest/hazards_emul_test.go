package gearstest

// Hazards (hazards.go): what crashes or hangs a real RedisGears 1.2.13 is refused here with a HAZARD
// error. Emulator-only: NEVER run these against a real server, they would take it down.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdScript returns a script whose top level creates the file `started`, then waits until the file
// gate exists (the test creates it), then registers trigger. It holds RG.PYEXECUTE open for as long as
// the test wants, without any timing. The signals are files, not Redis commands: while a script's top
// level runs it holds Redis' main thread (the global lock), so no other client's command — a BLPOP's
// wake-up included — is answered until it ends, as on a real server.
func holdScript(started, gate, trigger string) string {
	return fmt.Sprintf("import os, time\nopen(%q, 'w').close()\nwhile not os.path.exists(%q):\n"+
		"    time.sleep(0.002)\nGB('CommandReader').register(trigger=%q)\n", started, gate, trigger)
}

// startHeld sends RG.PYEXECUTE holdScript(...) args... on its own client and returns once the script
// runs (it created its `started` file); open the gate to let it finish, then read its reply from the
// channel.
func startHeld(t *testing.T, ctx context.Context, srv *Server, trigger string, args ...any) (gate string, reply <-chan error) {
	t.Helper()
	dir := t.TempDir()
	gate, started := filepath.Join(dir, "gate"), filepath.Join(dir, "started")
	rdb := newRDB(t, srv.Addr(), 2)
	require.NoError(t, rdb.Ping(ctx).Err()) // connected (HELLO waits for the global lock) before the script holds it
	ch := make(chan error, 1)
	go func() {
		ch <- rdb.Do(ctx, append([]any{"RG.PYEXECUTE", holdScript(started, gate, trigger)}, args...)...).Err()
	}()
	for {
		if _, err := os.Stat(started); err == nil {
			return gate, ch
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the script never started: %v", ctx.Err())
		case err := <-ch:
			t.Fatalf("the script ended before it started waiting: %v", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func openGate(t *testing.T, gate string) {
	t.Helper()
	require.NoError(t, os.WriteFile(gate, nil, 0o600))
}

func hazardIDs(srv *Server) []string {
	var ids []string
	for _, e := range srv.Hazards() {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestHazardK1ConcurrentPyExecuteOfOneSession(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	const k1 = "HAZARD concurrent RG.PYEXECUTE of session 's1': this crashes RedisGears 1.2.13 (SIGSEGV)"

	require.NoError(t, rdb.Ping(ctx).Err()) // connected before the lock is held
	gate, first := startHeld(t, ctx, srv, "t1", "ID", "s1")
	// While the first is in flight, another of the same id is refused at once, whatever it asks…
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='t2')", "ID", "s1").Err(), k1)
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s1", "UPGRADE").Err(), k1)
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s9", "REPLACE_WITH", "s1").Err(), k1)
	// …and the first is not disturbed.
	openGate(t, gate)
	require.NoError(t, <-first)
	require.Equal(t, []any{"['t1']"}, rdb.Do(ctx, "RG.TRIGGER", "t1").Val())
	require.Equal(t, []string{"K1", "K1", "K1"}, hazardIDs(srv))
	for _, e := range srv.Hazards() {
		assert.Equal(t, k1, e.Text)
		assert.Equal(t, "gears-spec.md §8.1 K1, §8 'Crash hazard: concurrent RG.PYEXECUTE of one session id'", e.Evidence)
	}

	// An UPGRADE in flight: a creation of the same id is refused too; another session id is not.
	gate, first = startHeld(t, ctx, srv, "t3", "ID", "s1", "UPGRADE")
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s1").Err(), k1)
	other := make(chan error, 1)
	go func() {
		other <- rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='o')", "ID", "s2").Err()
	}()
	openGate(t, gate)
	require.NoError(t, <-first)
	require.NoError(t, <-other) // it waited for the lock, and ran
	require.Len(t, srv.Hazards(), 4)

	// REPLACE_WITH marks both ids: the old one and the new one.
	gate, first = startHeld(t, ctx, srv, "t4", "ID", "s3", "REPLACE_WITH", "s1")
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s1", "UPGRADE").Err(), k1)
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s3").Err(),
		"HAZARD concurrent RG.PYEXECUTE of session 's3': this crashes RedisGears 1.2.13 (SIGSEGV)")
	openGate(t, gate)
	require.NoError(t, <-first)
	require.Len(t, srv.Hazards(), 6)

	// Sequential ones on one connection, and ones without ID, are not hazards.
	c := rdb.Conn()
	t.Cleanup(func() { _ = c.Close() })
	for i := 0; i < 3; i++ {
		require.NoError(t, c.Do(ctx, "RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').register(trigger='u%d')", i), "ID", "s4", "UPGRADE").Err())
		require.NoError(t, c.Do(ctx, "RG.PYEXECUTE", "x = 1").Err())
	}
	require.Len(t, srv.Hazards(), 6)
	raw := rdb.Do(ctx, "INFO", "gearstest").Val().(string)
	require.Equal(t, "# gearstest\r\nhazards:6\r\nhazards_C1:0\r\nhazards_C2:0\r\nhazards_C3:0\r\nhazards_C4:0\r\n"+
		"hazards_C5:0\r\nhazards_C6:0\r\nhazards_C7:0\r\nhazards_H1:0\r\nhazards_K1:6\r\nhazards_K2:0\r\n"+
		"events_restart_queued:0\r\nevents_restart_dropped:0\r\nevents_restart_waiting:0\r\n", raw)
}

func TestHazardK2ExecuteFromAScriptThread(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	// The exception is raised in the thread; uncaught there, the script itself still succeeds.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import threading\n"+
		"th = threading.Thread(target=lambda: execute('SET', 'a', '1'))\nth.start()\nth.join()\n", "ID", "k2").Val())
	require.Equal(t, redis.Nil, rdb.Get(ctx, "a").Err())
	// In a registered function: execute() and atomic() raise in the thread; futures still resolve.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import threading
def f(x):
    fut = gearsFuture()
    def work():
        out = []
        for fn in (lambda: execute('GET', 'a'), lambda: atomic().__enter__()):
            try:
                fn()
            except Exception as e:
                out.append(str(e))
        fut.continueRun(out)
    threading.Thread(target=work).start()
    return fut
GB('CommandReader').map(f).register(trigger='k2', mode='async_local', convertToStr=False)
`).Val())
	want := func(what string) string {
		return "HAZARD " + what + " from a thread the script started: this hangs RedisGears 1.2.13 (GIL vs Redis lock); " +
			"resolve a gearsFuture from the thread and do the Redis work in the next step"
	}
	v, err := rdb.Do(ctx, "RG.TRIGGER", "k2").Result()
	require.NoError(t, err)
	require.Len(t, v, 1)
	got := v.([]any)[0].([]any)
	require.Len(t, got, 2)
	require.True(t, strings.HasPrefix(got[0].(string), "HAZARD execute() in session '"), got[0])
	require.True(t, strings.HasPrefix(got[1].(string), "HAZARD atomic() in session '"), got[1])
	evs := srv.Hazards()
	require.Equal(t, []string{"K2", "K2", "K2"}, hazardIDs(srv))
	require.Equal(t, want("execute() in session 'k2'"), evs[0].Text)
	require.Equal(t, got[0], evs[1].Text)
	require.Equal(t, got[1], evs[2].Text)
}

func TestHazardC1NetworkTest(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	const c1 = "HAZARD RG.NETWORKTEST outside a cluster: this crashes RedisGears 1.2.13 (SIGSEGV)"
	require.EqualError(t, rdb.Do(ctx, "RG.NETWORKTEST").Err(), c1)
	// execute() of it too
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: execute('RG.NETWORKTEST'))"+
		".register(trigger='nt', mode='sync')").Val())
	err := rdb.Do(ctx, "RG.TRIGGER", "nt").Err()
	require.Error(t, err)
	require.Contains(t, err.Error(), "gears.error: "+c1)
	require.Equal(t, []string{"C1", "C1"}, hazardIDs(srv))
}

func TestHazardC2C3C4ReplicationCommandsInAFunction(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "def f(x):\n    return execute(*x[1:])\n"+
		"GB('CommandReader').map(f).register(trigger='s', mode='sync')\n"+
		"GB('CommandReader').map(f).register(trigger='a', mode='async')\n"+
		"GB('CommandReader').map(f).register(trigger='l', mode='async_local')\n").Val())
	cases := []struct {
		args []any
		text string
	}{
		{[]any{"WAIT", "1", "0"}, "HAZARD execute('WAIT') in a gear function: this crashes RedisGears 1.2.13 (assertion: blocked client)"},
		{[]any{"sync"}, "HAZARD execute('SYNC') in a gear function: this crashes RedisGears 1.2.13"},
		{[]any{"PSYNC", "?", "-1"}, "HAZARD execute('PSYNC') in a gear function: this crashes RedisGears 1.2.13"},
	}
	var want []string
	for _, trig := range []string{"s", "a", "l"} {
		for _, c := range cases {
			require.EqualError(t, rdb.Do(ctx, append([]any{"RG.TRIGGER", trig}, c.args...)...).Err(), c.text, "%s %v", trig, c.args)
			want = append(want, c.text)
		}
	}
	var got []string
	for _, e := range srv.Hazards() {
		got = append(got, e.Text)
	}
	require.Equal(t, want, got)
	// The top level of a script too.
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "execute('WAIT', '0', '0')").Err(), cases[0].text)
}

func TestHazardC5ClientKillOfTheSyncCaller(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "def f(x):\n    return execute('CLIENT', 'KILL', *x[1:])\n"+
		"GB('CommandReader').map(f).register(trigger='s', mode='sync')\n"+
		"GB('CommandReader').map(f).register(trigger='a', mode='async')\n").Val())
	c := rdb.Conn()
	t.Cleanup(func() { _ = c.Close() })
	id := c.ClientID(ctx).Val()
	require.Positive(t, id)
	sid := fmt.Sprint(id)
	kill := func(trig string, args ...any) error {
		return c.Do(ctx, append([]any{"RG.TRIGGER", trig}, args...)...).Err()
	}
	text := func(args string) string {
		return "HAZARD execute('CLIENT', 'KILL', " + args + ") can kill the caller of a sync execution: this crashes RedisGears 1.2.13"
	}
	require.EqualError(t, kill("s", "ID", sid), text("'ID', '"+sid+"'"))
	require.EqualError(t, kill("s", "ADDR", "127.0.0.1:1"), text("'ADDR', '127.0.0.1:1'"))
	require.EqualError(t, kill("s", "127.0.0.1:1"), text("'127.0.0.1:1'"))
	require.EqualError(t, kill("s", "USER", "default", "SKIPME", "no"), text("'USER', 'default', 'SKIPME', 'no'"))
	require.Equal(t, []string{"C5", "C5", "C5", "C5"}, hazardIDs(srv))
	// Another client's id, a TYPE the caller cannot have, async mode: left to the data store.
	for _, args := range [][]any{{"s", "ID", fmt.Sprint(id + 1000)}, {"s", "TYPE", "master"}, {"a", "ID", sid}} {
		err := kill(args[0].(string), args[1:]...)
		if err != nil {
			require.NotContains(t, err.Error(), "HAZARD", "%v", args)
		}
	}
	require.Len(t, srv.Hazards(), 4)
}

func TestHazardC6DeepReply(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "def f(x):\n    r = 'x'\n    for i in range(int(x[1])):\n"+
		"        r = [r]\n    return r\nGB('CommandReader').map(f).register(trigger='deep', convertToStr=False)\n").Val())
	// The bound itself is fine (and deeper than the worker's recursive encoder goes).
	v, err := rdb.Do(ctx, "RG.TRIGGER", "deep", "10000").Result()
	require.NoError(t, err)
	for i := 0; i < 10000; i++ {
		a, ok := v.([]any)
		require.True(t, ok && len(a) == 1, "level %d: %#v", i, v)
		v = a[0]
	}
	require.Equal(t, []any{"x"}, v)
	require.Empty(t, srv.Hazards())
	require.EqualError(t, rdb.Do(ctx, "RG.TRIGGER", "deep", "10001").Err(),
		"HAZARD a reply nested more than 10000 deep: this crashes RedisGears 1.2.13 (stack overflow while writing the reply)")
	require.Equal(t, []string{"C6"}, hazardIDs(srv))
}

func TestHazardC7RecursionLimit(t *testing.T) {
	srv := Run(t, AllowHazards())
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.EqualError(t, rdb.Do(ctx, "RG.PYEXECUTE", "import sys\nsys.setrecursionlimit(1000000)").Err(),
		"HAZARD sys.setrecursionlimit(1000000) above 10000: recursion that deep crashes RedisGears 1.2.13 (C stack overflow)")
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "import sys\nsys.setrecursionlimit(10000)\nsys.setrecursionlimit(1000)").Val())
	require.Equal(t, []string{"C7"}, hazardIDs(srv))
}

// lineWaiter is a server log that signals when a line containing want was written.
type lineWaiter struct {
	want string
	once sync.Once
	seen chan struct{}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.want)) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func TestHazardH1AbortOfASpinningAsyncDef(t *testing.T) {
	lw := &lineWaiter{want: "GEARS: spinning", seen: make(chan struct{})}
	srv := Run(t, AllowHazards(), WithLogger(lw))
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, []any{"OK"}, rdb.Do(ctx, "RG.CONFIGSET", "ExecutionMaxIdleTime", "500").Val())
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "async def f(x):\n    log('spinning')\n    while True:\n        pass\n"+
		"GB('CommandReader').map(f).register(trigger='spin', mode='async')\n").Val())
	res := make(chan any, 1)
	go func() {
		v, err := newRDB(t, srv.Addr(), 2).Do(ctx, "RG.TRIGGER", "spin").Result()
		if err != nil {
			res <- err
			return
		}
		res <- v
	}()
	select {
	case <-lw.seen: // log() waits for no answer: f now spins
	case <-ctx.Done():
		t.Fatal("the function did not start")
	}
	execs := rdb.Do(ctx, "RG.DUMPEXECUTIONS").Val().([]any)
	require.Len(t, execs, 1)
	id := execs[0].([]any)[1].(string)
	changed := srv.hazardsChanged()
	require.Equal(t, "OK", rdb.Do(ctx, "RG.ABORTEXECUTION", id).Val())
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no hazard reported")
	}
	require.Equal(t, []string{"H1"}, hazardIDs(srv))
	require.Equal(t, "HAZARD RG.ABORTEXECUTION of execution '"+id+"' while its async def function runs without yielding: "+
		"on RedisGears 1.2.13 the function keeps running and every other async def function hangs", srv.Hazards()[0].Text)
	require.Equal(t, []any{}, <-res) // the caller gets [], as on the real server
}

// execute() of MONITOR, SUBSCRIBE and CLIENT REPLY gives a clean error on the real server: not a hazard.
// (MONITOR and SUBSCRIBE: Redis 7.0's texts for RedisModule_Call's client; CLIENT REPLY: the data store's
// error, a clean one too.)
func TestExecuteOfConnectionCommandsIsACleanError(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "def f(x):\n    try:\n        return str(execute(*x[1:]))\n"+
		"    except Exception as e:\n        return 'error: ' + str(e)\n"+
		"GB('CommandReader').map(f).register(trigger='c', mode='sync')\n").Val())
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"MONITOR"}, "error: MONITOR isn't allowed for DENY BLOCKING client\r\n"},
		{[]any{"subscribe", "ch"}, "error: SUBSCRIBE isn't allowed for a DENY BLOCKING client\r\n"},
		{[]any{"PSUBSCRIBE", "ch*"}, "error: PSUBSCRIBE isn't allowed for a DENY BLOCKING client\r\n"},
		{[]any{"CLIENT", "REPLY", "OFF"}, "error: ERR unknown subcommand 'REPLY'. Try CLIENT HELP.\r\n"},
	} {
		require.Equal(t, []any{tc.want}, rdb.Do(ctx, append([]any{"RG.TRIGGER", "c"}, tc.args...)...).Val(), "%v", tc.args)
	}
	require.Equal(t, "PONG", rdb.Ping(ctx).Val())
	require.Empty(t, srv.Hazards())
}

// fakeTB records what Run reports to its test.
type fakeTB struct {
	testing.TB
	real     *testing.T
	cleanups []func()
	errs     []string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Log(args ...any)                {}
func (f *fakeTB) Logf(format string, a ...any)   {}
func (f *fakeTB) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(format, a...)) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.real.Fatalf(format, a...) }
func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestRunFailsTheTestOnHazards(t *testing.T) {
	ctx := ctxT(t)
	for _, allow := range []bool{false, true} {
		tb := &fakeTB{real: t}
		var opts []Option
		if allow {
			opts = append(opts, AllowHazards())
		}
		srv := Run(tb, opts...)
		rdb := newRDB(t, srv.Addr(), 2)
		require.Equal(t, "PONG", rdb.Ping(ctx).Val())
		require.Error(t, rdb.Do(ctx, "RG.NETWORKTEST").Err())
		require.Error(t, rdb.Do(ctx, "RG.PYEXECUTE", "import sys\nsys.setrecursionlimit(20000)").Err())
		require.Empty(t, tb.errs)
		tb.end()
		if allow {
			require.Empty(t, tb.errs)
			continue
		}
		require.Equal(t, []string{"gearstest: 2 hazard(s) during the test; each would crash or hang a real RedisGears 1.2.13 " +
			"(use gearstest.AllowHazards() if the test means it):\n" +
			"  C1: HAZARD RG.NETWORKTEST outside a cluster: this crashes RedisGears 1.2.13 (SIGSEGV) " +
			"[real outcome: crash (SIGSEGV in Cluster_MsgArrive); gears-spec.md §8.1 C1]\n" +
			"  C7: HAZARD sys.setrecursionlimit(20000) above 10000: recursion that deep crashes RedisGears 1.2.13 (C stack overflow) " +
			"[real outcome: crash (stack overflow; with the default limit: a RecursionError reply); gears-spec.md §8.1 C7]"}, tb.errs)
	}
	// No hazard, no error.
	tb := &fakeTB{real: t}
	srv := Run(tb)
	require.Equal(t, "PONG", newRDB(t, srv.Addr(), 2).Ping(ctx).Val())
	tb.end()
	require.Empty(t, tb.errs)
}

// The hazard list is complete: every entry has its evidence, outcome and text.
func TestHazardTable(t *testing.T) {
	seen := map[string]bool{}
	for _, h := range hazardTable {
		assert.False(t, seen[h.id], h.id)
		seen[h.id] = true
		assert.True(t, strings.HasPrefix(h.format, "HAZARD "), h.id)
		assert.Contains(t, h.evidence, "gears-spec.md §8.1 "+h.id)
		assert.NotEmpty(t, h.action, h.id)
		assert.NotEmpty(t, h.outcome, h.id)
		assert.NotEmpty(t, h.detected, h.id)
	}
	for _, id := range []string{"K1", "K2", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "H1"} {
		assert.True(t, seen[id], id)
	}
}
