package gears_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

func TestPlanPredictsDeploy(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		s := gears.Session{ID: e.name("plan"), Source: twoTriggers(e, "v1"), Description: "audit"}
		t.Cleanup(func() { unregisterSession(e, s.ID) })

		plan := func(s gears.Session, opts ...gears.Option) gears.Action {
			t.Helper()
			before := hook.count("RG.PYEXECUTE")
			a, err := gears.Plan(e.ctx, e.rdb, s, opts...)
			require.NoError(t, err)
			assert.Equal(t, before, hook.count("RG.PYEXECUTE"), "Plan sends no RG.PYEXECUTE")
			return a
		}
		deploy := func(s gears.Session, opts ...gears.Option) gears.Action {
			t.Helper()
			d, err := gears.Deploy(e.ctx, e.rdb, s, opts...)
			require.NoError(t, err)
			return d.Action
		}

		assert.Equal(t, gears.Created, plan(s))
		assert.Equal(t, gears.Created, deploy(s))
		assert.Equal(t, gears.Unchanged, plan(s))
		// The requirements are part of what Deploy compares; the description is not.
		assert.Equal(t, gears.Unchanged, plan(gears.Session{ID: s.ID, Source: s.Source, Description: "other"}))
		assert.Equal(t, gears.Upgraded, plan(s, gears.WithRequirements("six")))

		v2 := s
		v2.Source = twoTriggers(e, "v2")
		assert.Equal(t, gears.Upgraded, plan(v2, gears.WithVersion(3)))
		assert.Equal(t, gears.Upgraded, deploy(v2, gears.WithVersion(3)))
		// Older code than the version the server holds is kept, by Plan as by Deploy.
		assert.Equal(t, gears.Unchanged, plan(s, gears.WithVersion(2)))
		assert.Equal(t, gears.Unchanged, deploy(s, gears.WithVersion(2)))
		assert.Equal(t, gears.Unchanged, plan(s, gears.WithOnConflict(gears.Keep)))
		_, err := gears.Plan(e.ctx, e.rdb, s, gears.WithOnConflict(gears.Fail))
		assert.True(t, errors.Is(err, gears.ErrConflict), "%v", err)

		// Bad input is refused before any I/O.
		_, err = gears.Plan(e.ctx, e.rdb, gears.Session{ID: "no spaces", Source: "x"})
		assert.ErrorContains(t, err, "may only hold letters")
		_, err = gears.Plan(e.ctx, e.rdb, gears.Session{ID: "empty"})
		assert.ErrorContains(t, err, "needs the session's Source")
	})
}

func TestUndeploy(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		s := gears.Session{ID: e.name("undeploy"), Source: twoTriggers(e, "v1")}
		t.Cleanup(func() { unregisterSession(e, s.ID) })
		d, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		require.Len(t, d.RegistrationIDs, 2)

		ids, err := gears.Undeploy(e.ctx, e.rdb, s.ID)
		require.NoError(t, err)
		assert.Equal(t, d.RegistrationIDs, ids)
		_, err = e.c.Trigger(e.ctx, e.name("a"))
		assert.True(t, errors.Is(err, gears.ErrUnknownTrigger), "%v", err)
		assert.Empty(t, e.registrationsOf(e.name("b")))
		n, err := e.rdb.Exists(e.ctx, gears.LockKey(s.ID)).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "the lock is released")

		// A session that does not exist (any more): nothing to do.
		ids, err = gears.Undeploy(e.ctx, e.rdb, s.ID)
		require.NoError(t, err)
		assert.Empty(t, ids)
		// It can be created again.
		again, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		assert.Equal(t, gears.Created, again.Action)
	})
}

func TestUndeployWaitsForTheLock(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		s := gears.Session{ID: e.name("undeploylock"), Source: twoTriggers(e, "v1")}
		t.Cleanup(func() { unregisterSession(e, s.ID) })
		_, err := gears.Deploy(e.ctx, e.rdb, s)
		require.NoError(t, err)
		// Another process holds the session's lock: Undeploy sends nothing until it is gone.
		require.NoError(t, e.rdb.Set(e.ctx, gears.LockKey(s.ID), "other", 0).Err())
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		done := make(chan error, 1)
		go func() {
			_, err := gears.Undeploy(e.ctx, e.rdb, s.ID)
			done <- err
		}()
		// The waiter polls EXISTS; once it has polled twice it is known to be waiting.
		require.Eventually(t, func() bool { return hook.count("EXISTS") >= 2 }, 30*time.Second, time.Millisecond)
		assert.Zero(t, hook.count("RG.UNREGISTER"))
		require.NoError(t, e.rdb.Del(e.ctx, gears.LockKey(s.ID)).Err())
		require.NoError(t, <-done)
		assert.Empty(t, e.registrationsOf(e.name("a")))
	})
}

func TestParseError(t *testing.T) {
	e := gears.ParseError(`['Traceback (most recent call last):\n', '  File "<string>", line 1, in <lambda>\n', "ZeroDivisionError: division by zero\n"]`)
	assert.Equal(t, "ZeroDivisionError", e.ExceptionType)
	assert.Equal(t, "division by zero", e.ExceptionMessage)
	assert.Equal(t, []gears.Frame{{File: "<string>", Line: 1, Func: "<lambda>"}}, e.Frames)
	assert.Equal(t, "gears: ZeroDivisionError: division by zero (at <string> line 1, in <lambda>)", e.Error())
	plain := gears.ParseError("execution plan does not exist")
	assert.Equal(t, "execution plan does not exist", plain.Msg)
	assert.Empty(t, plain.Traceback)
	assert.ErrorIs(t, plain, gears.ErrExecutionNotFound)
}
