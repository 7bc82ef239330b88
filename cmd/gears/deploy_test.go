package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

// reply is a CommandReader script whose trigger answers text.
func reply(trigger, text string) string {
	return fmt.Sprintf("GB('CommandReader').map(lambda x: %q).register(trigger=%q, mode='sync')\n", text, trigger)
}

// brokenPy does not compile: the server answers a SyntaxError naming line 2.
const brokenPy = "def f(x):\n    return x +\nGB('CommandReader').map(f).register(trigger='broken')\n"

// server is a gearstest server and a client of it.
type server struct {
	*gearstest.Server
	rdb *redis.Client
	c   *gears.Client
}

func newServer(t *testing.T, opts ...gearstest.Option) *server {
	srv := gearstest.Run(t, opts...)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: time.Minute})
	t.Cleanup(func() { _ = rdb.Close() })
	return &server{Server: srv, rdb: rdb, c: gears.NewClient(rdb)}
}

// startAt starts a server on addr, trying up to tries times while the address is in use (nil then).
func startAt(t *testing.T, addr string, tries int) *server {
	t.Helper()
	for i := 0; i < tries; i++ {
		srv, err := gearstest.Start(gearstest.WithAddr(addr))
		if err == nil {
			t.Cleanup(func() { _ = srv.Close() })
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: time.Minute})
			t.Cleanup(func() { _ = rdb.Close() })
			return &server{Server: srv, rdb: rdb, c: gears.NewClient(rdb)}
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (s *server) trigger(t *testing.T, name string) []any {
	t.Helper()
	recs, err := s.c.Trigger(context.Background(), name)
	require.NoError(t, err, "trigger %s", name)
	return recs
}

// session returns a session's registration ids; nil when it does not exist.
func (s *server) session(t *testing.T, id string) []string {
	t.Helper()
	ss, err := s.c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{id}})
	require.NoError(t, err)
	require.Len(t, ss, 1)
	if ss[0].Missing {
		return nil
	}
	return ss[0].RegistrationIDs
}

// triggers counts the registrations per trigger.
func (s *server) triggers(t *testing.T) map[string]int {
	t.Helper()
	regs, err := s.c.DumpRegistrations(context.Background())
	require.NoError(t, err)
	out := map[string]int{}
	for _, r := range regs {
		out[r.Data.Args.Trigger]++
	}
	return out
}

