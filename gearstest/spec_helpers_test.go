package gearstest_test

// This file holds the harness of the conformance suite (spec_*_test.go): where the target server comes
// from, clients for RESP2 and RESP3, exact reply matching with a few wildcards (durations, memory figures),
// Python traceback-list parsing, and registration helpers that clean up after themselves so the suite can
// run against a shared real RedisGears 1.2 (GEARS_ADDR) as well as against a fresh gearstest server.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// zeroShard is the stand-alone shard id that prefixes every registration and execution id.
const zeroShard = "0000000000000000000000000000000000000000"

// protocols are the RESP versions every reply-shape test runs under (go-redis v9 defaults to 3).
var protocols = []int{2, 3}

// targetAddr returns the address of the server under test: GEARS_ADDR when set (a real RedisGears 1.2),
// otherwise a gearstest server owned by t (stopped by t.Cleanup).
func targetAddr(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv("GEARS_ADDR"); addr != "" {
		return addr
	}
	return gearstest.Run(t).Addr()
}

// onRealServer reports whether the suite runs against GEARS_ADDR.
func onRealServer() bool { return os.Getenv("GEARS_ADDR") != "" }

// target is one server under test, shared by the subtests of a top-level test.
type target struct {
	addr string
}

// newTarget starts (or points at) the server for one top-level test.
func newTarget(t testing.TB) *target {
	t.Helper()
	return &target{addr: targetAddr(t)}
}

// client is a go-redis client speaking one RESP version, with helpers that decode replies into a
// canonical form: bulk and status replies are string, integers int64, nil is nil, arrays []any, RESP3
// doubles float64, and an error inside an array is errElem.
type client struct {
	*redis.Client
	proto int
	t     testing.TB
}

// errElem is an error reply found inside an array reply (or returned by EXEC).
type errElem string

// newClient opens a client with the given protocol; it is closed by t.Cleanup.
func (tg *target) newClient(t testing.TB, proto int) *client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:            tg.addr,
		Protocol:        proto,
		ReadTimeout:     2 * time.Minute, // requirement installs and GETRESULTSBLOCKING block for long
		WriteTimeout:    10 * time.Second,
		PoolSize:        64,
		DisableIdentity: false,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	c := &client{Client: rdb, proto: proto, t: t}
	require.NoError(t, rdb.Ping(context.Background()).Err(), "PING %s (RESP%d)", tg.addr, proto)
	return c
}

// eachProtocol runs fn as a subtest under RESP2 and RESP3 against tg.
func (tg *target) eachProtocol(t *testing.T, fn func(t *testing.T, c *client)) {
	t.Helper()
	for _, p := range protocols {
		t.Run(fmt.Sprintf("RESP%d", p), func(t *testing.T) {
			fn(t, tg.newClient(t, p))
		})
	}
}

// forEachProtocol starts a target for t and runs fn under RESP2 and RESP3.
func forEachProtocol(t *testing.T, fn func(t *testing.T, c *client)) {
	t.Helper()
	newTarget(t).eachProtocol(t, fn)
}

// testCtx returns a context bounded so that a hung server fails the test instead of the whole run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// result runs a command and returns the canonical reply and the top-level error (redis.Nil becomes a
// nil value and a nil error).
func (c *client) result(args ...any) (any, error) {
	v, err := c.Do(context.Background(), args...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return canon(v), nil
}

// do runs a command that must succeed and returns its canonical reply.
func (c *client) do(args ...any) any {
	c.t.Helper()
	v, err := c.result(args...)
	require.NoError(c.t, err, "command %s", fmtArgs(args))
	return v
}

// doErr runs a command that must fail with a server error reply and returns the error text.
func (c *client) doErr(args ...any) string {
	c.t.Helper()
	v, err := c.result(args...)
	require.Error(c.t, err, "command %s replied %#v, want an error", fmtArgs(args), v)
	var rerr redis.Error
	require.True(c.t, errors.As(err, &rerr), "command %s: %v is not a server error reply (%T)", fmtArgs(args), err, err)
	return err.Error()
}

// expect runs a command and matches its reply against want (see match).
func (c *client) expect(want any, args ...any) {
	c.t.Helper()
	got := c.do(args...)
	c.match(want, got, "reply of "+fmtArgs(args))
}

// expectErr runs a command and requires the exact error text.
func (c *client) expectErr(want string, args ...any) {
	c.t.Helper()
	require.Equal(c.t, want, c.doErr(args...), "error reply of %s", fmtArgs(args))
}

// expectOK runs a command that must reply OK.
func (c *client) expectOK(args ...any) {
	c.t.Helper()
	c.expect("OK", args...)
}

func fmtArgs(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		s := fmt.Sprint(a)
		if len(s) > 80 {
			s = s[:77] + "..."
		}
		parts[i] = strconv.Quote(s)
	}
	return strings.Join(parts, " ")
}

