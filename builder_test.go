package gears_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// numbers defines gen(), a generator of 0..5, for PythonReader.
const numbers = "def gen():\n    for i in range(6):\n        yield i\n"

func TestBuilderRun(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		nums := gears.PythonReader("gen").Define(numbers)
		cases := []struct {
			name string
			b    *gears.Builder
			want []any
		}{
			{"map filter", nums.Filter("lambda x: x % 2 == 0").Map("lambda x: x * 10"), []any{"0", "20", "40"}},
			{"count", nums.Count(), []any{"6"}},
			{"countby", nums.Map("lambda x: x % 2").CountBy("").Map("lambda r: (r['key'], r['value'])").Sort(true),
				[]any{"('0', 3)", "('1', 3)"}}, // the keys of groups are str
			{"sort ascending", nums.Map("lambda x: 5 - x").Sort(true), []any{"0", "1", "2", "3", "4", "5"}},
			{"distinct", nums.Map("lambda x: x // 2").Distinct().Sort(true), []any{"0", "1", "2"}},
			{"limit", nums.Limit(2, 3), []any{"3", "4"}},
			{"aggregate", nums.Aggregate("0", "lambda a, r: a + r", "lambda a, b: a + b"), []any{"15"}},
			{"avg", nums.Avg(""), []any{"2.5"}},
			{"accumulate", nums.Accumulate("lambda a, r: (a or 0) + r"), []any{"15"}},
			// Each list is emitted from its end (gears-spec.md §2.3).
			{"flatmap", gears.PythonReader("lambda: [[1, 2], [3]]").FlatMap("lambda l: l"), []any{"2", "1", "3"}},
			{"groupby", nums.GroupBy("lambda x: str(x % 3)", "lambda k, a, r: (a or 0) + r").
				Map("lambda r: r['key'] + '=' + str(r['value'])").Sort(true), []any{"0=3", "1=5", "2=7"}},
			{"batchgroupby", nums.BatchGroupBy("lambda x: str(x % 2)", "lambda k, rs: sum(rs)").
				Map("lambda r: r['key'] + '=' + str(r['value'])").Sort(true), []any{"0=6", "1=9"}},
			{"shards", gears.ShardsIDReader().Count(), []any{"1"}},
		}
		for _, c := range cases {
			res, err := c.b.Run(e.ctx, e.rdb)
			require.NoError(t, err, c.name)
			assert.Equal(t, c.want, res.Records, c.name)
			assert.Empty(t, res.Errors, c.name)
		}

		// Native values without the string conversion.
		res, err := nums.Map("lambda x: x * 2").Run(e.ctx, e.rdb, gears.WithConvertToStr(false), gears.WithMode(gears.AsyncLocal))
		require.NoError(t, err)
		assert.Equal(t, []any{int64(0), int64(2), int64(4), int64(6), int64(8), int64(10)}, res.Records)
	})
}

func TestBuilderRunWithErrors(t *testing.T) {
	// A step that raises for one record ends the execution there: the records before it and the error
	// (gears-spec.md §8).
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		res, err := gears.PythonReader("gen").Define(numbers).Map("lambda x: x * 10 if x != 2 else 1 / 0").Run(e.ctx, e.rdb)
		require.NoError(t, err)
		assert.Equal(t, []any{"0", "10"}, res.Records)
		require.Len(t, res.Errors, 1)
		assert.Equal(t, "ZeroDivisionError", res.Errors[0].ExceptionType)
		assert.Equal(t, "division by zero", res.Errors[0].ExceptionMessage)

		// A script the server cannot run is an error of Run itself.
		_, err = gears.PythonReader("nosuchgenerator").Run(e.ctx, e.rdb)
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "NameError", ge.ExceptionType)
	})
}

func TestBuilderRunAsync(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		x, err := gears.PythonReader("gen").Define(numbers).Count().RunAsync(e.ctx, e.rdb)
		require.NoError(t, err)
		assert.Regexp(t, `^[0-9a-f]{40}-\d+$`, x.ID)
		res, err := x.Wait(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, []any{"6"}, res.Records)
		again, err := x.Results(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, res, again)
		assert.NoError(t, x.Abort(e.ctx), "aborting a finished execution is not an error")
		require.NoError(t, x.Drop(e.ctx))
		_, err = x.Results(e.ctx)
		assert.ErrorIs(t, err, gears.ErrExecutionNotFound)
	})
}

