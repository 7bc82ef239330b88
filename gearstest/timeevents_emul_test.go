package gearstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func teCount(s *Server) int {
	s.ev.te.mu.Lock()
	defer s.ev.te.mu.Unlock()
	return len(s.ev.te.byID)
}

// TestTimeEventWithoutKeyOutlivesItsSession: a timer without a key (a keyName that is not a str is
// ignored) keeps running after its session is unregistered: the real timer holds the callback and a
// copy of the session, and only its key could stop it.
func TestTimeEventWithoutKeyOutlivesItsSession(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
GB('CommandReader').register(trigger='te_owner')
execute('SET', 'r', str(registerTE(1, lambda: execute('INCR', 'n'), 5)))
`, "ID", "owner").Val())
	require.Equal(t, "True", rdb.Get(ctx, "r").Val())
	require.Equal(t, int64(0), rdb.Exists(ctx, "5").Val())
	regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 1)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.UNREGISTER", regs[0].([]any)[1]).Val())
	waitForCalls(t, rdb, "n", 2)
	require.Equal(t, 1, teCount(srv))
}

// TestTimeEventErrorIsLogged: the warning of TimeEvent_Callback, and the timer is gone.
func TestTimeEventErrorIsLogged(t *testing.T) {
	w := &logWatch{want: "Error occured on TimeEvent_Callback, error=", hit: make(chan struct{})}
	srv := Run(t, WithLogger(w))
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "registerTE(1, lambda: 1 / 0, 'tk')").Val())
	select {
	case <-w.hit:
	case <-ctx.Done():
		t.Fatal("no warning for the failed callback")
	}
	waitUntil(t, time.Minute, "the timer to stop", func() bool { return teCount(srv) == 0 })
	w.mu.Lock()
	require.Contains(t, w.buf.String(), "ZeroDivisionError")
	w.mu.Unlock()
	require.Equal(t, int64(1), rdb.Exists(ctx, "tk").Val())
}

// TestTimeEventAfterWorkerRestart: a timer created by the top level of a session that is restored
// gets its callback back; one whose callback cannot be restored (a script without registrations is
// not a session to restore) stops, with a log line.
func TestTimeEventAfterWorkerRestart(t *testing.T) {
	w := &logWatch{want: "could not be restored", hit: make(chan struct{})}
	srv := Run(t, WithLogger(w))
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
GB('CommandReader').register(trigger='keep')
registerTE(1, lambda: execute('INCR', 'na'), 'ka')
`, "ID", "a").Val())
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "registerTE(1, lambda: execute('INCR', 'nb'), 'kb')").Val())
	waitUntil(t, time.Minute, "both timers", func() bool {
		return rdb.Exists(ctx, "na", "nb").Val() == 2
	})
	require.NoError(t, srv.KillWorker())
	select {
	case <-w.hit:
	case <-ctx.Done():
		t.Fatal("no log line for the timer that could not be restored")
	}
	waitUntil(t, time.Minute, "the lost timer to be removed", func() bool { return teCount(srv) == 1 })
	waitForCalls(t, rdb, "na", 2) // the restored timer
	// The restore's registerTE found the key: it created no second timer.
	require.Equal(t, 1, teCount(srv))
}

// TestTimeEventOfAnUpgradedSessionAtRestart: a timer created by an older version of a session keeps
// its code after the UPGRADE (the new version's registerTE on the same key returns False), and a
// restore, which re-runs only the new version, does not give it the new version's callback: it
// stops, with the log line.
func TestTimeEventOfAnUpgradedSessionAtRestart(t *testing.T) {
	w := &logWatch{want: "could not be restored", hit: make(chan struct{})}
	srv := Run(t, WithLogger(w))
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	script := `
GB('CommandReader').register(trigger='keep')
execute('SET', 'r', str(registerTE(1, lambda: execute('INCR', %q), 'k')))
`
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", fmt.Sprintf(script, "n1"), "ID", "a").Val())
	require.Equal(t, "True", rdb.Get(ctx, "r").Val())
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", fmt.Sprintf(script, "n2"), "ID", "a", "UPGRADE").Val())
	require.Equal(t, "False", rdb.Get(ctx, "r").Val())
	waitUntil(t, time.Minute, "the first version's timer", func() bool { return rdb.Exists(ctx, "n1").Val() == 1 })
	require.NoError(t, srv.KillWorker())
	select {
	case <-w.hit:
	case <-ctx.Done():
		t.Fatal("no log line for the timer of the old version")
	}
	waitUntil(t, time.Minute, "the timer to be removed", func() bool { return teCount(srv) == 0 })
	require.Equal(t, int64(0), rdb.Exists(ctx, "n2").Val())
}

// TestTimeEventPeriodZero: with 0 seconds the real timer fires again on each event-loop turn; here
// each call follows the previous one, other clients' commands run in between, and deleting the key
// stops it.
func TestTimeEventPeriodZero(t *testing.T) {
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "registerTE(0, lambda: execute('INCR', 'n'), 'k')").Val())
	waitUntil(t, time.Minute, "many calls", func() bool {
		n, _ := rdb.Get(ctx, "n").Int()
		return n >= 50
	})
	require.Equal(t, int64(1), rdb.Del(ctx, "k").Val())
	waitUntil(t, time.Minute, "the timer to stop", func() bool { return teCount(srv) == 0 })
	stopped := rdb.Get(ctx, "n").Val()
	require.Equal(t, "PONG", rdb.Ping(ctx).Val())
	require.Equal(t, stopped, rdb.Get(ctx, "n").Val())
}

// waitForCalls waits until the counter a timer's callback INCRs at key grew by n more calls.
func waitForCalls(t *testing.T, rdb *redis.Client, key string, n int) {
	t.Helper()
	ctx := ctxT(t)
	before, _ := rdb.Get(ctx, key).Int()
	waitUntil(t, time.Minute, fmt.Sprintf("%d more calls counted at %s", n, key), func() bool {
		c, _ := rdb.Get(ctx, key).Int()
		return c >= before+n
	})
}
