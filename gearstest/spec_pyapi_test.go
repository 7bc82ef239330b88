package gearstest_test

// The Python API inside gear functions (gears-spec.md §2, §8; goldens op-flatmap-order, op-sort,
// enc-raw-scalars, enc-str-scalars, py-execute-error, fut-thread-continue-run): every operation, value →
// reply encoding, execute(), atomic(), log(), gearsFuture, flat_error, isAsyncAllow, hashtag, the
// register() argument errors and callback serialization.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// expectTriggerErr triggers and matches the error reply text.
func (c *client) expectTriggerErr(want matcher, args ...any) {
	c.t.Helper()
	c.match(want, c.doErr(args...), "error of "+fmtArgs(args))
}

func TestOperations(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		type opCase struct {
			name, ops, regArgs string
			args               []any
			want               any
		}
		ints := ".flatmap(lambda x: [int(v) for v in x[1:]])"
		words := ".flatmap(lambda x: x[1:])"
		kv := ".map(lambda r: r['key'] + '=' + str(r['value'])).sort()"
		cases := []opCase{
			{"map", ".map(lambda x: x[1].upper())", "", L("a"), L("A")},
			// flatmap pops from the end: reverse order, top level only; a tuple is one record.
			{"flatmap", words, "", L("a", "b", "c", "d"), L("d", "c", "b", "a")},
			{"flatmap-tuple", ".flatmap(lambda x: tuple(x[1:]))", "", L("a", "b", "c"), L("('a', 'b', 'c')")},
			{"flatmap-nested", ".flatmap(lambda x: [[1, 2], [3]])", "convertToStr=False", L(), L(L(3), L(1, 2))},
			{"flatmap-scalar", ".flatmap(lambda x: 'abc')", "", L(), L("abc")},
			{"filter", words + ".filter(lambda x: x != 'b')", "", L("a", "b", "c"), L("c", "a")},
			{"accumulate", ints + ".accumulate(lambda a, r: (a if a else 0) + r)", "convertToStr=False", L("1", "2", "3", "4"), L(10)},
			{"localgroupby", words + ".localgroupby(lambda r: r, lambda k, a, r: (a if a else 0) + 1)" + kv, "", L("a", "b", "a"), L("a=2", "b=1")},
			{"groupby", words + ".groupby(lambda r: r, lambda k, a, r: (a if a else 0) + 1)" + kv, "", L("a", "b", "a"), L("a=2", "b=1")},
			{"batchgroupby", words + ".batchgroupby(lambda r: r, lambda k, recs: len(recs))" + kv, "", L("a", "b", "a"), L("a=2", "b=1")},
			{"groupby-record", words + ".groupby(lambda r: r, lambda k, a, r: (a if a else 0) + 1)", "", L("z"), L("{'key': 'z', 'value': 1}")},
			{"aggregate", ints + ".aggregate(0, lambda a, r: a + r, lambda a, r: a + r)", "convertToStr=False", L("1", "2", "3", "4"), L(10)},
			{"aggregate-list", ints + ".aggregate([], lambda a, r: a + [r], lambda a, r: a + r)", "convertToStr=False", L("1", "2"), L(L(2, 1))},
			{"aggregateby", words + ".aggregateby(lambda r: r, 0, lambda k, a, r: a + 1, lambda k, a, r: a + r)" + kv, "", L("a", "b", "a"), L("a=2", "b=1")},
			{"count", words + ".count()", "convertToStr=False", L("a", "b", "c"), L(3)},
			// count() over no records produces no record at all (spec §8).
			{"count-empty", words + ".count()", "", L(), L()},
			{"countby", words + ".countby()" + kv, "", L("a", "b", "a"), L("a=2", "b=1")},
			{"countby-extractor", words + ".countby(lambda r: r[0])" + kv, "", L("ax", "bx", "ay"), L("a=2", "b=1")},
			{"distinct", words + ".distinct().sort()", "", L("a", "b", "a", "c", "b"), L("a", "b", "c")},
			// sort() sorts descending then flatmap reverses: ascending output; reverse=False gives descending.
			{"sort", words + ".sort()", "", L("b", "d", "a", "c"), L("a", "b", "c", "d")},
			{"sort-reverse-false", words + ".sort(reverse=False)", "", L("b", "d", "a", "c"), L("d", "c", "b", "a")},
			{"avg", words + ".avg()", "", L("1", "2", "4"), L("2.3333333333333335")},
			{"avg-raw", words + ".avg()", "convertToStr=False", L("1", "2", "4"), L("2.333333")},
			{"avg-extractor", words + ".avg(lambda r: len(r))", "", L("ab", "abcd"), L("3.0")},
			{"limit", words + ".limit(2)", "", L("a", "b", "c", "d"), L("d", "c")},
			{"limit-offset", words + ".limit(1, 2)", "", L("a", "b", "c", "d"), L("b")},
			{"collect", ".collect()", "", L("x"), nil},
			{"repartition", ".repartition(lambda r: r[1])", "", L("x"), nil},
			{"foreach", ".foreach(lambda x: x.append('seen'))", "convertToStr=False", L("x"), nil},
			{"register-no-collect", ".map(lambda x: x[1])", "collect=False", L("x"), L("x")},
		}
		for _, tc := range cases {
			trig := c.regTrigger(tc.ops, strings.TrimPrefix(strings.Join([]string{"mode='sync'", tc.regArgs}, ", "), ", "))
			want := tc.want
			switch tc.name {
			case "collect", "repartition":
				want = L(fmt.Sprintf("['%s', 'x']", trig))
			case "foreach":
				want = L(L(trig, "x", "seen"))
			}
			got := c.do(append(L("RG.TRIGGER", trig), tc.args...)...)
			c.match(want, got, tc.name)
		}
	})
}

