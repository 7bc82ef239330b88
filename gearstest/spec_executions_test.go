package gearstest_test

// Execution commands (gears-spec.md §1.5–§1.8; golden exec-unblocking): RG.DUMPEXECUTIONS,
// RG.GETEXECUTION, RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.ABORTEXECUTION, RG.DROPEXECUTION.

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// unknownExec is an execution id no server has handed out in this suite.
const unknownExec = zeroShard + "-999999999"

// stepTypes are the step types RG.GETEXECUTION may show (spec §1.6).
var stepTypes = map[string]bool{"none": true, "map": true, "filter": true, "reader": true, "group": true,
	"extractkey": true, "repartition": true, "reduce": true, "collect": true, "foreach": true, "flatmap": true,
	"limit": true, "accumulate": true, "accumulatebykey": true}

var stepEntry = matchFunc{"<step>", func(proto int, got any) error {
	step, ok := got.([]any)
	if !ok {
		return fmt.Errorf("want a step array, got %#v", got)
	}
	if err := matchValue(proto, L("type", anyString, "duration", nonNegInt, "name", anyString, "arg", anyString), step, "step"); err != nil {
		return err
	}
	if !stepTypes[step[1].(string)] {
		return fmt.Errorf("unknown step type %q", step[1])
	}
	return nil
}}

func stepList(min int) matcher {
	return matchFunc{fmt.Sprintf("<≥%d steps>", min), func(proto int, got any) error {
		steps, ok := got.([]any)
		if !ok || len(steps) < min {
			return fmt.Errorf("want at least %d steps, got %#v", min, got)
		}
		for i, s := range steps {
			if err := stepEntry.check(proto, s); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
		return nil
	}}
}

func TestExecutionLifecycle(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').count().run()", "UNBLOCKING").(string)
		c.expect(L(L("1"), L()), "RG.GETRESULTSBLOCKING", id)
		c.expect(L(L("1"), L()), "RG.GETRESULTS", id)
		// Neither drops the execution.
		c.expect(L(L("1"), L()), "RG.GETRESULTS", id)

		var mine []any
		for _, e := range c.do("RG.DUMPEXECUTIONS").([]any) {
			if e.([]any)[1] == id {
				mine = append(mine, e)
			}
		}
		c.match(L(L("executionId", id, "status", "done", "registered", 0)), mine, "DUMPEXECUTIONS entry")

		plan := L("status", "done", "shards_received", nonNegInt, "shards_completed", nonNegInt,
			"results", 1, "errors", L(), "total_duration", nonNegInt, "read_duration", nonNegInt, "steps", stepList(2))
		want := L(L("shard_id", zeroShard, "execution_plan", plan))
		c.expect(want, "RG.GETEXECUTION", id)
		c.expect(want, "RG.GETEXECUTION", id, "SHARD")
		c.expect(want, "RG.GETEXECUTION", id, "shard")
		c.expectErr("unknown subcommand", "RG.GETEXECUTION", id, "FOO")
		c.expectErr("no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead", "RG.GETEXECUTION", id, "CLUSTER")

		// ABORTEXECUTION of a finished execution is OK; DROPEXECUTION removes it.
		c.expectOK("RG.ABORTEXECUTION", id)
		c.expect(L(L("1"), L()), "RG.GETRESULTS", id)
		c.expectOK("RG.DROPEXECUTION", id)
		c.expectErr("execution plan does not exist", "RG.GETRESULTS", id)
		c.expectErr("execution plan does not exist", "RG.GETEXECUTION", id)
		for _, e := range c.do("RG.DUMPEXECUTIONS").([]any) {
			require.NotEqual(t, id, e.([]any)[1], "dropped execution still listed")
		}
	})
}

func TestExecutionWithErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: nosuchname).run()", "UNBLOCKING").(string)
		res := c.do("RG.GETRESULTSBLOCKING", id).([]any)
		c.match(L(L(), L(tracebackErr("NameError: name 'nosuchname' is not defined"))), res, "results")
		c.expect(L(L("shard_id", zeroShard, "execution_plan", L("status", "done", "shards_received", nonNegInt, "shards_completed", nonNegInt,
			"results", 0, "errors", L(tracebackErr("NameError: name 'nosuchname' is not defined")),
			"total_duration", nonNegInt, "read_duration", nonNegInt, "steps", stepList(2)))), "RG.GETEXECUTION", id)
		c.expectOK("RG.DROPEXECUTION", id)
	})
}

func TestExecutionCommandErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectErr("execution plan does not exist", "RG.GETRESULTS", unknownExec)
		c.expectErr("execution plan does not exist", "RG.GETRESULTS", "nonsense")
		c.expectErr("execution plan does not exist", "RG.GETRESULTSBLOCKING", unknownExec)
		c.expectErr("execution plan does not exist", "RG.GETEXECUTION", unknownExec)
		c.expectErr("execution plan does not exist", "RG.DROPEXECUTION", unknownExec)
		c.expectErr("execution does not exist", "RG.ABORTEXECUTION", unknownExec)
		c.expectErr("ERR wrong number of arguments for 'rg.getresults' command", "rg.getresults")
		c.expectErr("ERR wrong number of arguments for 'rg.getresultsblocking' command", "rg.getresultsblocking")
		c.expectErr("ERR wrong number of arguments for 'rg.getresultsblocking' command", "rg.getresultsblocking", "a", "b")
		c.expectErr("ERR wrong number of arguments for 'rg.getexecution' command", "rg.getexecution")
		c.expectErr("ERR wrong number of arguments for 'rg.getexecution' command", "rg.getexecution", "a", "b", "c")
		c.expectErr("ERR wrong number of arguments for 'rg.dropexecution' command", "rg.dropexecution")
		c.expectErr("ERR wrong number of arguments for 'rg.dropexecution' command", "rg.dropexecution", "a", "b")
		c.expectErr("ERR wrong number of arguments for 'rg.abortexecution' command", "rg.abortexecution")
		c.expectErr("ERR wrong number of arguments for 'rg.abortexecution' command", "rg.abortexecution", "a", "b")
	})
}