// canon converts a go-redis reply into the canonical form described on client.
func canon(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canon(e)
		}
		return out
	case map[any]any:
		out := make(map[any]any, len(x))
		for k, e := range x {
			out[k] = canon(e)
		}
		return out
	case error:
		return errElem(x.Error())
	default:
		return v
	}
}

// matcher is an expected value that checks the actual one itself (wildcards for figures that vary).
type matcher interface {
	check(proto int, got any) error
}

type matchFunc struct {
	name string
	fn   func(proto int, got any) error
}

func (m matchFunc) check(proto int, got any) error { return m.fn(proto, got) }
func (m matchFunc) String() string                 { return m.name }

// anyInt matches any integer reply.
var anyInt = matchFunc{"<any int>", func(_ int, got any) error {
	if _, ok := got.(int64); !ok {
		return fmt.Errorf("want an integer, got %#v", got)
	}
	return nil
}}

// nonNegInt matches an integer ≥ 0.
var nonNegInt = matchFunc{"<int ≥ 0>", func(_ int, got any) error {
	n, ok := got.(int64)
	if !ok || n < 0 {
		return fmt.Errorf("want an integer ≥ 0, got %#v", got)
	}
	return nil
}}

// anyString matches any bulk or status string.
var anyString = matchFunc{"<any string>", func(_ int, got any) error {
	if _, ok := got.(string); !ok {
		return fmt.Errorf("want a string, got %#v", got)
	}
	return nil
}}

// anyDouble matches a RedisModule_ReplyWithDouble value: a bulk string holding a number under RESP2, a
// RESP3 double (float64) under RESP3 (spec §0, §8).
var anyDouble = matchFunc{"<double>", func(proto int, got any) error {
	switch x := got.(type) {
	case string:
		if proto == 3 {
			return fmt.Errorf("want a RESP3 double, got bulk %q", x)
		}
		if _, err := strconv.ParseFloat(x, 64); err != nil {
			return fmt.Errorf("want a number as bulk string, got %q", x)
		}
		return nil
	case float64:
		if proto == 2 {
			return fmt.Errorf("want a bulk string under RESP2, got double %v", x)
		}
		return nil
	default:
		return fmt.Errorf("want a double, got %#v", got)
	}
}}

// regexpMatch matches a string reply against a regular expression.
func regexpMatch(expr string) matcher {
	re := regexp.MustCompile(expr)
	return matchFunc{"<" + expr + ">", func(_ int, got any) error {
		s, ok := got.(string)
		if !ok || !re.MatchString(s) {
			return fmt.Errorf("want a string matching %q, got %#v", expr, got)
		}
		return nil
	}}
}

// tracebackErr matches a Python error text in the traceback-list form of spec §1.1 whose final line
// (after the one trailing newline) is exactly last. The frames in between depend on the interpreter.
func tracebackErr(last string) matcher {
	return matchFunc{"<traceback " + last + ">", func(_ int, got any) error {
		var s string
		switch x := got.(type) {
		case string:
			s = x
		case errElem:
			s = string(x)
		default:
			return fmt.Errorf("want a traceback text, got %#v", got)
		}
		return checkTraceback(s, last)
	}}
}

// checkTraceback verifies that s is the repr of a list of traceback lines starting with
// 'Traceback (most recent call last):\n' and ending with last + '\n'.
func checkTraceback(s, last string) error {
	lines, err := parsePyStrList(s)
	if err != nil {
		return fmt.Errorf("not a traceback list (%v): %q", err, s)
	}
	if len(lines) < 2 || lines[0] != "Traceback (most recent call last):\n" {
		return fmt.Errorf("traceback list does not start with the Traceback line: %q", s)
	}
	if got := strings.TrimSuffix(lines[len(lines)-1], "\n"); got != last {
		return fmt.Errorf("traceback ends with %q, want %q (whole text %q)", got, last, s)
	}
	return nil
}