func TestBuilderRegister(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig, sid := e.name("echo"), e.name("builder")
		t.Cleanup(func() { unregisterSession(e, sid) })
		b := gears.CommandReader().Map("lambda x: '|'.join(x[1:])")
		_, err := b.Register(e.ctx, e.rdb, gears.WithTrigger(trig))
		assert.EqualError(t, err, "gears: Register needs WithSessionID: the session is what the next version of the function upgrades")

		d, err := b.Register(e.ctx, e.rdb, gears.WithTrigger(trig), gears.WithSessionID(sid), gears.WithMode(gears.Sync))
		require.NoError(t, err)
		assert.Equal(t, gears.Created, d.Action)
		require.Len(t, d.RegistrationIDs, 1)
		assert.Equal(t, []any{"a|b"}, trigger2(t, e, trig, "a", "b"))

		// A changed function upgrades the same session.
		d2, err := b.Map("lambda s: s.upper()").Register(e.ctx, e.rdb, gears.WithTrigger(trig), gears.WithSessionID(sid),
			gears.WithMode(gears.Sync))
		require.NoError(t, err)
		assert.Equal(t, gears.Upgraded, d2.Action)
		assert.Equal(t, []any{"A|B"}, trigger2(t, e, trig, "a", "b"))
		assert.Len(t, e.registrationsOf(trig), 1)
	})
}

// trigger2 calls a trigger with arguments and returns its records.
func trigger2(t *testing.T, e *gEnv, name string, args ...any) []any {
	t.Helper()
	recs, err := e.c.Trigger(e.ctx, name, args...)
	require.NoError(t, err, fmt.Sprint(args...))
	return recs
}

func TestBuilderKeysAndStreams(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		k1, k2, s := e.name("k:1"), e.name("k:2"), e.name("s")
		t.Cleanup(func() { _ = e.rdb.Del(context.Background(), k1, k2, s).Err() })
		require.NoError(t, e.rdb.Set(e.ctx, k1, "one", 0).Err())
		require.NoError(t, e.rdb.RPush(e.ctx, k2, "a", "b").Err())

		res, err := gears.KeysReader(e.name("k:*")).Map("lambda r: r['key'] + '=' + str(r['value'])").Sort(true).Run(e.ctx, e.rdb)
		require.NoError(t, err)
		assert.Equal(t, []any{k1 + "=one", k2 + "=['a', 'b']"}, res.Records)

		res, err = gears.KeysReader(k1).Map("lambda r: sorted(r.keys())").Run(e.ctx, e.rdb, gears.WithNoScan(), gears.WithReadValue(false))
		require.NoError(t, err)
		assert.Equal(t, []any{"['event', 'key']"}, res.Records)

		res, err = gears.KeysOnlyReader(e.name("k:*")).Sort(true).Run(e.ctx, e.rdb)
		require.NoError(t, err)
		assert.Equal(t, []any{k1, k2}, res.Records)

		for _, id := range []string{"1-1", "1-2", "1-3"} {
			require.NoError(t, e.rdb.XAdd(e.ctx, &redis.XAddArgs{Stream: s, ID: id, Values: []any{"f", id}}).Err())
		}
		res, err = gears.StreamReader(s).Map("lambda r: r['id'] + ':' + r['value']['f']").Run(e.ctx, e.rdb, gears.WithFromID("1-1"))
		require.NoError(t, err)
		assert.Equal(t, []any{"1-2:1-2", "1-3:1-3"}, res.Records, "fromId is exclusive")
	})
}

func TestBuilderRegisterEvents(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		sid, prefix, log := e.name("events"), e.name("u:"), e.name("log")
		t.Cleanup(func() {
			unregisterSession(e, sid)
			_ = e.rdb.Del(context.Background(), log, prefix+"1", prefix+"2").Err()
		})
		d, err := gears.KeysReader(prefix+"*").
			Foreach(fmt.Sprintf("lambda r: execute('RPUSH', %q, r['event'] + ' ' + r['key'])", log)).
			Register(e.ctx, e.rdb, gears.WithSessionID(sid), gears.WithMode(gears.Sync), gears.WithEventTypes("hset", "del"),
				gears.WithReadValue(false))
		require.NoError(t, err)
		assert.Equal(t, gears.Created, d.Action)
		require.NoError(t, e.rdb.HSet(e.ctx, prefix+"1", "f", "v").Err())
		require.NoError(t, e.rdb.Set(e.ctx, prefix+"2", "x", 0).Err()) // not an hset: ignored
		require.NoError(t, e.rdb.Del(e.ctx, prefix+"1").Err())
		got, err := e.rdb.LRange(e.ctx, log, 0, -1).Result()
		require.NoError(t, err)
		assert.Equal(t, []string{"hset " + prefix + "1", "del " + prefix + "1"}, got, "sync: written before each command replied")

		regs, err := e.c.DumpRegistrations(e.ctx)
		require.NoError(t, err)
		var found bool
		for _, r := range regs {
			if r.ID == d.RegistrationIDs[0] {
				found = true
				assert.Equal(t, "KeysReader", r.Reader)
				assert.Equal(t, "sync", r.Data.Mode)
			}
		}
		assert.True(t, found)
	})
}
