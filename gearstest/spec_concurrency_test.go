package gearstest_test

// Concurrency as the real server has it (issue 2, gears-spec.md §3.4): async and async_local triggers run
// concurrently, sync triggers one at a time, and a sync trigger or an atomic() block is not interleaved
// with other clients' commands. Overlap is observed inside the functions (a counter kept in Redis), never
// by timing the client.

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// overlapScript registers trigger trig running a function that counts itself in (key cur), records the
// highest count seen (key max) under atomic(), sleeps, then counts itself out.
func overlapScript(trig, mode, cur, max string, sleep float64) string {
	return fmt.Sprintf(`
import time
def f(x):
    with atomic():
        n = execute('incr', %[3]s)
        m = execute('get', %[4]s)
        if m is None or int(m) < n:
            execute('set', %[4]s, n)
    time.sleep(%[5]v)
    execute('decr', %[3]s)
    return 'done'
GB('CommandReader').map(f).register(trigger=%[1]s, mode=%[2]s)
`, pyQuote(trig), pyQuote(mode), pyQuote(cur), pyQuote(max), sleep)
}

// runOverlap fires n triggers at once from n connections and returns the highest concurrency observed.
func runOverlap(t *testing.T, c *client, mode string, n int, sleep float64) int {
	t.Helper()
	trig := uniq(t, "t")
	cur, max := uniq(t, "cur"), uniq(t, "max")
	t.Cleanup(func() { c.Del(testCtx(t), cur, max) })
	c.registerScript(uniq(t, "s"), overlapScript(trig, mode, cur, max, sleep))
	// Warm n pooled connections so the triggers leave together.
	parallelDo(n, func(int) { _ = c.Ping(testCtx(t)).Err() })
	var mu sync.Mutex
	var errs []error
	parallelDo(n, func(int) {
		v, err := c.result("RG.TRIGGER", trig)
		if err == nil && !matchEq(v, L("done")) {
			err = fmt.Errorf("reply %#v", v)
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	require.Empty(t, errs)
	c.expect("0", "GET", cur)
	got, err := strconv.Atoi(c.do("GET", max).(string))
	require.NoError(t, err)
	return got
}

func matchEq(got any, want any) bool { return matchValue(3, want, got, "$") == nil }

func TestAsyncTriggersRunConcurrently(t *testing.T) {
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	for _, mode := range []string{"async", "async_local"} {
		t.Run(mode, func(t *testing.T) {
			// A real RedisGears runs async steps on ExecutionThreads (3) threads, so at least 2 overlap there;
			// 20 × 0.3 s then take about 2 s instead of 6 s.
			got := runOverlap(t, c, mode, 20, 0.3)
			require.GreaterOrEqual(t, got, 2, "async triggers did not overlap")
		})
	}
}

func TestSyncTriggersRunOneAtATime(t *testing.T) {
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	require.Equal(t, 1, runOverlap(t, c, "sync", 10, 0.05))
}

// TestFutureTriggersOverlap resolves futures from threads: the waiting executions hold no execution
// thread, so all of them are pending at once on the real server too.
func TestFutureTriggersOverlap(t *testing.T) {
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	trig := uniq(t, "t")
	cur, max := uniq(t, "cur"), uniq(t, "max")
	t.Cleanup(func() { c.Del(testCtx(t), cur, max) })
	c.registerScript(uniq(t, "s"), fmt.Sprintf(`
import threading
import time
def start(x):
    with atomic():
        n = execute('incr', %[2]s)
        m = execute('get', %[3]s)
        if m is None or int(m) < n:
            execute('set', %[3]s, n)
    fut = gearsFuture()
    def resolve():
        time.sleep(0.5)
        fut.continueRun('slept')
    threading.Thread(target=resolve).start()
    return fut
def finish(v):
    execute('decr', %[2]s)
    return v
GB('CommandReader').map(start).map(finish).register(trigger=%[1]s, mode='async_local')
`, pyQuote(trig), pyQuote(cur), pyQuote(max)))
	const n = 20
	parallelDo(n, func(int) { _ = c.Ping(testCtx(t)).Err() })
	var mu sync.Mutex
	var bad []any
	parallelDo(n, func(int) {
		v, err := c.result("RG.TRIGGER", trig)
		if err != nil || !matchEq(v, L("slept")) {
			mu.Lock()
			bad = append(bad, fmt.Sprint(v, err))
			mu.Unlock()
		}
	})
	require.Empty(t, bad)
	c.expect("0", "GET", cur)
	got, err := strconv.Atoi(c.do("GET", max).(string))
	require.NoError(t, err)
	require.GreaterOrEqual(t, got, n/2, "futures did not wait concurrently")
}

// exclusionAttempt triggers trig (whose function writes "in" to k inside its exclusive section, waits,
// reads k back and writes "done-<value>"), lets sendWhile decide when the section is held, then sends
// SET k intruder from another client. It reports whether the attempt showed anything: the SET may have
// been applied before the section began (final value "done-in"), which proves nothing and is retried.
func exclusionAttempt(t *testing.T, c, other *client, trig, k string, sendWhile func()) (conclusive bool) {
	t.Helper()
	c.expectOK("SET", k, "before")
	var wg sync.WaitGroup
	var reply any
	var rerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		reply, rerr = c.result("RG.TRIGGER", trig)
	}()
	sendWhile()
	other.expectOK("SET", k, "intruder")
	wg.Wait()
	require.NoError(t, rerr)
	// Interleaving shows as the function reading the intruder's value.
	c.match(L("in"), reply, "value read inside the exclusive section")
	final := c.do("GET", k)
	if final == "done-in" {
		return false
	}
	require.Equal(t, "intruder", final, "the other client's SET was not applied after the section")
	return true
}

// TestAtomicExcludesOtherClients: a SET sent by another client while atomic() is held lands after the
// section, never inside it.
func TestAtomicExcludesOtherClients(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := uniq(t, "t")
		k, started := uniq(t, "k"), uniq(t, "started")
		t.Cleanup(func() { c.Del(testCtx(t), k, started) })
		c.registerScript(uniq(t, "s"), fmt.Sprintf(`
import time
def f(x):
    execute('set', %[2]s, '1')
    with atomic():
        execute('set', %[3]s, 'in')
        time.sleep(0.6)
        v = execute('get', %[3]s)
        execute('set', %[3]s, 'done-' + v)
    return v
GB('CommandReader').map(f).register(trigger=%[1]s, mode='async_local')
`, pyQuote(trig), pyQuote(started), pyQuote(k)))
		other := newTargetFromClient(c).newClient(t, c.proto)
		for attempt := 1; ; attempt++ {
			c.do("DEL", started)
			// GET is served while the function runs outside atomic(); once "started" is seen the
			// function enters atomic() at once, so the SET sent shortly after finds the section held.
			ok := exclusionAttempt(t, c, other, trig, k, func() {
				waitFor(t, 30*time.Second, "the function to start", func() bool {
					v, _ := other.result("GET", started)
					return v == "1"
				})
				time.Sleep(time.Duration(100*attempt) * time.Millisecond)
			})
			if ok {
				return
			}
			require.Less(t, attempt, 5, "the SET always landed before atomic() began; nothing was shown")
		}
	})
}

