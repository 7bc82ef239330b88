package gearstest_test

// RG.TRIGGER / RG.TRIGGERONKEY, RG.DUMPREGISTRATIONS, RG.UNREGISTER, RG.CLEARREGISTRATIONSSTATS,
// RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS (gears-spec.md §1.2–§1.4, §1.9, §8 and the goldens
// cmd-trigger-sync, dump-registrations-stats, multi-async, unregister).

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTriggerModesReplyTheRecord(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, mode := range []string{"sync", "async", "async_local"} {
			trig := c.regTrigger("", "mode='"+mode+"'")
			c.expect(L(fmt.Sprintf("['%s', 'foo', 'bar']", trig)), "RG.TRIGGER", trig, "foo", "bar")
			c.expect(L(fmt.Sprintf("['%s']", trig)), "RG.TRIGGER", trig)
			// The default mode is async.
		}
		trig := c.regTrigger("", "")
		entry := c.registrationByTrigger(trig)
		require.NotNil(t, entry)
		require.Equal(t, "async", field(t, entry[7].([]any), "mode"))
	})
}

func TestTriggerOnKey(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		key := uniq(t, "k")
		trig := c.regTrigger(".map(lambda x: execute('set', x[1], x[2]))", "")
		c.expect(L("OK"), "RG.TRIGGERONKEY", trig, key, "v1")
		c.expect("v1", "GET", key)
		t.Cleanup(func() { c.Del(testCtx(t), key) })
		echo := c.regTrigger("", "mode='sync'")
		c.expect(L(fmt.Sprintf("['%s', 'k', 'a']", echo)), "RG.TRIGGERONKEY", echo, "k", "a")
		// No key is accepted (spec §8).
		c.expect(L(fmt.Sprintf("['%s']", echo)), "RG.TRIGGERONKEY", echo)
	})
}

func TestTriggerErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectErr("ERR wrong number of arguments for 'rg.trigger' command", "rg.trigger")
		c.expectErr("ERR wrong number of arguments for 'rg.triggeronkey' command", "rg.triggeronkey")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", uniq(t, "none"))
		c.expectErr("ERR subcommand not found", "RG.TRIGGERONKEY", uniq(t, "none"), "k")
		// Trigger names are case-sensitive.
		trig := c.regTrigger("", "mode='sync'")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", "X"+trig)
	})
}

func TestTriggerInsideMulti(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		syncT := c.regTrigger("", "mode='sync'")
		asyncT := c.regTrigger("", "")
		localT := c.regTrigger("", "mode='async_local'")
		const refused = "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."
		got := c.multiExec(L("RG.TRIGGER", syncT, "a"), L("RG.TRIGGER", asyncT, "a"), L("RG.TRIGGERONKEY", localT, "k"))
		c.match(L(L(fmt.Sprintf("['%s', 'a']", syncT)), errElem(refused), errElem(refused)), got, "EXEC")
		// A refused trigger is not counted (golden multi-async).
		c.expect(L(fmt.Sprintf("['%s', 'b']", asyncT)), "RG.TRIGGER", asyncT, "b")
		entry := c.registrationByTrigger(asyncT)
		require.NotNil(t, entry)
		c.match(regDataCmd("async", 1, 1, 0, 0, nil, asyncT, 0), entry[7], "RegistrationData")
		entry = c.registrationByTrigger(syncT)
		c.match(regDataCmd("sync", 1, 1, 0, 0, nil, syncT, 0), entry[7], "RegistrationData")
	})
}

func TestDumpRegistrationsEntry(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		sess := c.registerScript(sid, fmt.Sprintf(`
def f(x):
    if len(x) > 1:
        raise Exception('bad arg ' + x[1])
    return 'ok'
GB('CommandReader').map(f).register(trigger=%s, mode='sync')
`, pyQuote(trig)))
		require.Len(t, sess.regs, 1)
		id := sess.regs[0]
		c.match(regIDPattern, id, "registration id")
		want := func(triggered, success, failures int, lastError any) []any {
			return L("id", id, "reader", "CommandReader", "desc", nil,
				"RegistrationData", regDataCmd("sync", triggered, success, failures, 0, lastError, trig, 0),
				"PD", pdString(sid, "", sess.regs),
				"ExecutionThreadPool", "DefaultPool")
		}
		c.match(want(0, 0, 0, nil), c.registration(id), "fresh registration")
		c.expect(L("ok"), "RG.TRIGGER", trig)
		requireTraceback(t, c.doErr("RG.TRIGGER", trig, "a"), "Exception: bad arg a")
		c.expect(L("ok"), "RG.TRIGGER", trig)
		// lastError is cleared by a success.
		c.match(want(3, 2, 1, nil), c.registration(id), "after success")
		requireTraceback(t, c.doErr("RG.TRIGGER", trig, "b"), "Exception: bad arg b")
		c.match(want(4, 2, 2, tracebackErr("Exception: bad arg b")), c.registration(id), "after failure")
	})
}

func TestDumpRegistrationsDescAndInorder(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		sess := c.registerScript(sid, fmt.Sprintf("GB('CommandReader', desc='my gear').register(trigger=%s, mode='async_local', inorder=True)", pyQuote(trig)),
			"DESCRIPTION", "session desc")
		entry := c.registration(sess.regs[0])
		c.match(L("id", sess.regs[0], "reader", "CommandReader", "desc", "my gear",
			"RegistrationData", regDataCmd("async_local", 0, 0, 0, 0, nil, trig, 1),
			"PD", pdString(sid, "session desc", sess.regs),
			"ExecutionThreadPool", "DefaultPool"), entry, "registration")
		// Extra arguments are ignored (spec §1.3).
		require.NotEmpty(t, c.do("RG.DUMPREGISTRATIONS", "extra"))
	})
}

