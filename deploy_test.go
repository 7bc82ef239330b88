package gears_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// twoTriggers is a session script with two CommandReader registrations answering "<tag>:a"/"<tag>:b".
func twoTriggers(e *gEnv, tag string) string {
	return fmt.Sprintf(`GB('CommandReader').map(lambda x: '%[1]s:a').register(trigger='%[2]s', mode='sync')
GB('CommandReader').map(lambda x: '%[1]s:b').register(trigger='%[3]s', mode='sync')
`, tag, e.name("a"), e.name("b"))
}

func TestDeploy(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		s := gears.Session{ID: e.name("deploy"), Source: twoTriggers(e, "v1"), Description: "audit"}
		t.Cleanup(func() { unregisterSession(e, s.ID) })

		d, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		assert.Equal(t, gears.Created, d.Action)
		require.Len(t, d.RegistrationIDs, 2)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))
		info := sessionInfo(t, e, s.ID)
		assert.Equal(t, d.RegistrationIDs, info.RegistrationIDs)
		assert.Regexp(t, `^audit gears:[0-9a-f]{32}$`, info.Description)
		assert.Equal(t, []any{"v1:a"}, trigger(t, e, e.name("a")))
		assert.Equal(t, []any{"v1:b"}, trigger(t, e, e.name("b")))

		// The same code again: nothing is sent.
		again, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		assert.Equal(t, gears.Deployment{Action: gears.Unchanged, RegistrationIDs: d.RegistrationIDs}, again)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))

		// Other code: one atomic UPGRADE; the registrations are new.
		s.Source = twoTriggers(e, "v2")
		up, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		assert.Equal(t, gears.Upgraded, up.Action)
		require.Len(t, up.RegistrationIDs, 2)
		assert.NotEqual(t, d.RegistrationIDs, up.RegistrationIDs)
		assert.Equal(t, 2, hook.count("RG.PYEXECUTE"))
		assert.Equal(t, []any{"v2:a"}, trigger(t, e, e.name("a")))
		assert.Len(t, e.registrationsOf(e.name("a")), 1, "no duplicate registration")
	})
}

func TestDeployExactlyOnceAcrossClients(t *testing.T) {
	// 12 clients (as 12 processes would) deploy one session at once: one RG.PYEXECUTE in all, one
	// Created, eleven Unchanged. On gearstest an overlapping RG.PYEXECUTE would be a HAZARD.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		s := gears.Session{ID: e.name("fleet"), Source: twoTriggers(e, "v1")}
		t.Cleanup(func() { unregisterSession(e, s.ID) })
		hook := &countingHook{}
		const n = 12
		results := make([]gears.Deployment, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			rdb := newRedis(e.addr, e.proto)
			rdb.AddHook(hook)
			t.Cleanup(func() { _ = rdb.Close() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = gears.Deploy(context.Background(), rdb, s)
			}()
		}
		close(start)
		wg.Wait()
		actions := map[gears.Action]int{}
		for i := range results {
			require.NoError(t, errs[i], "client %d", i)
			actions[results[i].Action]++
			assert.Len(t, results[i].RegistrationIDs, 2, "client %d", i)
			assert.Equal(t, results[0].RegistrationIDs, results[i].RegistrationIDs, "client %d", i)
		}
		assert.Equal(t, map[gears.Action]int{gears.Created: 1, gears.Unchanged: n - 1}, actions)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))
	})
}

func TestDeployVersionsAndPolicies(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		s := gears.Session{ID: e.name("ver"), Source: twoTriggers(e, "new")}
		t.Cleanup(func() { unregisterSession(e, s.ID) })
		d, err := gears.Deploy(e.ctx, e.rdb, s, gears.WithVersion(2))
		require.NoError(t, err)
		assert.Equal(t, gears.Created, d.Action)
		assert.Regexp(t, `^gears:[0-9a-f]{32}/v2$`, sessionInfo(t, e, s.ID).Description)

		old := s
		old.Source = twoTriggers(e, "old")
		kept, err := gears.Deploy(e.ctx, e.rdb, old, gears.WithVersion(1))
		require.NoError(t, err)
		assert.Equal(t, gears.Unchanged, kept.Action, "an older release does not replace newer code")
		assert.Equal(t, d.RegistrationIDs, kept.RegistrationIDs)
		assert.Equal(t, []any{"new:a"}, trigger(t, e, e.name("a")))

		_, err = gears.Deploy(e.ctx, e.rdb, old, gears.WithVersion(3), gears.WithOnConflict(gears.Fail))
		assert.ErrorIs(t, err, gears.ErrConflict)
		up, err := gears.Deploy(e.ctx, e.rdb, old, gears.WithVersion(3))
		require.NoError(t, err)
		assert.Equal(t, gears.Upgraded, up.Action, "a rollback is a deploy with a higher version")
		assert.Equal(t, []any{"old:a"}, trigger(t, e, e.name("a")))
	})
}

func TestDeployErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		_, err := gears.Deploy(e.ctx, e.rdb, gears.Session{ID: "bad id", Source: "x = 1"})
		assert.EqualError(t, err, `gears: session id "bad id" may only hold letters, digits, '-' and '_'`)
		_, err = gears.Deploy(e.ctx, e.rdb, gears.Session{ID: e.name("empty"), Source: "  "})
		assert.EqualError(t, err, "gears: Deploy needs the session's Source")
		_, err = gears.Deploy(e.ctx, nil, gears.Session{ID: e.name("x"), Source: "x = 1"})
		assert.EqualError(t, err, "gears: Deploy needs a go-redis client")
		assert.Zero(t, len(hookNames(hook)), "argument errors come before any I/O")

		// A script that raises: the server's traceback, nothing registered, the lock released.
		sid := e.name("broken")
		_, err = gears.Deploy(e.ctx, e.rdb, gears.Session{ID: sid,
			Source: fmt.Sprintf("GB('CommandReader').register(trigger='%s')\nnosuchname\n", e.name("never"))})
		var re *gears.RegistrationError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, sid, re.SessionID)
		assert.Equal(t, "", re.Trigger)
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "NameError", ge.ExceptionType)
		assert.Equal(t, "name 'nosuchname' is not defined", ge.ExceptionMessage)
		assert.Contains(t, err.Error(), "gears: deploying session "+sid+": NameError: name 'nosuchname' is not defined")
		assert.Empty(t, e.registrationsOf(e.name("never")))
		n, err := e.rdb.Exists(e.ctx, gears.LockKey(sid)).Result()
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}

// sessionInfo reads one session.
func sessionInfo(t *testing.T, e *gEnv, id string) gears.SessionInfo {
	t.Helper()
	ss, err := e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{id}})
	require.NoError(t, err)
	require.Len(t, ss, 1)
	require.False(t, ss[0].Missing, "session %s", id)
	return ss[0]
}

// trigger calls a trigger and returns its records.
func trigger(t *testing.T, e *gEnv, name string) []any {
	t.Helper()
	recs, err := e.c.Trigger(e.ctx, name)
	require.NoError(t, err)
	return recs
}

// unregisterSession removes a session's registrations (on a shared server).
func unregisterSession(e *gEnv, id string) {
	ss, err := e.c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{id}})
	if err != nil || len(ss) != 1 {
		return
	}
	for _, r := range ss[0].RegistrationIDs {
		_ = e.c.Unregister(context.Background(), r, false)
	}
}

// hookNames lists the commands a countingHook saw.
func hookNames(h *countingHook) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name := range h.n {
		out = append(out, strings.ToLower(name))
	}
	return out
}

var _ redis.Hook = (*countingHook)(nil)
