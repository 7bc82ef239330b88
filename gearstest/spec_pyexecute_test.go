package gearstest_test

// RG.PYEXECUTE (gears-spec.md §1.1, §8): argument parsing, every argument error, script errors, run()
// results for the ShardsIDReader and PythonReader, UNBLOCKING.

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPyExecuteScriptWithoutGearsWorkRepliesOK(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectOK("RG.PYEXECUTE", "x = 1")
		c.expectOK("RG.PYEXECUTE", "def f(a):\n    return a\n")
		// Options are case-insensitive; REQUIREMENTS with no items is accepted and ignored.
		c.expectOK("RG.PYEXECUTE", "x = 1", "unblocking")
		c.expectOK("RG.PYEXECUTE", "x = 1", "REQUIREMENTS")
		c.expectOK("RG.PYEXECUTE", "x = 1", "description", "d", "UPGRADE", "FORCE_REINSTALL_REQUIREMENTS")
	})
}

func TestPyExecuteArity(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectErr("ERR wrong number of arguments for 'rg.pyexecute' command", "rg.pyexecute")
	})
}

func TestPyExecuteArgumentErrors(t *testing.T) {
	tg := newTarget(t)
	tg.eachProtocol(t, func(t *testing.T, c *client) {
		cases := []struct {
			args []any
			want string
		}{
			{L("ID"), "ID is missing"},
			{L("id"), "ID is missing"},
			{L("UNBLOCKING", "ID"), "ID is missing"},
			{L("DESCRIPTION"), "DESCRIPTION is missing"},
			{L("REPLACE_WITH"), "REPLACE_WITH is missing"},
			{L("ID", "bad id"), "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"},
			{L("ID", "x.y"), "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"},
			{L("FOO"), "Unknown arguments were given: FOO"},
			{L("UNBLOCKING", "bar", "baz"), "Unknown arguments were given: bar"},
			{L("UPGRADE", "1"), "Unknown arguments were given: 1"},
		}
		for _, tc := range cases {
			args := append(L("RG.PYEXECUTE", "x = 1"), tc.args...)
			c.expectErr(tc.want, args...)
		}
	})
}

func TestPyExecuteInsideMultiIsRefused(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		got := c.multiExec(L("RG.PYEXECUTE", "x = 1"))
		c.match(L(errElem("Can not run gears inside a multi exec, lua, or when blocking is not allowed")), got, "EXEC")
	})
}

func TestPyExecuteOptionsInAnyOrder(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		script := fmt.Sprintf("GB('CommandReader').register(trigger=%s, mode='sync')", pyQuote(trig))
		c.expectOK("RG.PYEXECUTE", script, "upgrade", "description", "my desc", "unblocking", "id", sid, "REQUIREMENTS")
		c.cleanupSession(sid)
		entry := c.sessionEntry(sid)
		require.NotNil(t, entry)
		require.Equal(t, "my desc", field(t, entry, "sessionDescription"))
		c.expect(L(fmt.Sprintf("['%s', 'a']", trig)), "RG.TRIGGER", trig, "a")
	})
}

func TestPyExecuteScriptErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		// spec §1.1: traceback list repr; the frame of a module-level error is fixed.
		c.expectErr(`['Traceback (most recent call last):\n', '  File "<string>", line 1, in <module>\n', "NameError: name 'failure' is not defined\n"]`,
			"RG.PYEXECUTE", "failure")
		requireTraceback(t, c.doErr("RG.PYEXECUTE", "raise Exception('boom')"), "Exception: boom")
		requireTraceback(t, c.doErr("RG.PYEXECUTE", "x = 1\ny = {}\ny['k']"), "KeyError: 'k'")
		// flat_error: the text is the message only (spec §1.1).
		c.expectErr("plain message", "RG.PYEXECUTE", "raise flat_error('plain message')")
	})
}

func TestPyExecuteSyntaxErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		// Golden exec-syntax-error: compile errors carry no traceback list.
		c.expectErr("Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 1)",
			"RG.PYEXECUTE", "1defs + GearsBuilder().notexists()")
		c.expectErr("Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 1)",
			"RG.PYEXECUTE", "def f(:")
		c.expectErr("Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 3)",
			"RG.PYEXECUTE", "x = 1\ny = 2\nz = = 3\n")
	})
}

