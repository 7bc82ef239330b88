package gearstest_test

// Python sessions (gears-spec.md §1.1, §1.12, §3.1–§3.3, §8; goldens sess-dump-plain, sess-upgrade):
// ID, DESCRIPTION, UPGRADE, REPLACE_WITH and their errors, roll-back on failure, RG.PYDUMPSESSIONS in every
// form, REQUIREMENTS and RG.PYDUMPREQS.

import (
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// sessionEntryWant is a plain RG.PYDUMPSESSIONS entry (16 elements).
func sessionEntryWant(sid string, desc any, regs []string) []any {
	r := make([]any, len(regs))
	for i, id := range regs {
		r[i] = id
	}
	return L("ID", sid, "sessionDescription", desc, "refCount", 1, "linked", "primary", "dead", "false",
		"requirementInstallationNeeded", 0, "requirements", L(), "registrations", r)
}

func TestSessionAlreadyExistsAndUpgrade(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		c.registerScript(sid, fmt.Sprintf("GB('CommandReader').count().register(trigger=%s)", pyQuote(trig)))
		c.expect(L("1"), "RG.TRIGGER", trig)
		c.expectErr(fmt.Sprintf("Session %s already exists", sid),
			"RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').count().register(trigger=%s, mode='sync')", pyQuote(trig)), "ID", sid)
		c.expectOK("RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').map(lambda x: 'v2').register(trigger=%s, mode='sync')", pyQuote(trig)), "ID", sid, "UPGRADE")
		c.expect(L("v2"), "RG.TRIGGER", trig)
		regs := c.sessionRegs(sid)
		require.Len(t, regs, 1)
		c.match(L("id", regs[0], "reader", "CommandReader", "desc", nil,
			"RegistrationData", regDataCmd("sync", 1, 1, 0, 0, nil, trig, 0),
			"PD", pdString(sid, "", regs), "ExecutionThreadPool", "DefaultPool"), c.registration(regs[0]), "upgraded registration")
		c.match(sessionEntryWant(sid, nil, regs), c.sessionEntry(sid), "session")
		// The old session is freed at once: nothing runs on it.
		for _, e := range c.do("RG.PYDUMPSESSIONS", "DEAD").([]any) {
			require.NotEqual(t, sid, e.([]any)[1], "upgraded session listed as dead with nothing running")
		}
		// UPGRADE of an id that does not exist is a plain create.
		fresh := uniq(t, "fresh")
		c.registerScript(fresh, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t"))), "UPGRADE")
		c.match(sessionEntryWant(fresh, nil, c.sessionRegs(fresh)), c.sessionEntry(fresh), "fresh session")
	})
}

func TestSessionUpgradeFailureRollsBack(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		c.registerScript(sid, fmt.Sprintf("GB('CommandReader').map(lambda x: 'v1').register(trigger=%s, mode='sync')", pyQuote(trig)))
		before := c.sessionRegs(sid)
		requireTraceback(t, c.doErr("RG.PYEXECUTE",
			fmt.Sprintf("GB('CommandReader').map(lambda x: 'v2').register(trigger=%s, mode='sync')\nraise Exception('fail v2')", pyQuote(trig)),
			"ID", sid, "UPGRADE"), "Exception: fail v2")
		c.expect(L("v1"), "RG.TRIGGER", trig)
		require.Equal(t, before, c.sessionRegs(sid))
		// A failed registration (trigger owned by another session) also leaves the old one in place.
		other := c.regTrigger("", "mode='sync'")
		requireTraceback(t, c.doErr("RG.PYEXECUTE",
			fmt.Sprintf("GB('CommandReader').map(lambda x: 'v3').register(trigger=%s, mode='sync')\nGB('CommandReader').register(trigger=%s)", pyQuote(trig), pyQuote(other)),
			"ID", sid, "UPGRADE"), "gears.error: trigger already registered")
		c.expect(L("v1"), "RG.TRIGGER", trig)
		require.Equal(t, before, c.sessionRegs(sid))
	})
}