func TestOperationsInAsyncModes(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, mode := range []string{"async", "async_local"} {
			trig := c.regTrigger(".flatmap(lambda x: x[1:]).sort()", "mode='"+mode+"'")
			c.expect(L("a", "b", "c"), "RG.TRIGGER", trig, "c", "a", "b")
			trig = c.regTrigger(".flatmap(lambda x: x[1:]).count()", "mode='"+mode+"', convertToStr=False")
			c.expect(L(3), "RG.TRIGGER", trig, "c", "a", "b")
			c.expect(L(), "RG.TRIGGER", trig)
		}
	})
}

func TestEncodingRawValues(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		cases := []struct {
			expr string
			want any
		}{
			{"'hello'", "hello"},
			{"b'a\\xff\\x00b'", "a\xff\x00b"},
			{"42", 42},
			{"-3", -3},
			{"1.5", "1.500000"},
			{"True", 1},
			{"False", 0},
			{"None", "PY RECORD"},
			{"{'a': 1}", "PY RECORD"},
			{"(1, 2)", "PY RECORD"},
			{"bytearray(b'x')", "PY RECORD"},
			{"''", ""},
			// A lone '+' or '-' stays a bulk string (spec §8).
			{"'+'", "+"},
			{"'-'", "-"},
			{"[1, [2, 'a'], 1.5, None, True]", L(1, L(2, "a"), "1.500000", "PY RECORD", 1)},
			{"['+in', '-out', 'x']", L("in", errElem("out"), "x")},
			{"[]", L()},
		}
		for _, tc := range cases {
			trig := c.regTrigger(".map(lambda x: "+tc.expr+")", "mode='sync', convertToStr=False")
			c.match(L(tc.want), c.do("RG.TRIGGER", trig), tc.expr)
		}
		// A top-level '+OK' record is a status, '-...' an error element.
		trig := c.regTrigger(".map(lambda x: '+OK')", "mode='sync', convertToStr=False")
		c.expect(L("OK"), "RG.TRIGGER", trig)
		trig = c.regTrigger(".map(lambda x: '-bad thing')", "mode='sync', convertToStr=False")
		c.expect(L(errElem("bad thing")), "RG.TRIGGER", trig)
	})
}