// requireTraceback asserts the traceback form on an error text.
func requireTraceback(t testing.TB, text, last string) {
	t.Helper()
	require.NoError(t, checkTraceback(text, last))
}

// parsePyStrList parses the repr of a Python list of str, as produced by str(traceback.format_exception(...)).
func parsePyStrList(s string) ([]string, error) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, errors.New("not a list")
	}
	var out []string
	i := 1
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		if i >= len(s)-1 {
			break
		}
		q := s[i]
		if q != '\'' && q != '"' {
			return nil, fmt.Errorf("unexpected %q at %d", q, i)
		}
		i++
		var b strings.Builder
		for {
			if i >= len(s) {
				return nil, errors.New("unterminated string")
			}
			ch := s[i]
			if ch == q {
				i++
				break
			}
			if ch != '\\' {
				b.WriteByte(ch)
				i++
				continue
			}
			if i+1 >= len(s) {
				return nil, errors.New("dangling backslash")
			}
			esc := s[i+1]
			i += 2
			switch esc {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '\\', '\'', '"':
				b.WriteByte(esc)
			case 'x':
				if i+2 > len(s) {
					return nil, errors.New("short \\x escape")
				}
				n, err := strconv.ParseUint(s[i:i+2], 16, 8)
				if err != nil {
					return nil, err
				}
				b.WriteByte(byte(n))
				i += 2
			default:
				b.WriteByte('\\')
				b.WriteByte(esc)
			}
		}
		out = append(out, b.String())
	}
	return out, nil
}

// match compares got with want exactly, allowing matchers anywhere in want. Go ints in want are taken as
// int64; nil matches only nil.
func (c *client) match(want, got any, what string) {
	c.t.Helper()
	if err := matchValue(c.proto, want, got, "$"); err != nil {
		c.t.Errorf("%s (RESP%d): %v\nwant: %s\ngot:  %#v", what, c.proto, err, show(want), got)
		c.t.FailNow()
	}
}

func show(v any) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = show(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case matchFunc:
		return x.name
	case string:
		return strconv.Quote(x)
	case errElem:
		return "err(" + strconv.Quote(string(x)) + ")"
	default:
		return fmt.Sprintf("%#v", v)
	}
}

