package gearstest_test

// registerTE (gears-spec §2.5): RedisGears v1.2.13 plugins/python/redisgears_python.c gearsTimeEvent
// and TimeEvent_Callback, pytest/test_basics.py testTimeEvent*, pytest/test_errors.py
// testTimeEventWith*. Only keyed timers are created here: a timer without a key cannot be stopped on
// a real server, which these tests may share (GEARS_ADDR). Firings are observed through counters the
// callbacks write; that a timer stopped is shown by a second, witness timer of the same period that
// fires twice, recording the counter each time, while the stopped timer would have fired in between.

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTimeEventArgumentErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, tc := range []struct{ script, last string }{
			{"registerTE(2, 2)", "gears.error: callback must be a function"},
			{"registerTE('2', lambda: None)", "gears.error: time argument must be a long"},
			{"registerTE(2)", "gears.error: not enough arguments for time event"},
			{"registerTE(2, lambda: None, 'k', 4)", "gears.error: not enough arguments for time event"},
			{"registerTE(2, len, 'k')", "gears.error: callback must be a function"},
			{"registerTE(2, lambda: None, keyName='k')", "TypeError: registerTimeEvent() takes no keyword arguments"},
		} {
			c.match(tracebackErr(tc.last), c.doErr("RG.PYEXECUTE", tc.script), tc.script)
		}
	})
}

// TestTimeEventFromAThread: a thread the script started has no session (ptctx->currSession).
func TestTimeEventFromAThread(t *testing.T) {
	c := newTarget(t).newClient(t, 3)
	res, key := uniq(t, "res"), uniq(t, "tek")
	c.cleanupKeys(res, key)
	c.expectOK("RG.PYEXECUTE", fmt.Sprintf(`
import threading
out = []
def create():
    try:
        out.append(str(registerTE(1, lambda: None, %s)))
    except Exception as e:
        out.append(str(e))
th = threading.Thread(target=create)
th.start()
th.join()
execute('SET', %s, out[0])
`, pyQuote(key), pyQuote(res)))
	c.expect("can not create time event on a python created thread", "GET", res)
	c.expect(0, "EXISTS", key)
}

// witness registers a timer of period seconds on key wkey that appends the value of counter to the
// list wlist at each call, waits until it has been called twice and returns what it recorded.
func (c *client) witness(period int, wkey, counter, wlist string) []any {
	c.t.Helper()
	c.cleanupKeys(wkey, wlist)
	c.expectOK("RG.PYEXECUTE", fmt.Sprintf("registerTE(%d, lambda: execute('RPUSH', %s, str(execute('GET', %s))), %s)",
		period, pyQuote(wlist), pyQuote(counter), pyQuote(wkey)))
	waitFor(c.t, time.Minute, "two calls of the witness timer", func() bool {
		n, _ := c.LLen(testCtx(c.t), wlist).Result()
		return n >= 2
	})
	c.expect(1, "DEL", wkey)
	return c.do("LRANGE", wlist, 0, 1).([]any)
}

// TestTimeEventKeyHoldsTheTimer: registerTE returns True, creates the key, fires every period with
// no arguments, returns False for a key that exists, and deleting the key stops the timer.
func TestTimeEventKeyHoldsTheTimer(t *testing.T) {
	c := newTarget(t).newClient(t, 3)
	key, n, res := uniq(t, "tek"), uniq(t, "n"), uniq(t, "res")
	c.cleanupKeys(key, n, res)
	c.expectOK("RG.PYEXECUTE", fmt.Sprintf(`
def tick(*args):
    execute('INCR', %[1]s)
    execute('SET', %[1]s + ':args', str(len(args)))
execute('SET', %[2]s, str(registerTE(1, tick, %[3]s)) + ',' + str(registerTE(1, tick, %[3]s)))
`, pyQuote(n), pyQuote(res), pyQuote(key)))
	c.cleanupKeys(n + ":args")
	c.expect("True,False", "GET", res)
	c.expect(1, "EXISTS", key)
	waitFor(t, time.Minute, "two calls of the timer", func() bool {
		v, _ := c.Get(testCtx(t), n).Int()
		return v >= 2
	})
	c.expect("0", "GET", n+":args")
	// A key that exists (of any type) refuses a timer.
	other := uniq(t, "other")
	c.cleanupKeys(other)
	c.expect(1, "HSET", other, "f", "v")
	c.expectOK("RG.PYEXECUTE", fmt.Sprintf("execute('SET', %s, str(registerTE(1, lambda: None, %s)))", pyQuote(res), pyQuote(other)))
	c.expect("False", "GET", res)

	c.expect(1, "DEL", key)
	stopped := c.do("GET", n)
	w := c.witness(1, uniq(t, "wk"), n, uniq(t, "wl"))
	require.Equal(t, []any{stopped, stopped}, w, "the timer was called after its key was deleted")
}

// TestTimeEventErrorStopsIt: a callback that raises is not called again (TimeEvent_Callback creates
// the next timer only after a call that succeeded); its key stays.
func TestTimeEventErrorStopsIt(t *testing.T) {
	c := newTarget(t).newClient(t, 3)
	key, n := uniq(t, "tek"), uniq(t, "n")
	c.cleanupKeys(key, n)
	c.expectOK("RG.PYEXECUTE", fmt.Sprintf(`
def tick():
    execute('INCR', %s)
    raise Exception('boom')
registerTE(1, tick, %s)
`, pyQuote(n), pyQuote(key)))
	waitFor(t, time.Minute, "the first call", func() bool { return c.Get(testCtx(t), n).Val() == "1" })
	w := c.witness(1, uniq(t, "wk"), n, uniq(t, "wl"))
	require.Equal(t, []any{"1", "1"}, w, "the timer was called again after its callback raised")
	c.expect(1, "EXISTS", key)
}