func TestDeployFolder(t *testing.T) {
	s := newServer(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a1"))
	writeFile(t, filepath.Join(dir, "sub", "b.py"), reply("tb1", "b")+reply("tb2", "b"))
	writeFile(t, filepath.Join(dir, "broken.py"), brokenPy)
	// A session that is not ours (another prefix): --prune leaves it alone.
	_, err := gears.Deploy(context.Background(), s.rdb, gears.Session{ID: "other", Source: reply("tother", "o")})
	require.NoError(t, err)

	r := runCLI(t, "", "deploy", dir, "--addr", s.Addr(), "--prefix", "t-")
	assert.Equal(t, 1, r.code, "a file failed")
	assert.Equal(t, "created   t-a (a.py) 1 registration\n"+
		"created   t-sub__b (sub/b.py) 2 registrations\n"+
		"3 file(s): 2 created, 0 upgraded, 0 unchanged, 1 failed\n", r.stdout)
	assert.Equal(t, "failed    t-broken (broken.py): SyntaxError: invalid syntax (<string>, line 2)\n"+
		"    line 2: return x +\n", r.stderr)
	assert.Equal(t, []any{"a1"}, s.trigger(t, "ta"))
	assert.Equal(t, []any{"b"}, s.trigger(t, "tb2"))
	assert.Nil(t, s.session(t, "t-broken"))
	idsA := s.session(t, "t-a")
	idsB := s.session(t, "t-sub__b")
	require.Len(t, idsA, 1)
	require.Len(t, idsB, 2)

	// ls --json, parsed back.
	r = runCLI(t, "", "ls", "--json", "--addr", s.Addr())
	require.Equal(t, 0, r.code, r.stderr)
	var ls lsOutput
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ls))
	got := map[string]lsRegistration{}
	for _, reg := range ls.Registrations {
		got[reg.Trigger] = reg
	}
	require.Len(t, got, 4)
	assert.Equal(t, lsRegistration{ID: idsA[0], Session: "t-a", Reader: "CommandReader", Trigger: "ta", Mode: "sync",
		Runs: 1, Successes: 1}, got["ta"])
	assert.Equal(t, "t-sub__b", got["tb1"].Session)
	sessions := map[string]lsSession{}
	for _, ss := range ls.Sessions {
		sessions[ss.ID] = ss
	}
	require.Len(t, sessions, 3)
	assert.Equal(t, idsB, sessions["t-sub__b"].Registrations)
	assert.Regexp(t, `^gears deploy sub/b.py gears:[0-9a-f]{32}$`, sessions["t-sub__b"].Description)
	assert.Equal(t, []string{}, sessions["t-a"].Requirements)

	// Change one file and fix the broken one: upgraded (new registration id, no duplicate), created.
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a2"))
	writeFile(t, filepath.Join(dir, "broken.py"), reply("tfixed", "fixed"))
	r = runCLI(t, "", "deploy", dir, "--addr", s.Addr(), "--prefix", "t-")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "upgraded  t-a (a.py) 1 registration\n"+
		"created   t-broken (broken.py) 1 registration\n"+
		"unchanged t-sub__b (sub/b.py)\n"+
		"3 file(s): 1 created, 1 upgraded, 1 unchanged, 0 failed\n", r.stdout)
	assert.Empty(t, r.stderr)
	assert.Equal(t, []any{"a2"}, s.trigger(t, "ta"))
	newA := s.session(t, "t-a")
	require.Len(t, newA, 1)
	assert.NotEqual(t, idsA, newA, "the upgrade registered anew")
	assert.Equal(t, idsB, s.session(t, "t-sub__b"), "unchanged: same registrations")
	assert.Equal(t, map[string]int{"ta": 1, "tb1": 1, "tb2": 1, "tfixed": 1, "tother": 1}, s.triggers(t), "no duplicates")

	// Delete one file: --prune unregisters its session, and only that one.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "sub")))
	r = runCLI(t, "", "deploy", dir, "--addr", s.Addr(), "--prefix", "t-", "--prune")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "unchanged t-a (a.py)\n"+
		"unchanged t-broken (broken.py)\n"+
		"pruned    t-sub__b (file gone): 2 registrations unregistered\n"+
		"2 file(s): 0 created, 0 upgraded, 2 unchanged, 0 failed, 1 pruned\n", r.stdout)
	assert.Nil(t, s.session(t, "t-sub__b"))
	assert.Equal(t, map[string]int{"ta": 1, "tfixed": 1, "tother": 1}, s.triggers(t))
}

func TestDeployDryRunSendsNothing(t *testing.T) {
	s := newServer(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a1"))
	writeFile(t, filepath.Join(dir, "b.py"), reply("tb", "b"))
	writeFile(t, filepath.Join(dir, "same.py"), reply("tsame", "s"))
	r := runCLI(t, "", "deploy", dir, "--addr", s.Addr(), "--prefix", "d-")
	require.Equal(t, 0, r.code, r.stderr)
	before := s.triggers(t)
	idsA := s.session(t, "d-a")

	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a2"))
	writeFile(t, filepath.Join(dir, "c.py"), reply("tc", "c"))
	require.NoError(t, os.Remove(filepath.Join(dir, "b.py")))
	writeFile(t, filepath.Join(dir, "broken.py"), brokenPy)
	r = runCLI(t, "", "deploy", dir, "--addr", s.Addr(), "--prefix", "d-", "--prune", "--dry-run")
	assert.Equal(t, 0, r.code, "a syntax error is only found by sending the script: %s", r.stderr)
	assert.Equal(t, "would upgrade d-a (a.py)\n"+
		"would create  d-broken (broken.py)\n"+
		"would create  d-c (c.py)\n"+
		"unchanged     d-same (same.py)\n"+
		"would prune   d-b (file gone): 1 registration\n"+
		"4 file(s): 2 would be created, 1 would be upgraded, 1 unchanged, 0 failed, 1 would be pruned\n", r.stdout)
	// Nothing was sent: same registrations, same code, no new session, the gone one still there.
	assert.Equal(t, before, s.triggers(t))
	assert.Equal(t, idsA, s.session(t, "d-a"))
	assert.Equal(t, []any{"a1"}, s.trigger(t, "ta"))
	assert.Nil(t, s.session(t, "d-c"))
	assert.Len(t, s.session(t, "d-b"), 1)
}

func TestDeployTwoAtOnce(t *testing.T) {
	// Two deploys of one folder started together: one registration per script, each session created by
	// exactly one of them, and no hazard (gearstest.Run fails the test on two overlapping RG.PYEXECUTEs
	// of one session).
	s := newServer(t)
	dir := t.TempDir()
	const n = 6
	for i := 0; i < n; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("s%d.py", i)), reply(fmt.Sprintf("t%d", i), strconv.Itoa(i)))
	}
	args := []string{"deploy", dir, "--addr", s.Addr(), "--prefix", "x-"}
	p1, p2 := start(t, args...), start(t, args...)
	assert.Equal(t, 0, p1.wait(), p1.output())
	assert.Equal(t, 0, p2.wait(), p2.output())
	var lines []string
	for _, out := range []string{p1.output(), p2.output()} {
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, "file(s)") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	sort.Strings(lines)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("created x-s%d (s%d.py) 1 registration", i, i), fmt.Sprintf("unchanged x-s%d (s%d.py)", i, i))
	}
	sort.Strings(want)
	assert.Equal(t, want, lines)
	tr := s.triggers(t)
	assert.Len(t, tr, n)
	for name, count := range tr {
		assert.Equal(t, 1, count, name)
	}
}