func TestRunningExecution(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		key := uniq(t, "gate")
		t.Cleanup(func() { c.Del(testCtx(t), key) })
		// The execution waits until the test sets the gate key, so it is surely running meanwhile.
		script := fmt.Sprintf(`
import time
def wait(x):
    for _ in range(1500):
        if execute('get', %s) == 'go':
            return 'released'
        time.sleep(0.01)
    return 'gave up'
GB('ShardsIDReader').map(wait).run()
`, pyQuote(key))
		id := c.do("RG.PYEXECUTE", script, "UNBLOCKING").(string)
		c.expectErr("execution is still running", "RG.GETRESULTS", id)
		c.expectErr("can not drop a not yet finished execution, abort it first.", "RG.DROPEXECUTION", id)
		var status any
		for _, e := range c.do("RG.DUMPEXECUTIONS").([]any) {
			if e.([]any)[1] == id {
				status = e.([]any)[3]
			}
		}
		require.Equal(t, "running", status)
		// While running, results is -1 and errors is empty (commands.c Command_ExecutionGet).
		c.expect(L(L("shard_id", zeroShard, "execution_plan", L("status", "running", "shards_received", nonNegInt, "shards_completed", nonNegInt,
			"results", -1, "errors", L(), "total_duration", nonNegInt, "read_duration", nonNegInt, "steps", stepList(2)))),
			"RG.GETEXECUTION", id)
		c.expect("OK", "SET", key, "go")
		c.expect(L(L("released"), L()), "RG.GETRESULTSBLOCKING", id)
		c.expectOK("RG.DROPEXECUTION", id)
	})
}

// TestMaxExecutionsDropsOldestDone: the execution list is capped by MaxExecutions, dropping the oldest
// finished executions first (spec §1.5).
func TestMaxExecutionsDropsOldestDone(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		restoreConfig(t, c, "MaxExecutions")
		c.expect(L("OK"), "RG.CONFIGSET", "MaxExecutions", "3")
		var ids []string
		for i := 0; i < 5; i++ {
			id := c.do("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING").(string)
			c.expect(L(L("1"), L()), "RG.GETRESULTSBLOCKING", id)
			ids = append(ids, id)
		}
		c.expectErr("execution plan does not exist", "RG.GETRESULTS", ids[0])
		for _, id := range ids[2:] {
			c.expect(L(L("1"), L()), "RG.GETRESULTS", id)
		}
		require.LessOrEqual(t, len(c.do("RG.DUMPEXECUTIONS").([]any)), 4)
	})
}

// TestRunWithPartialErrors checks spec §8: in a run(), a step that raises for one record ends the
// execution there; the records already produced come back with the error, the rest are not read.
func TestRunWithPartialErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		script := `
def gen():
    for i in range(4):
        yield i
def f(x):
    if x == 2:
        raise ValueError('two')
    return x * 10
GB('PythonReader').map(f).run(gen)
`
		c.expect(L(L("0", "10"), L(tracebackErr("ValueError: two"))), "RG.PYEXECUTE", script)
		// The same with a flat error, and through a later step: the first error ends it.
		c.expect(L(L("1"), L("stop at 2")), "RG.PYEXECUTE",
			"GB('PythonReader').map(lambda x: x + 1).map(lambda x: flat_error('stop at %d' % x) if x == 2 else x).run(lambda: (i for i in range(4)))")
	})
}

// TestRunModes checks run()'s mode argument (redisgears_python.c run()): async and async_local are
// accepted, anything else is refused with "unknown execution mode" (spec §8), a non-string too.
func TestRunModes(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, mode := range []string{"async", "async_local"} {
			c.expect(L(L("1"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('ShardsIDReader').run(mode=%s)", pyQuote(mode)))
		}
		for _, mode := range []string{"sync", "SYNC", "nosuchmode"} {
			c.match(tracebackErr("gears.error: unknown execution mode"),
				c.doErr("RG.PYEXECUTE", fmt.Sprintf("GB('ShardsIDReader').run(mode=%s)", pyQuote(mode))), "run(mode="+mode+")")
		}
		c.match(tracebackErr("gears.error: unknown execution mode"),
			c.doErr("RG.PYEXECUTE", "GB('PythonReader').run(lambda: (i for i in [1]), mode='sync')"), "PythonReader run(mode='sync')")
		c.match(tracebackErr("gears.error: execution mode must be a string"),
			c.doErr("RG.PYEXECUTE", "GB('ShardsIDReader').run(mode=1)"), "run(mode=1)")
		// The reader is checked first: CommandReader cannot run at all.
		c.match(tracebackErr("gears.error: Given reader do not support run or not exists"),
			c.doErr("RG.PYEXECUTE", "GB('CommandReader').run(mode='sync')"), "CommandReader run(mode='sync')")
	})
}