func TestEncodingConvertToStr(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		cases := []struct {
			expr string
			want any
		}{
			{"7", "7"},
			{"1.5", "1.5"},
			{"True", "True"},
			{"None", "None"},
			{"b'ab'", "b'ab'"},
			{"'hello'", "hello"},
			{"''", ""},
			{"[1, 2]", "[1, 2]"},
			{"{'a': 1}", "{'a': 1}"},
			// str(-5) == '-5' is an error element, '+OK' a status (spec §2.6).
			{"-5", errElem("5")},
			{"'+OK'", "OK"},
		}
		for _, tc := range cases {
			trig := c.regTrigger(".map(lambda x: "+tc.expr+")", "mode='sync'")
			c.match(L(tc.want), c.do("RG.TRIGGER", trig), tc.expr)
		}
	})
}

func TestExecuteReplies(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		k := uniq(t, "k")
		l := uniq(t, "l")
		t.Cleanup(func() { c.Del(testCtx(t), k, l) })
		trig := c.regTrigger(fmt.Sprintf(`.map(lambda x: [
    execute('set', %[1]s, 5),
    execute('get', %[1]s),
    execute('incr', %[1]s),
    execute('get', %[1]s + 'missing'),
    execute('rpush', %[2]s, 'a', b'b'),
    execute('lrange', %[2]s, 0, -1),
    execute('PING'),
])`, pyQuote(k), pyQuote(l)), "mode='sync', convertToStr=False")
		c.expect(L(L("OK", "5", 6, "PY RECORD", 2, L("a", "b"), "PONG")), "RG.TRIGGER", trig)
		typ := c.regTrigger(fmt.Sprintf(".map(lambda x: [type(execute('get', %[1]s)).__name__, type(execute('incr', %[1]s)).__name__, type(execute('get', 'nokey' + %[1]s)).__name__])", pyQuote(k)), "mode='sync', convertToStr=False")
		c.expect(L(L("str", "int", "NoneType")), "RG.TRIGGER", typ)
	})
}

func TestExecuteErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		k := uniq(t, "k")
		t.Cleanup(func() { c.Del(testCtx(t), k) })
		c.expectOK("SET", k, "abc")
		bad := c.regTrigger(fmt.Sprintf(".map(lambda x: execute('incr', %s))", pyQuote(k)), "mode='sync'")
		// A Redis error keeps its trailing \r\n (golden py-execute-error).
		c.expectTriggerErr(tracebackErr("gears.error: ERR value is not an integer or out of range\r\n"), "RG.TRIGGER", bad)
		sid := uniq(t, "s")
		caught := uniq(t, "caught")
		c.registerScript(sid, fmt.Sprintf(`
def f(x):
    try:
        execute('incr', %s)
        return 'no error'
    except Exception as e:
        return [type(e).__name__, str(e)]
GB('CommandReader').map(f).register(trigger=%s, mode='sync', convertToStr=False)
`, pyQuote(k), pyQuote(caught)))
		c.expect(L(L("error", "ERR value is not an integer or out of range\r\n")), "RG.TRIGGER", caught)
		unk := c.regTrigger(".map(lambda x: execute('nosuchcommand', 'a'))", "mode='sync'")
		c.expectTriggerErr(tracebackErr("gears.error: No such file or directory"), "RG.TRIGGER", unk)
		notStr := c.regTrigger(".map(lambda x: execute(1))", "mode='sync'")
		c.expectTriggerErr(tracebackErr("gears.error: the given command must be a string"), "RG.TRIGGER", notStr)
		// execute() with no arguments returns an empty list (executeCommand in redisgears_python.c).
		noArgs := c.regTrigger(".map(lambda x: execute())", "mode='sync', convertToStr=False")
		c.expect(L(L()), "RG.TRIGGER", noArgs)
		wrongType := c.regTrigger(fmt.Sprintf(".map(lambda x: execute('lpush', %s, 'v'))", pyQuote(k)), "mode='sync'")
		c.expectTriggerErr(tracebackErr("gears.error: WRONGTYPE Operation against a key holding the wrong kind of value\r\n"), "RG.TRIGGER", wrongType)
	})
}