func TestSessionReplaceWith(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		oldID, newID := uniq(t, "old"), uniq(t, "new")
		trig := uniq(t, "t")
		c.registerScript(oldID, fmt.Sprintf("GB('CommandReader').map(lambda x: 'old').register(trigger=%s, mode='sync')", pyQuote(trig)))
		c.expectErr(fmt.Sprintf("Can not replace with %s, session does not exists.", "nosuch"+newID),
			"RG.PYEXECUTE", "x = 1", "ID", newID, "REPLACE_WITH", "nosuch"+newID)
		c.expectErr(fmt.Sprintf("Can not replace an existing session %s with %s", oldID, oldID),
			"RG.PYEXECUTE", "x = 1", "ID", oldID, "REPLACE_WITH", oldID)
		// The trigger of the session being replaced does not conflict.
		c.registerScript(newID, fmt.Sprintf("GB('CommandReader').map(lambda x: 'new').register(trigger=%s, mode='sync')", pyQuote(trig)), "REPLACE_WITH", oldID)
		c.expect(L("new"), "RG.TRIGGER", trig)
		require.Nil(t, c.sessionEntry(oldID))
		c.match(sessionEntryWant(newID, nil, c.sessionRegs(newID)), c.sessionEntry(newID), "new session")
		// After REPLACE_WITH the old id can be used again without UPGRADE (spec §8).
		c.registerScript(oldID, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t2"))))
	})
}

func TestPyDumpSessions(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		a, b := uniq(t, "a"), uniq(t, "b")
		ta, tb := uniq(t, "ta"), uniq(t, "tb")
		sb := c.registerScript(b, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(tb)))
		sa := c.registerScript(a, fmt.Sprintf("GB('CommandReader').register(trigger=%s, mode='sync')", pyQuote(ta)), "DESCRIPTION", "first one")
		// Run-only sessions are never listed.
		runOnly := uniq(t, "runonly")
		c.expect(L(L("1"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').run()", "ID", runOnly)
		c.expect(L("Session "+runOnly+" does not exists"), "RG.PYDUMPSESSIONS", "SESSIONS", runOnly)

		// Plain: sorted by session name (RedisModule_Dict).
		var mine []any
		var names []string
		for _, e := range c.do("RG.PYDUMPSESSIONS").([]any) {
			entry := e.([]any)
			names = append(names, entry[1].(string))
			if entry[1] == a || entry[1] == b {
				mine = append(mine, entry)
			}
		}
		require.True(t, sort.StringsAreSorted(names), "sessions not sorted by name: %v", names)
		c.match(L(sessionEntryWant(a, "first one", sa.regs), sessionEntryWant(b, nil, sb.regs)), mine, "plain dump")

		// SESSIONS keeps argument order and names unknown ones.
		c.expect(L(sessionEntryWant(b, nil, sb.regs), "Session nosuch does not exists", sessionEntryWant(a, "first one", sa.regs)),
			"RG.PYDUMPSESSIONS", "SESSIONS", b, "nosuch", a)
		c.expect(L(), "RG.PYDUMPSESSIONS", "SESSIONS")
		// Options are case-insensitive.
		c.expect(L(sessionEntryWant(a, "first one", sa.regs)), "RG.PYDUMPSESSIONS", "sessions", a)

		// VERBOSE: registrations are 10-element dumps (no PD, spec §8).
		c.expect(L(L("ID", a, "sessionDescription", "first one", "refCount", 1, "linked", "primary", "dead", "false",
			"requirementInstallationNeeded", 0, "requirements", L(),
			"registrations", L(L("id", sa.regs[0], "reader", "CommandReader", "desc", nil,
				"RegistrationData", regDataCmd("sync", 0, 0, 0, 0, nil, ta, 0),
				"ExecutionThreadPool", "DefaultPool")))),
			"RG.PYDUMPSESSIONS", "VERBOSE", "SESSIONS", a)

		// DEAD lists no live session.
		for _, e := range c.do("RG.PYDUMPSESSIONS", "DEAD").([]any) {
			entry := e.([]any)
			require.NotContains(t, []any{a, b}, entry[1])
		}
		c.expect(L(), "RG.PYDUMPSESSIONS", "DEAD", "SESSIONS")

		c.expectErr("Unknown option FOO", "RG.PYDUMPSESSIONS", "FOO")
		c.expectErr("Unknown option bar", "RG.PYDUMPSESSIONS", "VERBOSE", "bar")
	})
}