// TestSyncTriggerExcludesOtherClients: a sync trigger holds the server for its whole run, like the
// Redis main thread on a real server.
func TestSyncTriggerExcludesOtherClients(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := uniq(t, "t")
		k := uniq(t, "k")
		t.Cleanup(func() { c.Del(testCtx(t), k) })
		c.registerScript(uniq(t, "s"), fmt.Sprintf(`
import time
def f(x):
    execute('set', %[2]s, 'in')
    time.sleep(0.6)
    v = execute('get', %[2]s)
    execute('set', %[2]s, 'done-' + v)
    return v
GB('CommandReader').map(f).register(trigger=%[1]s, mode='sync')
`, pyQuote(trig), pyQuote(k)))
		other := newTargetFromClient(c).newClient(t, c.proto)
		for attempt := 1; ; attempt++ {
			ok := exclusionAttempt(t, c, other, trig, k, func() {
				time.Sleep(time.Duration(150*attempt) * time.Millisecond)
			})
			if ok {
				return
			}
			require.Less(t, attempt, 4, "the SET always landed before the trigger began; nothing was shown")
		}
	})
}

// newTargetFromClient returns the target a client talks to (for a second, independent client).
func newTargetFromClient(c *client) *target { return &target{addr: c.Options().Addr} }
