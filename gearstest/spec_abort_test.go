package gearstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heldFutures is the Python source of a box of gearsFutures that the test resolves when it chooses:
// wait(x) returns a future it keeps in a module of sys.modules (one interpreter-wide object, reachable
// from every registration: callbacks are serialized by value, so a module-level list would not be
// shared), held() tells how many wait, release(x) resolves them all with x[1] and tells how many it
// resolved. Nothing touches Redis from a thread (gears-spec §8, deadlock hazard); no sleeps.
func heldFutures(box string) string {
	return fmt.Sprintf(`import sys, types
BOX = %s
def box():
    m = sys.modules.get(BOX)
    if m is None:
        m = types.ModuleType(BOX)
        m.futs = []
        sys.modules[BOX] = m
    return m
def wait(x):
    f = gearsFuture()
    box().futs.append(f)
    return f
def held(x):
    return str(len(box().futs))
def release(x):
    futs = box().futs
    n = 0
    while futs:
        try:
            futs[0].continueRun(x[1])
        except Exception:
            break  # not returned by its step yet: the caller tries again
        futs.pop(0)
        n += 1
    return str(n)
`, pyQuote(box))
}

// futureScript registers trigger trig (mode) whose execution waits on a held future, and the sync
// triggers held and release of heldFutures.
func futureScript(box, trig, mode, held, release string) string {
	return heldFutures(box) + fmt.Sprintf(`GB('CommandReader').map(wait).register(trigger=%s, mode=%s)
GB('CommandReader').map(held).register(trigger=%s, mode='sync')
GB('CommandReader').map(release).register(trigger=%s, mode='sync')
`, pyQuote(trig), pyQuote(mode), pyQuote(held), pyQuote(release))
}

// startWaitingTrigger calls trig in the background and returns once its execution waits on its future
// (held says so); the channel gets "<reply> <error>".
func startWaitingTrigger(t *testing.T, c *client, trig, held string, n int) <-chan string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		v, err := c.Do(context.Background(), "RG.TRIGGER", trig).Result()
		done <- fmt.Sprintf("%v %v", v, err)
	}()
	want := L(fmt.Sprint(n))
	waitFor(t, 30*time.Second, "the execution to wait on its future", func() bool {
		got, err := c.result("RG.TRIGGER", held)
		return err == nil && fmt.Sprint(got) == fmt.Sprint(want)
	})
	return done
}

// releaseAll resolves the held futures with value, retrying until n were resolved.
func releaseAll(t *testing.T, c *client, release, value string, n int) {
	t.Helper()
	left := n
	waitFor(t, 30*time.Second, "the futures to be resolved", func() bool {
		got := c.do("RG.TRIGGER", release, value)
		var k int
		_, err := fmt.Sscan(got.([]any)[0].(string), &k)
		require.NoError(t, err)
		left -= k
		return left <= 0
	})
}

// TestUnregisterAbortPending checks RG.UNREGISTER <id> ABORTPENDING on a registration whose execution
// waits on a gearsFuture (gears-spec §8): such an execution has started and cannot be aborted (the
// server logs "Failed aborting execution on unregister."), the registration is removed at once, and the
// caller still gets its result when the future is resolved.
func TestUnregisterAbortPending(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid, box := uniq(t, "s"), uniq(t, "box")
		trig, held, release := uniq(t, "t"), uniq(t, "held"), uniq(t, "release")
		c.registerScript(sid, futureScript(box, trig, "async_local", held, release))
		id := c.registrationByTrigger(trig)[1].(string)
		done := startWaitingTrigger(t, c, trig, held, 1)

		c.expectOK("RG.UNREGISTER", id, "abortPending")
		require.Nil(t, c.registration(id), "the registration is gone")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)

		releaseAll(t, c, release, "late", 1)
		select {
		case got := <-done:
			require.Equal(t, "[late] <nil>", got, "the waiting caller gets its result")
		case <-time.After(time.Minute):
			t.Fatal("the waiting trigger never replied")
		}
	})
}

// TestAbortExecutionOfTrigger checks RG.ABORTEXECUTION on a trigger execution waiting on a future
// (gears-spec 8.1): the caller gets [] (the records it had) and the registration counts it as aborted.
func TestAbortExecutionOfTrigger(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid, box := uniq(t, "s"), uniq(t, "box")
		trig, held, release := uniq(t, "t"), uniq(t, "held"), uniq(t, "release")
		c.registerScript(sid, futureScript(box, trig, "async_local", held, release))
		done := startWaitingTrigger(t, c, trig, held, 1)
		var running []string
		for _, e := range c.do("RG.DUMPEXECUTIONS").([]any) {
			ent := e.([]any)
			if ent[3] == "running" {
				running = append(running, ent[1].(string))
			}
		}
		require.Len(t, running, 1, "one running execution in RG.DUMPEXECUTIONS")
		c.expectOK("RG.ABORTEXECUTION", running[0])
		select {
		case got := <-done:
			require.Equal(t, "[] <nil>", got)
		case <-time.After(time.Minute):
			t.Fatal("the aborted trigger never replied")
		}
		data := c.registrationByTrigger(trig)[7].([]any)
		require.Equal(t, int64(1), field(t, data, "numAborted"))
		require.Equal(t, int64(0), field(t, data, "numSuccess"))
		require.Equal(t, int64(0), field(t, data, "numFailures"))
	})
}
