package gearstest_test

// Conformance tests of the batch readers: KeysReader, KeysOnlyReader, StreamReader and PythonReader run()
// (gears-spec §2.2–2.4, §8). Every key is named after the test (uniq) and deleted when it ends, and every
// run reads only its own keys (a pattern, or a filter on the key name), so the suite can run against a
// shared real RedisGears 1.2 (GEARS_ADDR).

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// readerKeys returns a key prefix unique to t (ending in ':') and deletes the keys named by the returned
// function when the test ends.
func readerKeys(t *testing.T, c *client) (string, func(name string) string) {
	t.Helper()
	p := uniq(t, "k") + ":"
	var made []string
	t.Cleanup(func() {
		if len(made) > 0 {
			c.Del(context.Background(), made...)
		}
	})
	return p, func(name string) string {
		made = append(made, p+name)
		return p + name
	}
}

// strs converts strings to []any.
func strs(s ...string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// TestKeysReaderRecordShapes checks the KeysReader record of each key type as str(record) shows it: the
// field order {'event', 'key', 'type', 'value'} (spec §2.2), hash fields in the reader's internal order,
// set/zset/stream values None, a stream's type 'unknown', a non-UTF-8 string a bytearray — read by GB()
// with no argument (default reader KeysReader, pattern '*').
func TestKeysReaderRecordShapes(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		require.NoError(t, c.Set(ctx, key("s"), "hello", 0).Err())
		require.NoError(t, c.Set(ctx, key("b"), "\xff", 0).Err())
		require.NoError(t, c.RPush(ctx, key("l"), "a", "b").Err())
		require.NoError(t, c.HSet(ctx, key("h"), "f1", "a", "f2", "b", "f3", "c").Err())
		require.NoError(t, c.SAdd(ctx, key("st"), "m").Err())
		require.NoError(t, c.ZAdd(ctx, key("z"), redis.Z{Score: 1, Member: "m"}).Err())
		require.NoError(t, c.Do(ctx, "XADD", key("x"), "1-1", "f", "v").Err())
		want := []string{
			fmt.Sprintf("{'event': None, 'key': '%ss', 'type': 'string', 'value': 'hello'}", p),
			fmt.Sprintf("{'event': None, 'key': '%sb', 'type': 'string', 'value': bytearray(b'\\xff')}", p),
			fmt.Sprintf("{'event': None, 'key': '%sl', 'type': 'list', 'value': ['a', 'b']}", p),
			// Hash fields come in the order of the reader's internal dict (spec §2.2), not HGETALL's.
			fmt.Sprintf("{'event': None, 'key': '%sh', 'type': 'hash', 'value': {'f2': 'b', 'f3': 'c', 'f1': 'a'}}", p),
			fmt.Sprintf("{'event': None, 'key': '%sst', 'type': 'set', 'value': None}", p),
			fmt.Sprintf("{'event': None, 'key': '%sz', 'type': 'zset', 'value': None}", p),
			fmt.Sprintf("{'event': None, 'key': '%sx', 'type': 'unknown', 'value': None}", p),
		}
		sort.Strings(want)
		c.expect(L(strs(want...), L()), "RG.PYEXECUTE",
			fmt.Sprintf("GB().filter(lambda r: r['key'].startswith(%s)).map(lambda r: str(r)).sort().run()", pyQuote(p)))
		// The same with the pattern as the run() argument.
		c.expect(L(strs(want...), L()), "RG.PYEXECUTE", fmt.Sprintf("GB().map(lambda r: str(r)).sort().run(%s)", pyQuote(p+"*")))
	})
}

// TestKeysReaderOptions checks noScan (the pattern is the one key read, a record even when it does not
// exist: type 'empty', value None), readValue=False (only key and event), defaultArg, and a pattern that
// matches nothing (no record; count() gives no record either, spec §8).
func TestKeysReaderOptions(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		s := key("s")
		require.NoError(t, c.Set(ctx, s, "v", 0).Err())
		rec := fmt.Sprintf("{'event': None, 'key': '%s', 'type': 'string', 'value': 'v'}", s)
		c.expect(L(L(rec), L()), "RG.PYEXECUTE", fmt.Sprintf("GB().run(%s, noScan=True)", pyQuote(s)))
		c.expect(L(L(rec), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysReader', defaultArg=%s).run()", pyQuote(p+"*")))
		c.expect(L(L(fmt.Sprintf("{'event': None, 'key': '%smissing', 'type': 'empty', 'value': None}", p)), L()),
			"RG.PYEXECUTE", fmt.Sprintf("GB().run(%s, noScan=True)", pyQuote(p+"missing")))
		// noScan takes the pattern literally
		c.expect(L(L(fmt.Sprintf("{'event': None, 'key': '%s*', 'type': 'empty', 'value': None}", p)), L()),
			"RG.PYEXECUTE", fmt.Sprintf("GB().run(%s, noScan=True)", pyQuote(p+"*")))
		c.expect(L(L(fmt.Sprintf("{'event': None, 'key': '%s'}", s)), L()),
			"RG.PYEXECUTE", fmt.Sprintf("GB().run(%s, readValue=False)", pyQuote(p+"*")))
		c.expect(L(L(fmt.Sprintf("{'event': None, 'key': '%smissing'}", p)), L()),
			"RG.PYEXECUTE", fmt.Sprintf("GB().run(%s, noScan=True, readValue=False)", pyQuote(p+"missing")))
		c.expect(L(L(), L()), "RG.PYEXECUTE", fmt.Sprintf("GB().run(%s)", pyQuote(p+"nothing*")))
		c.expect(L(L(), L()), "RG.PYEXECUTE", fmt.Sprintf("GB().count().run(%s)", pyQuote(p+"nothing*")))
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB().count().run(%s, mode='async_local')", pyQuote(p+"*")))
	})
}