func TestExecuteBinaryValues(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		k := uniq(t, "bin")
		t.Cleanup(func() { c.Del(testCtx(t), k) })
		var all []byte
		for i := 0; i < 256; i++ {
			all = append(all, byte(i))
		}
		c.expectOK("SET", k, string(all))
		// Not valid UTF-8: a bytearray, which replies "PY RECORD" unless turned into bytes (spec §8).
		typ := c.regTrigger(fmt.Sprintf(".map(lambda x: type(execute('get', %s)).__name__)", pyQuote(k)), "mode='sync', convertToStr=False")
		c.expect(L("bytearray"), "RG.TRIGGER", typ)
		raw := c.regTrigger(fmt.Sprintf(".map(lambda x: execute('get', %s))", pyQuote(k)), "mode='sync', convertToStr=False")
		c.expect(L("PY RECORD"), "RG.TRIGGER", raw)
		asBytes := c.regTrigger(fmt.Sprintf(".map(lambda x: bytes(execute('get', %s)))", pyQuote(k)), "mode='sync', convertToStr=False")
		c.expect(L(string(all)), "RG.TRIGGER", asBytes)
		// bytes arguments go to Redis unchanged.
		k2 := k + "copy"
		t.Cleanup(func() { c.Del(testCtx(t), k2) })
		cp := c.regTrigger(fmt.Sprintf(".map(lambda x: execute('set', %s, bytes(execute('get', %s))))", pyQuote(k2), pyQuote(k)), "mode='sync'")
		c.expect(L("OK"), "RG.TRIGGER", cp)
		c.expect(string(all), "GET", k2)
	})
}

func TestAtomicNestedError(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		ok := uniq(t, "ok")
		c.registerScript(sid, fmt.Sprintf(`
def nested(x):
    with atomic():
        with atomic():
            return 'unreachable'
def single(x):
    with atomic():
        return execute('ping')
GB('CommandReader').map(nested).register(trigger=%s, mode='async_local')
GB('CommandReader').map(single).register(trigger=%s, mode='async_local')
`, pyQuote(trig), pyQuote(ok)))
		c.expectTriggerErr(tracebackErr("gears.error: Already inside an atomic block"), "RG.TRIGGER", trig)
		c.expect(L("PONG"), "RG.TRIGGER", ok)
	})
}

func TestLog(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		good, bad := uniq(t, "good"), uniq(t, "bad")
		c.registerScript(sid, fmt.Sprintf(`
def good(x):
    for lvl in ('debug', 'verbose', 'notice', 'warning'):
        log('conformance log line at ' + lvl, level=lvl)
    log('default level')
    return 'logged'
GB('CommandReader').map(good).register(trigger=%s, mode='sync')
GB('CommandReader').map(lambda x: log('x', level='bad')).register(trigger=%s, mode='sync')
`, pyQuote(good), pyQuote(bad)))
		c.expect(L("logged"), "RG.TRIGGER", good)
		c.expectTriggerErr(tracebackErr("gears.error: Log level should be one of the following : debug,verbose,notice,warning"), "RG.TRIGGER", bad)
	})
}

