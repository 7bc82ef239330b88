package gearstest_test

// Facts that only a fresh server shows: the exact values of the registration and execution counters
// (gears-spec.md §0, §8; goldens sess-dump-plain, sess-upgrade, exec-unblocking, unregister). Each test
// starts its own gearstest server, so they are emulator-only and skip when GEARS_ADDR points at a shared
// real server.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// freshClient starts a fresh gearstest server for t and returns a client of the given protocol.
func freshClient(t *testing.T, proto int) *client {
	t.Helper()
	if onRealServer() {
		t.Skip("needs a fresh server (counters start at 0); GEARS_ADDR points at a shared one")
	}
	tg := &target{addr: gearstest.Run(t).Addr()}
	return tg.newClient(t, proto)
}

func eachFresh(t *testing.T, fn func(t *testing.T, c *client)) {
	for _, p := range protocols {
		t.Run(map[int]string{2: "RESP2", 3: "RESP3"}[p], func(t *testing.T) {
			fn(t, freshClient(t, p))
		})
	}
}

// TestFreshRegistrationIDs: each registering RG.PYEXECUTE uses three registration ids, so the first
// session's registration is …-1, the next …-4, then …-7 (spec §8). Needs a fresh server because the
// counter is server-wide.
func TestFreshRegistrationIDs(t *testing.T) {
	eachFresh(t, func(t *testing.T, c *client) {
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').register(trigger='b')", "ID", "bsess")
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').register(trigger='a')", "ID", "asess", "DESCRIPTION", "first one")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", "runonly")
		c.expect(L(
			L("ID", "asess", "sessionDescription", "first one", "refCount", 1, "linked", "primary", "dead", "false", "requirementInstallationNeeded", 0, "requirements", L(), "registrations", L(zeroShard+"-4")),
			L("ID", "bsess", "sessionDescription", nil, "refCount", 1, "linked", "primary", "dead", "false", "requirementInstallationNeeded", 0, "requirements", L(), "registrations", L(zeroShard+"-1")),
		), "RG.PYDUMPSESSIONS")
	})
}

// TestFreshUpgradeIDs replays golden sess-upgrade: after an UPGRADE the registration is …-4, and a new
// session after that gets …-7. Needs a fresh server for the exact ids.
func TestFreshUpgradeIDs(t *testing.T) {
	eachFresh(t, func(t *testing.T, c *client) {
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').count().register(trigger='test')", "ID", "test")
		c.expect(L("1"), "RG.TRIGGER", "test")
		c.expectErr("Session test already exists", "RG.PYEXECUTE", "GB('CommandReader').count().register(trigger='test', mode='sync')", "ID", "test")
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'v2').register(trigger='test', mode='sync')", "ID", "test", "UPGRADE")
		c.expect(L("v2"), "RG.TRIGGER", "test")
		c.expect(L(L("id", zeroShard+"-4", "reader", "CommandReader", "desc", nil,
			"RegistrationData", regDataCmd("sync", 1, 1, 0, 0, nil, "test", 0),
			"PD", pdString("test", "", []string{zeroShard + "-4"}),
			"ExecutionThreadPool", "DefaultPool")), "RG.DUMPREGISTRATIONS")
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').register(trigger='fresh')", "ID", "newone", "UPGRADE")
		c.expect(L(L("ID", "newone", "sessionDescription", nil, "refCount", 1, "linked", "primary", "dead", "false",
			"requirementInstallationNeeded", 0, "requirements", L(), "registrations", L(zeroShard+"-7"))),
			"RG.PYDUMPSESSIONS", "SESSIONS", "newone")
	})
}

// TestFreshExecutionIDs replays golden exec-unblocking: the first execution on a fresh server is …-0.
func TestFreshExecutionIDs(t *testing.T) {
	eachFresh(t, func(t *testing.T, c *client) {
		c.expect(zeroShard+"-0", "RG.PYEXECUTE", "GB('ShardsIDReader').count().run()", "UNBLOCKING")
		c.expect(L(L("1"), L()), "RG.GETRESULTSBLOCKING", zeroShard+"-0")
		c.expect(L(L("1"), L()), "RG.GETRESULTS", zeroShard+"-0")
		c.expectErr("execution plan does not exist", "RG.GETRESULTS", zeroShard+"-77")
		c.expectErr("execution plan does not exist", "RG.GETRESULTSBLOCKING", zeroShard+"-77")
		c.expect(L(L("executionId", zeroShard+"-0", "status", "done", "registered", 0)), "RG.DUMPEXECUTIONS")
	})
}

// TestFreshUnregisterGolden replays golden unregister, whose ids and empty dumps need a fresh server.
func TestFreshUnregisterGolden(t *testing.T) {
	eachFresh(t, func(t *testing.T, c *client) {
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').register(trigger='t')", "ID", "s")
		c.expect(L("['t']"), "RG.TRIGGER", "t")
		c.expectErr("execution is not registered", "RG.UNREGISTER", zeroShard+"-99")
		c.expectOK("RG.UNREGISTER", zeroShard+"-1")
		c.expectErr("ERR subcommand not found", "RG.TRIGGER", "t")
		c.expect(L(), "RG.DUMPREGISTRATIONS")
		c.expect(L(), "RG.PYDUMPSESSIONS")
		c.expectErr("execution is not registered", "RG.UNREGISTER", zeroShard+"-1")
		c.expectOK("RG.PYEXECUTE", "GB('CommandReader').register(trigger='t')", "ID", "s")
		c.expect(L("['t', 'again']"), "RG.TRIGGER", "t", "again")
		require.Len(t, c.do("RG.DUMPREGISTRATIONS").([]any), 1)
	})
}