// TestPyExecutePython37Syntax checks that syntax newer than Python 3.7 (what RedisGears 1.2 embeds) is
// rejected the way a 3.7 interpreter rejects it, naming the line.
func TestPyExecutePython37Syntax(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		// Walrus operator (3.8).
		c.expectErr("Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 2)",
			"RG.PYEXECUTE", "x = [1, 2]\nif (n := len(x)) > 1:\n    pass\n")
		// Positional-only parameters (3.8).
		c.expectErr("Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 3)",
			"RG.PYEXECUTE", "x = 1\n\ndef f(a, /, b):\n    return a\n")
		// Valid 3.7 is accepted: f-strings, async def, keyword-only args, dict comprehension.
		c.expectOK("RG.PYEXECUTE", "v = 3\ns = f'{v}'\nasync def g():\n    return 1\ndef h(a, *, b=2):\n    return {k: k for k in range(a)}\n")
	})
}

func TestPyExecuteRunShardsIDReader(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').run()")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run()")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run(mode='async_local')")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').run(mode='async')")
		c.expect(L(L(1), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run(convertToStr=False)")
		c.expect(L(L("x1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: 'x' + x).run()")
		// A step error drops the record and lands in the errors array.
		res := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: noexists).run()").([]any)
		require.Len(t, res, 2)
		require.Equal(t, L(), res[0])
		errs := res[1].([]any)
		require.Len(t, errs, 1)
		c.match(tracebackErr("NameError: name 'noexists' is not defined"), errs[0], "errors[0]")
	})
}

func TestPyExecuteRunPythonReader(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		gen := "def gen():\n    for i in range(3):\n        yield i\n"
		c.expect(L(L("0", "1", "2"), L()), "RG.PYEXECUTE", gen+"GB('PythonReader').run(gen)")
		c.expect(L(L(0, 1, 2), L()), "RG.PYEXECUTE", gen+"GB('PythonReader').run(gen, convertToStr=False)")
		c.expect(L(L("3"), L()), "RG.PYEXECUTE", gen+"GB('PythonReader').count().run(gen)")
		c.expect(L(L("[0, 1]"), L()), "RG.PYEXECUTE", gen+"GB('PythonReader').filter(lambda x: x < 2).aggregate([], lambda a, r: a + [r], lambda a, r: a + r).run(gen)")
		// count() over no records yields no record at all (spec §8).
		c.expect(L(L(), L()), "RG.PYEXECUTE", "def empty():\n    return iter([])\nGB('PythonReader').count().run(empty)")
	})
}

func TestPyExecuteOnlyOneRunPerScript(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		requireTraceback(t, c.doErr("RG.PYEXECUTE", "GB('ShardsIDReader').run()\nGB('ShardsIDReader').run()"),
			"gears.error: Can not run more then 1 executions in a single script")
		requireTraceback(t, c.doErr("RG.PYEXECUTE", "GB('PythonReader').run(1)"), "gears.error: pyreader argument must be a function")
		requireTraceback(t, c.doErr("RG.PYEXECUTE", "GB('CommandReader').run()"), "gears.error: Given reader do not support run or not exists")
	})
}

func TestPyExecuteUnblocking(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').count().run()", "UNBLOCKING")
		c.match(regIDPattern, id, "UNBLOCKING reply")
		c.expect(L(L("1"), L()), "RG.GETRESULTSBLOCKING", id)
		c.expect(L(L("1"), L()), "RG.GETRESULTS", id)
		// UNBLOCKING is ignored for registrations (spec §1.1).
		sid := uniq(t, "s")
		c.expectOK("RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t"))), "UNBLOCKING", "ID", sid)
		c.cleanupSession(sid)
	})
}

func TestPyExecuteFailedScriptRollsBackRegistrations(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := uniq(t, "t")
		sid := uniq(t, "s")
		script := fmt.Sprintf("GB('CommandReader').register(trigger=%s)\nraise Exception('after register')", pyQuote(trig))
		requireTraceback(t, c.doErr("RG.PYEXECUTE", script, "ID", sid), "Exception: after register")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)
		require.Nil(t, c.sessionEntry(sid))
		require.Nil(t, c.registrationByTrigger(trig))
	})
}