func TestGearsFuture(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		run, runSync, failed, chained := uniq(t, "run"), uniq(t, "runsync"), uniq(t, "failed"), uniq(t, "chained")
		c.registerScript(sid, fmt.Sprintf(`
import threading
import time
def later(fut, ok, value):
    def resolve():
        time.sleep(0.1)
        if ok:
            fut.continueRun(value)
        else:
            fut.continueFailed(value)
    threading.Thread(target=resolve).start()
    return fut
def f(x):
    return later(gearsFuture(), True, 'resolved ' + x[1])
def g(x):
    return later(gearsFuture(), False, 'failed ' + x[1])
GB('CommandReader').map(f).register(trigger=%s)
GB('CommandReader').map(f).register(trigger=%s, mode='sync')
GB('CommandReader').map(g).register(trigger=%s, mode='async_local')
GB('CommandReader').map(f).map(lambda v: v + '!').register(trigger=%s, mode='async_local')
`, pyQuote(run), pyQuote(runSync), pyQuote(failed), pyQuote(chained)))
		c.expect(L("resolved a"), "RG.TRIGGER", run, "a")
		// A future returned by a sync registration and resolved from a thread works (spec §8).
		c.expect(L("resolved b"), "RG.TRIGGER", runSync, "b")
		// continueFailed(x) makes str(x) the execution's error (futureFailed in redisgears_python.c).
		c.expectErr("failed c", "RG.TRIGGER", failed, "c")
		c.expect(L("resolved d!"), "RG.TRIGGER", chained, "d")
	})
}

func TestGearsFutureErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.match(tracebackErr("gears.error: Future object can only be created inside certain execution steps"),
			c.doErr("RG.PYEXECUTE", "f = gearsFuture()"), "future outside a step")
		sid := uniq(t, "s")
		twice, inMulti := uniq(t, "twice"), uniq(t, "multi")
		c.registerScript(sid, fmt.Sprintf(`
def twice(x):
    f1 = gearsFuture()
    f2 = gearsFuture()
    return 'unreachable'
def one(x):
    f = gearsFuture()
    f.continueRun('never used')
    return f
GB('CommandReader').map(twice).register(trigger=%s, mode='async_local')
GB('CommandReader').map(one).register(trigger=%s, mode='sync')
`, pyQuote(twice), pyQuote(inMulti)))
		c.expectTriggerErr(tracebackErr("gears.error: Can not create async record twice on the same step"), "RG.TRIGGER", twice)
		got := c.multiExec(L("RG.TRIGGER", inMulti))
		require.Len(t, got, 1)
		c.match(tracebackErr("gears.error: Creating async record is not allowed"), got[0], "EXEC[0]")
	})
}

func TestFlatErrorInStep(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig, expr := uniq(t, "t"), uniq(t, "expr")
		c.registerScript(sid, fmt.Sprintf(`
def f(x):
    raise flat_error('flat message ' + x[1])
GB('CommandReader').map(f).register(trigger=%s, mode='sync')
GB('CommandReader').map(lambda x: flat_error('flat expression ' + x[1])).register(trigger=%s, mode='async_local')
`, pyQuote(trig), pyQuote(expr)))
		c.expectErr("flat message a", "RG.TRIGGER", trig, "a")
		entry := c.registrationByTrigger(trig)
		require.Equal(t, "flat message a", field(t, entry[7].([]any), "lastError"))
		c.expect(L(L(), L("flat in run")), "RG.PYEXECUTE", "def f(x):\n    raise flat_error('flat in run')\nGB('ShardsIDReader').map(f).run()")
		// flat_error(msg) raises by itself (redisgears.flatError): used as an expression it fails the
		// execution with exactly msg too (spec §8).
		c.expectErr("flat expression b", "RG.TRIGGER", expr, "b")
		c.expect(L(L(), L("m")), "RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: flat_error('m')).run()")
		c.match(tracebackErr("gears.error: not enough arguments for time flat error"),
			c.doErr("RG.PYEXECUTE", "flat_error()"), "flat_error()")
	})
}