func TestRequirementAlreadyInstalled(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		sid := uniq(t, "s")
		trig := uniq(t, "t")
		sess := c.registerScript(sid, fmt.Sprintf("import requests\nGB('CommandReader').map(lambda x: requests.__name__).register(trigger=%s, mode='sync')", pyQuote(trig)),
			"REQUIREMENTS", "requests")
		c.expect(L("requests"), "RG.TRIGGER", trig)
		entry := c.sessionEntry(sid)
		c.match(L("ID", sid, "sessionDescription", nil, "refCount", 1, "linked", "primary", "dead", "false",
			// upstream test_profile.py::testPyDumpSessions: a session with requirements shows 1 here.
			"requirementInstallationNeeded", 1, "requirements", L("requests"), "registrations", L(sess.regs[0])), entry, "session")

		// RG.PYDUMPREQS: 18-element entry (spec §1.11).
		var req []any
		for _, e := range c.do("RG.PYDUMPREQS").([]any) {
			if r := e.([]any); len(r) > 3 && r[3] == "requests" {
				req = r
			}
		}
		require.NotNil(t, req, "requests not in RG.PYDUMPREQS")
		wheels := matchFunc{"<wheels>", func(_ int, got any) error {
			switch w := got.(type) {
			case []any:
				for _, x := range w {
					if _, ok := x.(string); !ok {
						return fmt.Errorf("wheel %#v is not a string", x)
					}
				}
				return nil
			case string:
				if w != "Requirement was not yet downloaded so wheels are not available" {
					return fmt.Errorf("unexpected wheels text %q", w)
				}
				return nil
			}
			return fmt.Errorf("want wheels, got %#v", got)
		}}
		c.match(L("GearReqVersion", anyInt, "Name", "requests", "IsDownloaded", "yes", "IsInstalled", "yes",
			"CompiledOs", anyString, "Wheels", wheels, "Path", anyString, "RefCount", nonNegInt, "IsInReqDictionary", "yes"), req, "PYDUMPREQS entry")
		require.NotEmpty(t, c.do("RG.PYDUMPREQS", "ignored-extra"))
	})
}

// TestRequirementThatCannotBeInstalled takes pip some seconds without network (about 27 s on a real
// server), so it is the only such test.
func TestRequirementThatCannotBeInstalled(t *testing.T) {
	if testing.Short() {
		t.Skip("pip retries take seconds; skipped with -short")
	}
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	sid := uniq(t, "s")
	trig := uniq(t, "t")
	c.expectErr("Could not satisfy requirements (look at redis log file for more information)",
		"RG.PYEXECUTE", fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(trig)),
		"ID", sid, "REQUIREMENTS", "gearstest-no-such-package-e1b9c7==0.0.1")
	require.Nil(t, c.sessionEntry(sid))
	c.expectErr("ERR subcommand not found", "RG.TRIGGER", trig)
}

func TestSessionGlobals(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		t1, t2 := uniq(t, "t1"), uniq(t, "t2")
		// Globals are shared by the functions of one session (upstream
		// test_register.py::testGlobalsDictionaryOnDeserialization: 3 then 5) ...
		c.registerScript(uniq(t, "s1"), fmt.Sprintf(`
g = 1
def f1():
    global g
    g = g + 1
    return g

def f(x):
    global g
    g = g + 1
    return f1()

GB('CommandReader').map(f).register(trigger=%s, convertToStr=False)
GB('CommandReader').map(f).register(trigger=%s, convertToStr=False)
`, pyQuote(t1), pyQuote(t2)))
		c.expect(L(3), "RG.TRIGGER", t1)
		c.expect(L(5), "RG.TRIGGER", t2)
		// ... and isolated from other sessions.
		other := uniq(t, "other")
		c.registerScript(uniq(t, "s2"), fmt.Sprintf(`
def peek(x):
    return 'g' in globals()
GB('CommandReader').map(peek).register(trigger=%s, mode='sync', convertToStr=False)
`, pyQuote(other)))
		c.expect(L(0), "RG.TRIGGER", other)
		// upstream test_basics.py::testSubinterpreterIsolation: each RG.PYEXECUTE starts from fresh globals.
		script := "if 'x' not in globals().keys():\n    x = 1\n\ndef returnX(a):\n    global x\n    x += 1\n    return x\n\nGB('ShardsIDReader').map(returnX).run()\n"
		c.expect(L(L("2"), L()), "RG.PYEXECUTE", script)
		c.expect(L(L("2"), L()), "RG.PYEXECUTE", script)
		c.expect(L(L("not_main"), L()), "RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: __name__).run()")
	})
}