func TestRegisterReturnsIDAndBuilderIsReusable(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		t1, t2 := uniq(t, "t1"), uniq(t, "t2")
		sid := uniq(t, "s")
		// register() returns the registration id; the same builder registers twice (spec §2.4).
		sess := c.registerScript(sid, fmt.Sprintf(`
b = GB('CommandReader').map(lambda x: 'same')
r1 = b.register(trigger=%s, mode='sync')
r2 = b.register(trigger=%s, mode='sync')
GB('CommandReader').map(lambda x: [r1, r2]).register(trigger=%s, mode='sync', convertToStr=False)
`, pyQuote(t1), pyQuote(t2), pyQuote(t1+"ids")))
		require.Len(t, sess.regs, 3)
		c.expect(L("same"), "RG.TRIGGER", t1)
		c.expect(L("same"), "RG.TRIGGER", t2)
		ids := c.do("RG.TRIGGER", t1+"ids").([]any)
		require.Len(t, ids, 1)
		pair := ids[0].([]any)
		require.Len(t, pair, 2)
		require.Contains(t, sess.regs, pair[0])
		require.Contains(t, sess.regs, pair[1])
		require.NotEqual(t, pair[0], pair[1])
	})
}

func TestRegisterErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		trig := c.regTrigger("", "mode='sync'")
		// Stand-alone failures come back as traceback lists ending in gears.error (spec §8).
		requireTraceback(t, c.doErr("RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(trig))),
			"gears.error: trigger already registered")
		other := uniq(t, "t")
		requireTraceback(t, c.doErr("RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').register(trigger=%s)\nGB('CommandReader').register(trigger=%s)", pyQuote(other), pyQuote(other))),
			"gears.error: trigger already registered in this session")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", other)
	})
}

func TestUnregister(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		sess := c.registerScript(sid, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(trig)))
		c.expect(L(fmt.Sprintf("['%s']", trig)), "RG.TRIGGER", trig)
		c.expectErr("execution is not registered", "RG.UNREGISTER", zeroShard+"-999999999")
		c.expectErr("execution is not registered", "RG.UNREGISTER", "nonsense")
		c.expectErr("ERR wrong number of arguments for 'rg.unregister' command", "rg.unregister")
		c.expectErr("ERR wrong number of arguments for 'rg.unregister' command", "rg.unregister", "a", "b", "c")
		c.expectOK("RG.UNREGISTER", sess.regs[0])
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)
		require.Nil(t, c.registration(sess.regs[0]))
		// The session owned nothing else: it disappears and its id is free again.
		require.Nil(t, c.sessionEntry(sid))
		c.expectErr("execution is not registered", "RG.UNREGISTER", sess.regs[0])
		c.registerScript(sid, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(trig)))
		c.expect(L(fmt.Sprintf("['%s', 'again']", trig)), "RG.TRIGGER", trig, "again")
	})
}

func TestUnregisterAbortPendingOption(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, third := range []string{"ABORTPENDING", "abortpending", "whatever"} {
			sid := uniq(t, "s")
			sess := c.registerScript(sid, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t"))))
			c.expectOK("RG.UNREGISTER", sess.regs[0], third)
		}
	})
}

func TestClearRegistrationsStats(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		sess := c.registerScript(sid, fmt.Sprintf("GB('CommandReader').map(lambda x: x[1] if len(x) > 1 else nosuch).register(trigger=%s, mode='sync')", pyQuote(trig)))
		c.expect(L("a"), "RG.TRIGGER", trig, "a")
		requireTraceback(t, c.doErr("RG.TRIGGER", trig), "NameError: name 'nosuch' is not defined")
		c.match(regDataCmd("sync", 2, 1, 1, 0, tracebackErr("NameError: name 'nosuch' is not defined"), trig, 0),
			c.registration(sess.regs[0])[7], "before clear")
		c.expectOK("RG.CLEARREGISTRATIONSSTATS")
		data := c.registration(sess.regs[0])[7].([]any)
		c.match(regDataCmd("sync", 0, 0, 0, 0, nil, trig, 0), data, "after clear")
		require.Equal(t, int64(0), field(t, data, "lastRunDurationMS"))
		require.Equal(t, int64(0), field(t, data, "totalRunDurationMS"))
		c.expectErr("ERR wrong number of arguments for 'rg.clearregistrationsstats' command", "rg.clearregistrationsstats", "x")
	})
}

func TestPauseUnpauseRegistrations(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectErr("ERR wrong number of arguments for 'rg.pauseregistrations' command", "rg.pauseregistrations")
		c.expectErr("ERR wrong number of arguments for 'rg.unpauseregistrations' command", "rg.unpauseregistrations")
		c.expectErr("ERR wrong number of arguments for 'rg.pauseregistrations' command", "rg.pauseregistrations", "a", "b")
		missing := zeroShard + "-999999999"
		c.expectErr(fmt.Sprintf("Execution %s does not exists on shard %s", missing, zeroShard), "RG.PAUSEREGISTRATIONS", missing)
		c.expectErr(fmt.Sprintf("Execution %s does not exists on shard %s", missing, zeroShard), "RG.UNPAUSEREGISTRATIONS", missing)
		sess := c.registerScript(uniq(t, "s"), fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t"))))
		c.expectErr("Reader CommandReader does not support pause", "RG.PAUSEREGISTRATIONS", sess.regs[0])
		c.expectErr("Reader CommandReader does not support unpause", "RG.UNPAUSEREGISTRATIONS", sess.regs[0])
	})
}