// TestKeysReaderOperations runs every operation family over KeysReader records: the groupby family
// (countby, groupby, localgroupby, batchgroupby, aggregateby), aggregate, count, distinct, avg, filter,
// sort's real ordering (ascending by default, descending with reverse=False: spec §2.3), and flatmap over
// a list value with limit (spec §2.3's lpush example).
func TestKeysReaderOperations(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		for k, v := range map[string]string{"a1": "1", "a2": "2", "a3": "1", "b1": "2"} {
			require.NoError(t, c.Set(ctx, key(k), v, 0).Err())
		}
		pat := pyQuote(p + "*")
		kv := "map(lambda r: '%s=%s' % (r['key'], r['value']))"
		cases := []struct {
			ops  string
			want []any
		}{
			{"countby(lambda r: r['value'])." + kv + ".sort()", strs("1=2", "2=2")},
			{"groupby(lambda r: r['value'], lambda k, a, r: (a or 0) + 1)." + kv + ".sort()", strs("1=2", "2=2")},
			{"localgroupby(lambda r: r['value'], lambda k, a, r: (a or 0) + 1)." + kv + ".sort()", strs("1=2", "2=2")},
			{"batchgroupby(lambda r: r['value'], lambda k, rs: sorted(x['key'][-2:] for x in rs))." + kv + ".sort()",
				strs("1=['a1', 'a3']", "2=['a2', 'b1']")},
			{"aggregateby(lambda r: r['key'][-2], 0, lambda k, a, r: a + int(r['value']), lambda k, a, r: a + r)." + kv + ".sort()",
				strs("a=4", "b=2")},
			{"aggregate([], lambda a, r: a + [r['key'][-2:]], lambda a, r: a + r).map(lambda a: sorted(a))",
				strs("['a1', 'a2', 'a3', 'b1']")},
			{"count()", strs("4")},
			{"map(lambda r: r['value']).distinct().sort()", strs("1", "2")},
			{"avg(lambda r: float(r['value']))", strs("1.5")},
			{"filter(lambda r: r['value'] == '2').map(lambda r: r['key'][-2:]).sort()", strs("a2", "b1")},
			{"map(lambda r: r['key'][-2:]).sort()", strs("a1", "a2", "a3", "b1")},
			{"map(lambda r: r['key'][-2:]).sort(reverse=False)", strs("b1", "a3", "a2", "a1")},
			{"map(lambda r: r['key'][-2:]).sort().limit(2, 1)", strs("a2", "a3")},
		}
		for _, tc := range cases {
			c.expect(L(tc.want, L()), "RG.PYEXECUTE", fmt.Sprintf("GB().%s.run(%s)", tc.ops, pat))
		}
		l := key("l")
		require.NoError(t, c.LPush(ctx, l, "1", "2", "3", "4", "5").Err())
		c.expect(L(strs("1", "2", "3", "4", "5"), L()), "RG.PYEXECUTE",
			fmt.Sprintf("GB().flatmap(lambda x: x['value']).run(%s, noScan=True)", pyQuote(l)))
		c.expect(L(strs("4"), L()), "RG.PYEXECUTE",
			fmt.Sprintf("GB().flatmap(lambda x: x['value']).limit(1, 3).run(%s, noScan=True)", pyQuote(l)))
	})
}