func TestIsAsyncAllowAndHashtag(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		syncT := c.regTrigger(".map(lambda x: isAsyncAllow())", "mode='sync', convertToStr=False")
		asyncT := c.regTrigger(".map(lambda x: isAsyncAllow())", "mode='async_local', convertToStr=False")
		c.expect(L(1), "RG.TRIGGER", syncT)
		c.expect(L(1), "RG.TRIGGER", asyncT)
		c.match(L(L(0)), c.multiExec(L("RG.TRIGGER", syncT)), "isAsyncAllow inside MULTI")
		// Outside an execution it is False (spec §2.5); flat_error carries the value out.
		c.expectErr("False", "RG.PYEXECUTE", "raise flat_error(str(isAsyncAllow()))")
		c.expect(L(L("06S"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: hashtag()).run()")
		h := c.regTrigger(".map(lambda x: 'key{%s}' % hashtag())", "mode='sync'")
		c.expect(L("key{06S}"), "RG.TRIGGER", h)
	})
}

func TestRegisterArgumentErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		cases := []struct{ args, want string }{
			{"trigger=1", "trigger argument is not string"},
			{"", "no trigger or hook argument was given"},
			{"trigger='x', hook='set'", "trigger argument can not be given with keyprefix or hook"},
			{"trigger='x', inorder='yes'", "inorder argument is be boolean"},
			{"trigger='x', mode='fast'", "unknown execution mode"},
			{"trigger='x', mode=1", "execution mode must be a string"},
			{"trigger='x', onRegistered=1", "OnRegistered argument must be a function"},
		}
		for _, tc := range cases {
			script := "GB('CommandReader').register(" + tc.args + ")"
			c.match(tracebackErr("gears.error: "+tc.want), c.doErr("RG.PYEXECUTE", script), script)
		}
		c.match(tracebackErr("gears.error: map argument must be a function"), c.doErr("RG.PYEXECUTE", "GB('CommandReader').map(1)"), "map(1)")
		c.match(tracebackErr("gears.error: limit argument must be a number"), c.doErr("RG.PYEXECUTE", "GB('CommandReader').limit('x')"), "limit('x')")
	})
}

// TestOnRegistered: the real server calls onRegistered synchronously while it applies the registration
// (src/execution_plan.c FlatExecutionPlan_AddToRegisterDict), before RG.PYEXECUTE replies OK, so a trigger
// sent right after the OK sees its effect.
func TestOnRegistered(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := uniq(t, "t")
		c.registerScript(uniq(t, "s"), fmt.Sprintf(`
state = 'not yet'
def onreg(*args):
    global state
    state = 'registered'
def f(x):
    global state
    return state
GB('CommandReader').map(f).register(trigger=%s, mode='sync', onRegistered=onreg)
`, pyQuote(trig)))
		c.expect(L("registered"), "RG.TRIGGER", trig)
	})
}

func TestUnpicklableGlobalFailsRegistration(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := uniq(t, "t")
		sid := uniq(t, "s")
		text := c.doErr("RG.PYEXECUTE", fmt.Sprintf(`
import threading
lock = threading.Lock()
def guarded(x):
    with lock:
        return 'ok'
GB('CommandReader').map(guarded).register(trigger=%s)
`, pyQuote(trig)), "ID", sid)
		lines, err := parsePyStrList(text)
		require.NoError(t, err, "error text %q", text)
		last := lines[len(lines)-1]
		require.True(t, strings.HasPrefix(last, "gears.error: Error occured when serialized a python callback, callback="), "last line %q", last)
		require.Contains(t, last, "pickle")
		require.Contains(t, last, "_thread.lock")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)
		require.Nil(t, c.sessionEntry(sid))
		// Objects created inside a call are not serialized.
		ok := c.regTrigger(".map(lambda x: __import__('threading').Lock().acquire())", "mode='sync', convertToStr=False")
		c.expect(L(1), "RG.TRIGGER", ok)
	})
}