func matchValue(proto int, want, got any, path string) error {
	switch w := want.(type) {
	case matcher:
		if err := w.check(proto, got); err != nil {
			return fmt.Errorf("at %s: %w", path, err)
		}
		return nil
	case int:
		want = int64(w)
	case []string:
		arr := make([]any, len(w))
		for i, s := range w {
			arr[i] = s
		}
		want = arr
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("at %s: want an array of %d, got %#v", path, len(w), got)
		}
		if len(g) != len(w) {
			return fmt.Errorf("at %s: want %d elements, got %d: %#v", path, len(w), len(g), got)
		}
		for i := range w {
			if err := matchValue(proto, w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if arr, ok := want.([]any); ok {
		return matchValue(proto, arr, got, path)
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("at %s: want %s, got %#v", path, show(want), got)
	}
	return nil
}

// L builds an expected array.
func L(v ...any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

// uniq returns a name unique to this test run, made of [A-Za-z0-9_-] so that it is also a valid session id.
func uniq(t testing.TB, tag string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return strings.Trim(name, "_") + "_" + tag + "_" + hex.EncodeToString(b[:])
}

// pyQuote returns s as a Python string literal.
func pyQuote(s string) string { return strconv.Quote(s) }

// session describes what a registering RG.PYEXECUTE created.
type session struct {
	id   string
	regs []string
}

// registerScript runs RG.PYEXECUTE script ID <sid> (plus extra options), requires OK, and unregisters every
// registration of the session when the test ends (so the suite leaves a shared server as it found it).
func (c *client) registerScript(sid, script string, opts ...any) session {
	c.t.Helper()
	args := append([]any{"RG.PYEXECUTE", script, "ID", sid}, opts...)
	c.expectOK(args...)
	c.cleanupSession(sid)
	return session{id: sid, regs: c.sessionRegs(sid)}
}

// cleanupSession unregisters the registrations of sid at the end of the test.
func (c *client) cleanupSession(sid string) {
	t := c.t
	cl := c.Client
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		unregisterSession(ctx, cl, sid)
	})
}

// unregisterSession removes every registration of session sid (best effort).
func unregisterSession(ctx context.Context, cl *redis.Client, sid string) {
	v, err := cl.Do(ctx, "RG.PYDUMPSESSIONS", "SESSIONS", sid).Result()
	if err != nil {
		return
	}
	arr, _ := v.([]any)
	if len(arr) != 1 {
		return
	}
	entry, _ := arr[0].([]any)
	for i := 0; i+1 < len(entry); i += 2 {
		if entry[i] == "registrations" {
			regs, _ := entry[i+1].([]any)
			for _, r := range regs {
				if id, ok := r.(string); ok {
					_ = cl.Do(ctx, "RG.UNREGISTER", id).Err()
				}
			}
		}
	}
}

// sessionRegs returns the registration ids of session sid (RG.PYDUMPSESSIONS SESSIONS sid).
func (c *client) sessionRegs(sid string) []string {
	c.t.Helper()
	entry := c.sessionEntry(sid)
	require.NotNil(c.t, entry, "session %s not listed", sid)
	regs := field(c.t, entry, "registrations").([]any)
	out := make([]string, len(regs))
	for i, r := range regs {
		out[i] = r.(string)
	}
	return out
}

// sessionEntry returns the RG.PYDUMPSESSIONS entry of sid, or nil when the server says it does not exist.
func (c *client) sessionEntry(sid string) []any {
	c.t.Helper()
	v := c.do("RG.PYDUMPSESSIONS", "SESSIONS", sid).([]any)
	require.Len(c.t, v, 1)
	if s, ok := v[0].(string); ok {
		require.Equal(c.t, "Session "+sid+" does not exists", s)
		return nil
	}
	return v[0].([]any)
}

// field returns the value following label in a flat label/value array.
func field(t testing.TB, arr []any, label string) any {
	t.Helper()
	for i := 0; i+1 < len(arr); i += 2 {
		if arr[i] == label {
			return arr[i+1]
		}
	}
	t.Fatalf("label %q not found in %#v", label, arr)
	return nil
}

// registration returns the RG.DUMPREGISTRATIONS entry with the given id (nil when absent).
func (c *client) registration(id string) []any {
	c.t.Helper()
	for _, e := range c.do("RG.DUMPREGISTRATIONS").([]any) {
		entry := e.([]any)
		if len(entry) > 1 && entry[1] == id {
			return entry
		}
	}
	return nil
}

// registrationByTrigger returns the DUMPREGISTRATIONS entry of the CommandReader registration of trigger.
func (c *client) registrationByTrigger(trigger string) []any {
	c.t.Helper()
	for _, e := range c.do("RG.DUMPREGISTRATIONS").([]any) {
		entry := e.([]any)
		if len(entry) < 8 {
			continue
		}
		data, ok := entry[7].([]any)
		if !ok {
			continue
		}
		for i := 0; i+1 < len(data); i += 2 {
			if data[i] == "args" {
				args, _ := data[i+1].([]any)
				if len(args) >= 2 && args[1] == trigger {
					return entry
				}
			}
		}
	}
	return nil
}

// regTrigger registers GB('CommandReader')<ops>.register(trigger=..., <regArgs>) in a new session and
// returns the trigger name. ops is Python source appended to the builder (e.g. ".map(lambda x: 1)").
func (c *client) regTrigger(ops, regArgs string) string {
	c.t.Helper()
	trig := uniq(c.t, "t")
	script := fmt.Sprintf("GB('CommandReader')%s.register(trigger=%s%s)", ops, pyQuote(trig), prefixComma(regArgs))
	c.registerScript(uniq(c.t, "s"), script)
	return trig
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

// conn returns a dedicated connection (MULTI/EXEC needs one), closed when the test ends.
func (c *client) conn(t testing.TB) *redis.Conn {
	cn := c.Client.Conn()
	t.Cleanup(func() { _ = cn.Close() })
	return cn
}

// multiExec sends MULTI, each command (each must be QUEUED), then EXEC, and returns EXEC's canonical reply.
func (c *client) multiExec(cmds ...[]any) []any {
	c.t.Helper()
	ctx := context.Background()
	cn := c.conn(c.t)
	require.NoError(c.t, cn.Do(ctx, "MULTI").Err())
	for _, cmd := range cmds {
		v, err := cn.Do(ctx, cmd...).Result()
		require.NoError(c.t, err, "queueing %s", fmtArgs(cmd))
		require.Equal(c.t, "QUEUED", v)
	}
	v, err := cn.Do(ctx, "EXEC").Result()
	require.NoError(c.t, err, "EXEC")
	return canon(v).([]any)
}

// waitFor polls cond every 20 ms until it holds or the deadline passes (state changes on the server, not
// timing assertions).
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallelDo runs fn n times at once and waits for all.
func parallelDo(n int, fn func(i int)) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	wg.Wait()
}

// regDataCmd is the expected RegistrationData of a CommandReader registration (spec §1.3, goldens).
func regDataCmd(mode string, triggered, success, failures, aborted int, lastError any, trigger string, inorder int) []any {
	return L("mode", mode,
		"numTriggered", triggered, "numSuccess", success, "numFailures", failures, "numAborted", aborted,
		"lastRunDurationMS", nonNegInt, "totalRunDurationMS", nonNegInt, "avgRunDurationMS", anyDouble,
		"lastError", lastError,
		"args", L("trigger", trigger, "inorder", inorder))
}

// pdString is the PD string of a Python session (spec §1.3, goldens).
func pdString(sid string, desc string, regs []string) string {
	d := "null"
	if desc != "" {
		d = desc
	}
	quoted := make([]string, len(regs))
	for i, r := range regs {
		quoted[i] = "'" + r + "'"
	}
	return fmt.Sprintf("{'sessionName':'%s', 'sessionDescription':'%s', 'refCount': 1, 'linkedTo': primary, 'dead': false, 'isInstallationNeeded':0, 'registrationsList':[%s], 'depsList':[]}",
		sid, d, strings.Join(quoted, ","))
}

// regIDPattern matches a registration or execution id.
var regIDPattern = regexpMatch(`^` + zeroShard + `-[0-9]+$`)

// TestSpecHarness checks the harness itself: a matcher that accepted everything would make every
// conformance test pass.
func TestSpecHarness(t *testing.T) {
	tb := `['Traceback (most recent call last):\n', '  File "<string>", line 1, in <module>\n', "NameError: name 'x' is not defined\n"]`
	lines, err := parsePyStrList(tb)
	require.NoError(t, err)
	require.Equal(t, []string{"Traceback (most recent call last):\n", "  File \"<string>\", line 1, in <module>\n", "NameError: name 'x' is not defined\n"}, lines)
	require.NoError(t, checkTraceback(tb, "NameError: name 'x' is not defined"))
	require.Error(t, checkTraceback(tb, "NameError: name 'y' is not defined"))
	require.Error(t, checkTraceback("NameError: name 'x' is not defined", "NameError: name 'x' is not defined"))
	crlf := `['Traceback (most recent call last):\n', 'gears.error: ERR bad\r\n\n']`
	require.NoError(t, checkTraceback(crlf, "gears.error: ERR bad\r\n"))

	require.NoError(t, matchValue(2, L(1, "a", nil), L(int64(1), "a", nil), "$"))
	require.Error(t, matchValue(2, L(1, "a"), L(int64(1), "a", nil), "$"))
	require.Error(t, matchValue(2, L(1), L("1"), "$"))
	require.Error(t, matchValue(2, L(nil), L(""), "$"))
	require.Error(t, matchValue(2, "x", errElem("x"), "$"))
	require.NoError(t, matchValue(2, anyDouble, "0", "$"))
	require.Error(t, matchValue(2, anyDouble, float64(0), "$"))
	require.NoError(t, matchValue(3, anyDouble, float64(0), "$"))
	require.Error(t, matchValue(3, anyDouble, "0", "$"))
	require.Error(t, matchValue(2, nonNegInt, int64(-1), "$"))
	require.Error(t, matchValue(2, regIDPattern, zeroShard+"-x", "$"))
	require.NoError(t, matchValue(2, regIDPattern, zeroShard+"-12", "$"))

	// redis-cli --no-raw layout of a nested reply, as redis-cli 7 prints `RG.PYEXECUTE "GB('ShardsIDReader').run()"`.
	var wire bytes.Buffer
	n, err := readNode(bufio.NewReader(strings.NewReader("*2\r\n*1\r\n$1\r\n1\r\n*0\r\n")), &wire)
	require.NoError(t, err)
	require.Equal(t, "1) 1) \"1\"\n2) (empty array)\n", formatCLI(n, ""))
}