// TestKeysReaderErrors checks that a step raising stops the run (spec §8: the records before it and the
// error, the other keys are not processed), a step error's traceback, and run()'s argument errors with
// the C texts (redisgears_python.c runCreateKeysReaderArgs, runCreateStreamReaderArgs, run()).
func TestKeysReaderErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		for _, k := range []string{"a", "b", "c", "d"} {
			require.NoError(t, c.Set(ctx, key(k), k, 0).Err())
		}
		// Whatever the order the keys come in, the second record raises: one record, one error.
		c.expect(L(L("ok"), L("second")), "RG.PYEXECUTE", fmt.Sprintf(
			"n = [0]\ndef f(r):\n    n[0] += 1\n    if n[0] == 2:\n        raise flat_error('second')\n    return 'ok'\n"+
				"GB().map(f).run(%s)", pyQuote(p+"*")))
		// Every record raises: the run ends at the first, with one error.
		c.expect(L(L(), L("bad")), "RG.PYEXECUTE", fmt.Sprintf("GB().map(lambda r: flat_error('bad')).run(%s)", pyQuote(p+"*")))
		c.expect(L(L(), L(tracebackErr("ZeroDivisionError: division by zero"))), "RG.PYEXECUTE",
			fmt.Sprintf("GB().map(lambda r: 1/0).run(%s, noScan=True)", pyQuote(p+"a")))
		for _, tc := range []struct{ script, last string }{
			{"GB().run(noScan=1)", "gears.error: exactMatch value is not boolean"},
			{"GB().run(noScan=None)", "gears.error: exactMatch value is not boolean"},
			{"GB().run(readValue='no')", "gears.error: readValue value is not boolean"},
			{"GB().run(1)", "gears.error: regex argument must be a string"},
			{"GB().run(noScan=1, mode='sync')", "gears.error: unknown execution mode"},
			{"GB('StreamReader').run('s', fromId=1)", "gears.error: fromId argument must be a string"},
			{"GB('KeysOnlyReader').run(mode='async')", "TypeError: createKeysOnlyReader() got an unexpected keyword argument 'mode'"},
		} {
			c.match(tracebackErr(tc.last), c.doErr("RG.PYEXECUTE", tc.script), tc.script)
		}
	})
}

// TestKeysOnlyReaderRun checks KeysOnlyReader run(): key names (sorted ascending by sort()), count, and
// noScan (the key when it exists, nothing otherwise).
func TestKeysOnlyReaderRun(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		a, b, cc := key("a"), key("b"), key("c")
		for _, k := range []string{a, b, cc} {
			require.NoError(t, c.Set(ctx, k, "v", 0).Err())
		}
		c.expect(L(strs(a, b, cc), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysOnlyReader').sort().run(%s)", pyQuote(p+"*")))
		c.expect(L(strs(a, b, cc), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysOnlyReader').sort().run(%s, count=1)", pyQuote(p+"*")))
		c.expect(L(strs(b), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysOnlyReader').run(%s, noScan=True)", pyQuote(b)))
		c.expect(L(L(), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysOnlyReader').run(%s, noScan=True)", pyQuote(p+"zz")))
		c.expect(L(strs("3"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('KeysOnlyReader').count().run(%s)", pyQuote(p+"*")))
	})
}

// TestStreamReaderRun checks StreamReader run(key, fromId=): records {'key', 'id', 'value'} oldest first,
// fromId exclusive, a missing stream gives nothing, and XREAD's error is the execution's error.
func TestStreamReaderRun(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		_, key := readerKeys(t, c)
		x, s := key("x"), key("s")
		require.NoError(t, c.Do(ctx, "XADD", x, "1-1", "a", "1").Err())
		require.NoError(t, c.Do(ctx, "XADD", x, "1-2", "b", "2", "c", "3").Err())
		require.NoError(t, c.Set(ctx, s, "v", 0).Err())
		r1 := fmt.Sprintf("{'key': '%s', 'id': '1-1', 'value': {'a': '1'}}", x)
		r2 := fmt.Sprintf("{'key': '%s', 'id': '1-2', 'value': {'c': '3', 'b': '2'}}", x)
		c.expect(L(strs(r1, r2), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('StreamReader').run(%s)", pyQuote(x)))
		c.expect(L(strs(r2), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('StreamReader').run(%s, fromId='1-1')", pyQuote(x)))
		c.expect(L(L(), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('StreamReader').run(%s, fromId='1-2')", pyQuote(x)))
		c.expect(L(strs("1-1 a=1", "1-2 b=2,c=3"), L()), "RG.PYEXECUTE", fmt.Sprintf(
			"GB('StreamReader').map(lambda r: r['id'] + ' ' + ','.join('%%s=%%s' %% kv for kv in sorted(r['value'].items()))).run(%s)", pyQuote(x)))
		c.expect(L(L(), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('StreamReader').run(%s)", pyQuote(x+"missing")))
		c.expect(L(L(), L("ERR Invalid stream ID specified as stream command argument")), "RG.PYEXECUTE",
			fmt.Sprintf("GB('StreamReader').run(%s, fromId='bad')", pyQuote(x)))
		c.expect(L(L(), L("WRONGTYPE Operation against a key holding the wrong kind of value")), "RG.PYEXECUTE",
			fmt.Sprintf("GB('StreamReader').run(%s)", pyQuote(s)))
	})
}

// TestPythonReaderOverKeys checks a PythonReader whose generator walks keys with execute() and whose
// steps read them.
func TestPythonReaderOverKeys(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		ctx := testCtx(t)
		p, key := readerKeys(t, c)
		for i, k := range []string{"a", "b", "c"} {
			require.NoError(t, c.Set(ctx, key(k), fmt.Sprint(i), 0).Err())
		}
		c.expect(L(strs("0", "1", "2"), L()), "RG.PYEXECUTE", fmt.Sprintf(
			"def gen():\n    for k in execute('KEYS', %s):\n        yield k\n"+
				"GB('PythonReader').map(lambda k: execute('GET', k)).sort().run(gen)", pyQuote(p+"*")))
	})
}