func TestDeployWatch(t *testing.T) {
	s := newServer(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a1"))
	writeFile(t, filepath.Join(dir, "b.py"), reply("tb", "b"))
	p := start(t, "deploy", dir, "--addr", s.Addr(), "--prefix", "w-", "--prune", "--watch")
	p.waitLine(`^created   w-a \(a\.py\) 1 registration$`)
	p.waitLine(`^created   w-b \(b\.py\) 1 registration$`)
	p.waitLine(`^watching `)
	old := s.session(t, "w-a")

	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a2"))
	p.waitLine(`^upgraded  w-a \(a\.py\) 1 registration$`)
	assert.Equal(t, []any{"a2"}, s.trigger(t, "ta"))
	assert.NotEqual(t, old, s.session(t, "w-a"))

	writeFile(t, filepath.Join(dir, "c.py"), brokenPy)
	p.waitLine(`^failed    w-c \(c\.py\): SyntaxError: invalid syntax \(<string>, line 2\)$`)
	p.waitLine(`^    line 2: return x \+$`)

	require.NoError(t, os.Remove(filepath.Join(dir, "b.py")))
	p.waitLine(`^pruned    w-b \(file gone\): 1 registration unregistered$`)
	assert.Nil(t, s.session(t, "w-b"))

	writeFile(t, filepath.Join(dir, "c.py"), reply("tc", "c"))
	p.waitLine(`^created   w-c \(c\.py\) 1 registration$`)
	assert.Equal(t, []any{"c"}, s.trigger(t, "tc"))
	assert.Equal(t, map[string]int{"ta": 1, "tc": 1}, s.triggers(t))

	assert.Equal(t, 0, p.stop(syscall.SIGINT), "a clean exit on SIGINT")
	assert.Contains(t, p.output(), "gears deploy: stopped")
}

func TestDeployWatchSurvivesServerRestart(t *testing.T) {
	// A port found free may be taken by another test process before the server binds it: try others.
	var addr string
	var s1 *server
	for s1 == nil {
		addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		s1 = startAt(t, addr, 1)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.py"), reply("ta", "a1"))
	p := start(t, "deploy", dir, "--addr", addr, "--prefix", "r-", "--watch")
	p.waitLine(`^created   r-a \(a\.py\) 1 registration$`)
	p.waitLine(`^watching `)

	require.NoError(t, s1.Close())
	p.waitLine(`^waiting   server unavailable .*; retrying$`)
	// The same port again; someone else may hold it for a moment.
	s2 := startAt(t, addr, 100)
	require.NotNil(t, s2, "port %s stayed taken", addr)
	p.waitLine(`^connected server is back$`)
	p.waitLine(`^created   r-a \(a\.py\) 1 registration$`)
	assert.Equal(t, []any{"a1"}, s2.trigger(t, "ta"))

	assert.Equal(t, 0, p.stop(syscall.SIGTERM))
}
