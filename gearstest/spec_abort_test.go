package gearstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowFutureScript registers trigger trig whose execution waits 2 s on a future.
func slowFutureScript(trig string) string {
	return fmt.Sprintf(`import threading, time
def f(x):
    fut = gearsFuture()
    def later():
        time.sleep(2)
        try:
            fut.continueRun('late')
        except Exception:
            pass
    threading.Thread(target=later).start()
    return fut
GB('CommandReader').map(f).register(trigger=%s, mode='async_local')`, pyQuote(trig))
}

// startSlowTrigger calls trig in the background and waits until its execution is running.
func startSlowTrigger(t *testing.T, c *client, trig string) <-chan string {
	done := make(chan string, 1)
	go func() {
		v, err := c.Do(context.Background(), "RG.TRIGGER", trig).Result()
		done <- fmt.Sprintf("%v %v", v, err)
	}()
	require.Eventually(t, func() bool {
		reg := c.registrationByTrigger(trig)
		return reg != nil && fmt.Sprint(field(t, reg[7].([]any), "numTriggered")) == "1"
	}, 5*time.Second, 10*time.Millisecond)
	return done
}

// TestUnregisterAbortPending checks RG.UNREGISTER <id> ABORTPENDING (spec §1.4): the registration's
// running executions are aborted, and their callers get the records they had (none).
func TestUnregisterAbortPending(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid, trig := uniq(t, "s"), uniq(t, "t")
		ss := c.registerScript(sid, slowFutureScript(trig))
		done := startSlowTrigger(t, c, trig)
		start := time.Now()
		c.expectOK("RG.UNREGISTER", ss.regs[0], "abortPending")
		select {
		case got := <-done:
			require.Equal(t, "[] <nil>", got)
			require.Less(t, time.Since(start), 1500*time.Millisecond, "the caller waited for the future instead of being aborted")
		case <-time.After(10 * time.Second):
			t.Fatal("the aborted trigger never replied")
		}
	})
}

// TestAbortExecutionOfTrigger checks RG.ABORTEXECUTION on a running trigger execution: the caller
// gets the records it had and the registration counts the execution as aborted.
func TestAbortExecutionOfTrigger(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid, trig := uniq(t, "s"), uniq(t, "t")
		c.registerScript(sid, slowFutureScript(trig))
		done := startSlowTrigger(t, c, trig)
		var running string
		for _, e := range c.do("RG.DUMPEXECUTIONS").([]any) {
			ent := e.([]any)
			if ent[3] == "running" {
				running = ent[1].(string)
			}
		}
		require.NotEmpty(t, running, "no running execution in RG.DUMPEXECUTIONS")
		c.expectOK("RG.ABORTEXECUTION", running)
		select {
		case got := <-done:
			require.Equal(t, "[] <nil>", got)
		case <-time.After(10 * time.Second):
			t.Fatal("the aborted trigger never replied")
		}
		data := c.registrationByTrigger(trig)[7].([]any)
		require.Equal(t, int64(1), field(t, data, "numAborted"))
		require.Equal(t, int64(0), field(t, data, "numSuccess"))
		require.Equal(t, int64(0), field(t, data, "numFailures"))
	})
}
