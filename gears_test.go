package gears_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/internal/testtarget"
)

// The suite runs against gearstest (a fresh server per test), GEARS_ADDR (an external RedisGears 1.2)
// or a Docker container (GEARS_DOCKER=1); see internal/testtarget. Tests that need a fresh server's ids
// say so with needFresh.

func TestMain(m *testing.M) {
	code := m.Run()
	testtarget.Cleanup()
	os.Exit(code)
}

// protocols are the RESP versions every integration test runs under.
var protocols = []int{2, 3}

// gEnv is one test's view of the target server under one RESP version.
type gEnv struct {
	t      testing.TB
	ctx    context.Context
	addr   string
	proto  int
	rdb    *redis.Client
	c      *gears.Client
	prefix string // unique per env: every trigger and key a test creates starts with it
}

// forEachProtocol starts (or picks) the target server once and runs fn under RESP2 and RESP3.
func forEachProtocol(t *testing.T, fn func(t *testing.T, e *gEnv)) {
	addr := testtarget.Addr(t)
	for _, p := range protocols {
		t.Run(fmt.Sprintf("RESP%d", p), func(t *testing.T) {
			fn(t, newEnv(t, addr, p))
		})
	}
}

// newEnv connects to addr with RESP version proto. On cleanup it unregisters every registration whose
// trigger starts with the env's prefix, so that tests leave a shared server as they found it.
func newEnv(t testing.TB, addr string, proto int) *gEnv {
	t.Helper()
	rdb := newRedis(addr, proto)
	e := &gEnv{t: t, ctx: context.Background(), addr: addr, proto: proto, rdb: rdb, c: gears.NewClient(rdb),
		prefix: "gt" + randomHex(4) + "_"}
	t.Cleanup(func() {
		e.unregisterOwn()
		_ = rdb.Close()
	})
	return e
}

// newRedis returns a go-redis client for the suite: generous timeouts, since registering with
// requirements and async triggers may take seconds on a real server.
func newRedis(addr string, proto int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, ReadTimeout: 60 * time.Second,
		WriteTimeout: 10 * time.Second, PoolSize: 64})
}

// name returns a unique trigger (or key) name for this env.
func (e *gEnv) name(s string) string { return e.prefix + s }

func (e *gEnv) unregisterOwn() {
	regs, err := e.c.DumpRegistrations(context.Background())
	if err != nil {
		return
	}
	for _, r := range regs {
		if strings.HasPrefix(r.Data.Args.Trigger, e.prefix) {
			_ = e.c.Unregister(context.Background(), r.ID, true)
		}
	}
}

// register runs RG.PYEXECUTE of a registration script and fails the test on error.
func (e *gEnv) register(script string, opts *gears.PyExecuteOptions) {
	e.t.Helper()
	_, err := e.c.PyExecute(e.ctx, script, opts)
	require.NoError(e.t, err, script)
}

// registrationsOf returns the registrations whose CommandReader trigger is trigger.
func (e *gEnv) registrationsOf(trigger string) []gears.Registration {
	e.t.Helper()
	regs, err := e.c.DumpRegistrations(e.ctx)
	require.NoError(e.t, err)
	var out []gears.Registration
	for _, r := range regs {
		if r.Data.Args.Trigger == trigger {
			out = append(out, r)
		}
	}
	return out
}

func needFresh(t testing.TB) {
	t.Helper()
	if !testtarget.Fresh() {
		t.Skipf("needs a fresh server's ids (target: %s)", testtarget.Kind())
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// --- a canned-reply RESP server, for decoding tests that need exact shapes (RedisGears 1.0, cluster
// replies, RESP3 doubles) that the target server cannot produce.

// Canned reply values: string is a bulk string, int/int64 an integer, nil the null, []any an array.
type (
	rStatus string  // +status
	rErr    string  // -error (top level or element)
	rDouble float64 // RESP3 double; under RESP2 the bulk string "%.17g" as RedisModule_ReplyWithDouble
)

// fakeServer answers commands with canned replies, per connection in the RESP version the client
// negotiated with HELLO.
type fakeServer struct {
	addr string

	mu       sync.Mutex
	handlers map[string]func(args []string) any
	calls    [][]string
}

func startFake(t testing.TB) *fakeServer {
	t.Helper()
	f := &fakeServer{handlers: map[string]func(args []string) any{}}
	srv := redcon.NewServer("127.0.0.1:0", f.serve, nil, nil)
	errc := make(chan error, 1)
	go func() { _ = srv.ListenServeAndSignal(errc) }()
	require.NoError(t, <-errc)
	f.addr = srv.Addr().String()
	t.Cleanup(func() { _ = srv.Close() })
	f.serveLockKeys()
	return f
}

// serveLockKeys answers the commands of the registration lock (reglock.go): SET … NX PX, EXISTS, and the
// compare-and-delete / compare-and-pexpire scripts (EVALSHA answers NOSCRIPT, so go-redis sends EVAL).
// Keys never expire in the fake.
func (f *fakeServer) serveLockKeys() {
	keys := map[string]string{}
	f.handle("SET", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := keys[args[0]]; ok {
			return nil
		}
		keys[args[0]] = args[1]
		return rStatus("OK")
	})
	f.handle("EXISTS", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := keys[args[0]]; ok {
			return 1
		}
		return 0
	})
	f.handle("EVALSHA", func([]string) any { return rErr("NOSCRIPT No matching script.") })
	f.handle("EVAL", func(args []string) any { // script, numkeys, key, token[, ttl]
		f.mu.Lock()
		defer f.mu.Unlock()
		if keys[args[2]] != args[3] {
			return 0
		}
		if strings.Contains(args[0], "'DEL'") {
			delete(keys, args[2])
		}
		return 1
	})
}

// handle sets the reply function of a command (upper-case name).
func (f *fakeServer) handle(name string, fn func(args []string) any) {
	f.mu.Lock()
	f.handlers[name] = fn
	f.mu.Unlock()
}

// reply sets a fixed reply for a command.
func (f *fakeServer) reply(name string, v any) { f.handle(name, func([]string) any { return v }) }

// received returns the calls of a command, arguments after the name.
func (f *fakeServer) received(name string) [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, c := range f.calls {
		if c[0] == name {
			out = append(out, c[1:])
		}
	}
	return out
}

func (f *fakeServer) serve(conn redcon.Conn, cmd redcon.Command) {
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	name := strings.ToUpper(args[0])
	proto, _ := conn.Context().(int)
	switch name {
	case "HELLO":
		p := 2
		if len(args) > 1 && args[1] == "3" {
			p = 3
		}
		conn.SetContext(p)
		if p == 3 {
			conn.WriteRaw([]byte("%1\r\n+proto\r\n:3\r\n"))
		} else {
			conn.WriteRaw([]byte("*2\r\n+proto\r\n:2\r\n"))
		}
		return
	case "CLIENT", "SELECT", "PING":
		conn.WriteString("OK")
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, args)
	h := f.handlers[name]
	f.mu.Unlock()
	if h == nil {
		conn.WriteError("ERR unknown command '" + args[0] + "', with args beginning with: ")
		return
	}
	conn.WriteRaw(encodeResp(nil, h(args[1:]), proto))
}

func encodeResp(b []byte, v any, proto int) []byte {
	switch x := v.(type) {
	case nil:
		if proto == 3 {
			return append(b, "_\r\n"...)
		}
		return append(b, "$-1\r\n"...)
	case string:
		return redcon.AppendBulkString(b, x)
	case rStatus:
		return append(append(append(b, '+'), x...), "\r\n"...)
	case rErr:
		return append(append(append(b, '-'), x...), "\r\n"...)
	case int:
		return redcon.AppendInt(b, int64(x))
	case int64:
		return redcon.AppendInt(b, x)
	case rDouble:
		s := strconv.FormatFloat(float64(x), 'g', 17, 64)
		if proto == 3 {
			return append(append(append(b, ','), s...), "\r\n"...)
		}
		return redcon.AppendBulkString(b, s)
	case []any:
		b = redcon.AppendArray(b, len(x))
		for _, e := range x {
			b = encodeResp(b, e, proto)
		}
		return b
	}
	panic(fmt.Sprintf("encodeResp: %T", v))
}

// --- Command against the target server.

// typesScript returns one value of each kind RedisGears can encode, chosen by the first argument.
var typesScript = gears.Script{Function: "value", Source: `
def value(kind, *rest):
    if kind == 'bytes':
        return bytes(range(256))
    if kind == 'str':
        return 'héllo ' + ' '.join(rest)
    if kind == 'int':
        return -42
    if kind == 'big':
        return 2 ** 62
    if kind == 'float':
        return 1.5
    if kind == 'true':
        return True
    if kind == 'false':
        return False
    if kind == 'list':
        return [1, 'two', b'three', [4]]
    if kind == 'none':
        return None
    if kind == 'error':
        return '-oops'
    raise ValueError('unknown kind ' + kind)
`}

func TestCommandDecodesEveryType(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("types")
		opts := []gears.Option{gears.WithMode(gears.Sync)}

		b, err := gears.Command[[]byte](trig, e.rdb, typesScript, opts...)(e.ctx, "bytes")
		require.NoError(t, err)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		assert.Equal(t, all, b, "bytes come back unchanged")

		s, err := gears.Command[string](trig, e.rdb, typesScript, opts...)(e.ctx, "str", "a", "b")
		require.NoError(t, err)
		assert.Equal(t, "héllo a b", s)

		n, err := gears.Command[int64](trig, e.rdb, typesScript, opts...)(e.ctx, "int")
		require.NoError(t, err)
		assert.Equal(t, int64(-42), n)
		n, err = gears.Command[int64](trig, e.rdb, typesScript, opts...)(e.ctx, "big")
		require.NoError(t, err)
		assert.Equal(t, int64(1)<<62, n)

		f, err := gears.Command[float64](trig, e.rdb, typesScript, opts...)(e.ctx, "float")
		require.NoError(t, err)
		assert.Equal(t, 1.5, f)

		yes, err := gears.Command[bool](trig, e.rdb, typesScript, opts...)(e.ctx, "true")
		require.NoError(t, err)
		assert.True(t, yes)
		no, err := gears.Command[bool](trig, e.rdb, typesScript, opts...)(e.ctx, "false")
		require.NoError(t, err)
		assert.False(t, no)

		l, err := gears.Command[[]any](trig, e.rdb, typesScript, opts...)(e.ctx, "list")
		require.NoError(t, err)
		assert.Equal(t, []any{int64(1), "two", "three", []any{int64(4)}}, l)

		a, err := gears.Command[any](trig, e.rdb, typesScript, opts...)(e.ctx, "int")
		require.NoError(t, err)
		assert.Equal(t, int64(-42), a)

		// Replies that do not fit T.
		_, err = gears.Command[int64](trig, e.rdb, typesScript, opts...)(e.ctx, "str")
		var de *gears.DecodeError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, "int64", de.Target)
		assert.EqualError(t, err, `gears: cannot decode reply "héllo " into int64: the function did not return an int`)
		_, err = gears.Command[int64](trig, e.rdb, typesScript, opts...)(e.ctx, "none")
		assert.ErrorContains(t, err, `RedisGears sends "PY RECORD" for None`)
		_, err = gears.Command[string](trig, e.rdb, typesScript, opts...)(e.ctx, "list")
		assert.ErrorIs(t, err, gears.ErrUnexpectedReply)

		// A str starting with '-' is an error element; a raised exception is the call's error.
		_, err = gears.Command[string](trig, e.rdb, typesScript, opts...)(e.ctx, "error")
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "oops", ge.Msg)
		_, err = gears.Command[string](trig, e.rdb, typesScript, opts...)(e.ctx, "nosuch")
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "ValueError: unknown kind nosuch", ge.Exception)
		assert.Equal(t, "value", ge.Frames[len(ge.Frames)-1].Func)

		// Every Func above shared the one registration (same code, same session).
		assert.Len(t, e.registrationsOf(trig), 1)
	})
}

func TestCommandThenReceivesFutureResult(t *testing.T) {
	// The shape cache_get uses: Function returns a future that its own thread resolves (touching no
	// Redis), Then runs as the next step and does the Redis work.
	script := gears.Script{Function: "fetch", Then: "store", Source: `
import threading
import time

def fetch(key, value):
    f = gearsFuture()
    def work():
        time.sleep(0.05)  # like a download: resolved after fetch has returned the future
        f.continueRun([key, value.upper()])
    threading.Thread(target=work).start()
    return f

def store(kv):
    execute('SET', kv[0], kv[1])
    return execute('GET', kv[0])
`}
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		for _, mode := range []gears.Mode{gears.Async, gears.AsyncLocal, gears.Sync} {
			trig := e.name("fut_" + string(mode))
			call := gears.Command[string](trig, e.rdb, script, gears.WithMode(mode))
			key := e.name("k_" + string(mode))
			got, err := call(e.ctx, key, "abc")
			require.NoError(t, err, mode)
			assert.Equal(t, "ABC", got, mode)
			assert.Equal(t, "ABC", e.rdb.Get(e.ctx, key).Val())
			require.NoError(t, e.rdb.Del(e.ctx, key).Err())
			regs := e.registrationsOf(trig)
			require.Len(t, regs, 1)
			assert.Equal(t, string(mode), regs[0].Data.Mode)
		}

		// Then also works on a plain return value.
		plain := gears.Script{Function: "f", Then: "g", Source: "def f(a):\n    return int(a) * 2\ndef g(x):\n    return x + 1\n"}
		n, err := gears.Command[int64](e.name("plain"), e.rdb, plain, gears.WithMode(gears.Sync))(e.ctx, "20")
		require.NoError(t, err)
		assert.Equal(t, int64(41), n)
	})
}

func TestCommandKeyRouting(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		setter := gears.Script{Function: "put", Source: "def put(key, value):\n    execute('SET', key, value)\n    return [key, value]\n"}
		call := gears.Command[[]any](e.name("put"), e.rdb, setter, gears.WithKeyRouting(), gears.WithMode(gears.Sync))
		key := e.name("routed")
		got, err := call(e.ctx, key, "v")
		require.NoError(t, err)
		assert.Equal(t, []any{key, "v"}, got)
		assert.Equal(t, "v", e.rdb.Get(e.ctx, key).Val())
		assert.Equal(t, 1, hook.count("RG.TRIGGERONKEY"))
		assert.Equal(t, 0, hook.count("RG.TRIGGER"))
		require.NoError(t, e.rdb.Del(e.ctx, key).Err())

		_, err = call(e.ctx)
		assert.ErrorIs(t, err, gears.ErrNoKey)
	})
}

func TestCommandDescriptionSessionAndRequirements(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("desc")
		sid := e.name("custom_session")
		call := gears.Command[string](trig, e.rdb, versionedScript("d"), gears.WithDescription("my function"),
			gears.WithSessionID(sid), gears.WithMode(gears.Sync))
		got, err := call(e.ctx, "x")
		require.NoError(t, err)
		assert.Equal(t, "d:x", got)
		ss, err := e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{sid}})
		require.NoError(t, err)
		require.False(t, ss[0].Missing)
		assert.Regexp(t, `^my function gears:[0-9a-f]{32}$`, ss[0].Description)
		regs := e.registrationsOf(trig)
		require.Len(t, regs, 1)
		assert.Equal(t, ss[0].Description, regs[0].Desc, "the builder's desc carries the same text (used on 1.0)")
		assert.Equal(t, sid, regs[0].Session.SessionName)
	})
}

func TestCommandRequirementFailureIsNotCached(t *testing.T) {
	// A requirement that names a missing local path fails in pip at once, without the network retries
	// (about 27 s on a real server) that an unknown package name costs.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("req")
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		call := gears.Command[string](trig, e.rdb, versionedScript("r"), gears.WithMode(gears.Sync),
			gears.WithRequirements("./gears-no-such-dir/pkg"))
		_, err := call(e.ctx, "a")
		require.ErrorIs(t, err, gears.ErrRequirements)
		var re *gears.RegistrationError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))
		_, err = call(e.ctx, "a")
		require.ErrorIs(t, err, gears.ErrRequirements, "the failure is not remembered: tried again, failed again")
		assert.Equal(t, 2, hook.count("RG.PYEXECUTE"), "the second call sent its own RG.PYEXECUTE")
		assert.Zero(t, hook.count("RG.TRIGGER"), "no call reached the trigger")
		assert.Empty(t, e.registrationsOf(trig))
		n, err := e.rdb.Exists(e.ctx, gears.LockKey("gears_"+trig)).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "a failed registration releases its lock")
	})
}

func TestCommandConflictPolicies(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("policy")
		first := gears.Command[string](trig, e.rdb, versionedScript("old"), gears.WithMode(gears.Sync))
		got, err := first(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "old:a", got)

		keep := gears.Command[string](trig, e.rdb, versionedScript("new"), gears.WithMode(gears.Sync), gears.WithOnConflict(gears.Keep))
		got, err = keep(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "old:a", got, "Keep uses what is registered")

		fail := gears.Command[string](trig, e.rdb, versionedScript("new"), gears.WithMode(gears.Sync), gears.WithOnConflict(gears.Fail))
		_, err = fail(e.ctx, "a")
		assert.ErrorIs(t, err, gears.ErrConflict)
		got, err = first(e.ctx, "b")
		require.NoError(t, err)
		assert.Equal(t, "old:b", got, "nothing changed")

		upgrade := gears.Command[string](trig, e.rdb, versionedScript("new"), gears.WithMode(gears.Sync))
		got, err = upgrade(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "new:a", got)
		assert.Len(t, e.registrationsOf(trig), 1)

		// A trigger owned by a foreign session that holds only it is taken over (REPLACE_WITH)...
		foreign := e.name("foreign")
		trig2 := e.name("owned")
		e.register(fmt.Sprintf("GB('CommandReader').map(lambda x: 'theirs').register(trigger='%s', mode='sync')", trig2),
			&gears.PyExecuteOptions{ID: foreign})
		_, err = gears.Command[string](trig2, e.rdb, versionedScript("mine"), gears.WithOnConflict(gears.Fail))(e.ctx, "a")
		assert.ErrorIs(t, err, gears.ErrConflict)
		assert.ErrorContains(t, err, foreign)
		got, err = gears.Command[string](trig2, e.rdb, versionedScript("mine"), gears.WithOnConflict(gears.Keep))(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "theirs", got)
		got, err = gears.Command[string](trig2, e.rdb, versionedScript("mine"), gears.WithMode(gears.Sync))(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "mine:a", got)
		regs := e.registrationsOf(trig2)
		require.Len(t, regs, 1)
		assert.Equal(t, "gears_"+trig2, regs[0].Session.SessionName)
	})
}

func TestCommandWithDecoder(t *testing.T) {
	type point struct{ X, Y int64 }
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		script := gears.Script{Function: "pt", Source: "def pt(x, y):\n    return [int(x), int(y)]\n"}
		call := gears.Command[point](e.name("pt"), e.rdb, script, gears.WithMode(gears.Sync),
			gears.WithDecoder(func(reply any) (point, error) {
				l, ok := reply.([]any)
				if !ok || len(l) != 2 {
					return point{}, fmt.Errorf("want [x, y], got %v", reply)
				}
				return point{X: l[0].(int64), Y: l[1].(int64)}, nil
			}))
		p, err := call(e.ctx, 3, -4)
		require.NoError(t, err)
		assert.Equal(t, point{3, -4}, p)
	})
}

func TestCommandWaitingCallerHonoursContext(t *testing.T) {
	// Another process holds the session's registration lock (a foreign token, as a process that is
	// registering would leave it): callers wait without sending RG.PYEXECUTE, each bounded by its own
	// context, and the first call after the lock is gone registers.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		trig := e.name("ctx")
		lock := gears.LockKey("gears_" + trig)
		require.NoError(t, e.rdb.Set(e.ctx, lock, "another-process", time.Minute).Err())
		call := gears.Command[string](trig, e.rdb, versionedScript("c"), gears.WithMode(gears.Sync))

		// Two callers of one Func share the attempt that waits for the lock; each stops at its deadline.
		waiting := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() {
				ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
				defer cancel()
				_, err := call(ctx, "a")
				waiting <- err
			}()
		}
		for i := 0; i < 2; i++ {
			assert.ErrorIs(t, <-waiting, context.DeadlineExceeded)
		}
		waitUntil(t, time.Minute, "the shared attempt to poll the lock", func() bool { return hook.count("EXISTS") > 0 })
		assert.Zero(t, hook.count("RG.PYEXECUTE"), "nothing is sent while another process holds the lock")

		// The holder is done (its key is deleted): the attempt that was waiting, or the next, registers.
		require.NoError(t, e.rdb.Del(e.ctx, lock).Err())
		got, err := call(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "c:a", got)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))
	})
}

func TestCommandWaitsForACrashedLockHolder(t *testing.T) {
	// A process that crashed while registering leaves its lock key behind; it expires after the TTL and
	// the waiting caller registers then. No RG.PYEXECUTE is sent while the key exists.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("crashed")
		lock := gears.LockKey("gears_" + trig)
		probe := newRedis(e.addr, e.proto)
		defer probe.Close()
		var early atomic.Int32
		e.rdb.AddHook(hookFunc(func(cmd redis.Cmder) {
			if strings.EqualFold(cmd.Name(), "RG.PYEXECUTE") {
				if n, _ := probe.Exists(context.Background(), lock).Result(); n != 0 {
					if v, _ := probe.Get(context.Background(), lock).Result(); v == "crashed-process" {
						early.Add(1)
					}
				}
			}
		}))
		require.NoError(t, e.rdb.Set(e.ctx, lock, "crashed-process", 300*time.Millisecond).Err())
		got, err := gears.Command[string](trig, e.rdb, versionedScript("c"), gears.WithMode(gears.Sync))(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "c:a", got)
		assert.Zero(t, early.Load(), "RG.PYEXECUTE sent while the crashed process' lock was still there")
	})
}

func TestRegistrationLockRenewedWhileRegistering(t *testing.T) {
	// A registration that takes longer than the lock's TTL keeps the lock: the holder renews it. The
	// holder is stalled by a client hook between taking the lock and registering (as a slow requirements
	// install would stall it) until the test has seen three renewals.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("slowreg")
		lock := gears.LockKey("gears_" + trig)
		const ttl = 150 * time.Millisecond
		other := newRedis(e.addr, e.proto)
		defer other.Close()
		renewals := &countingHook{}
		e.rdb.AddHook(renewals)
		hold := make(chan struct{})
		e.rdb.AddHook(hookFunc(func(cmd redis.Cmder) {
			if strings.EqualFold(cmd.Name(), "RG.PYDUMPSESSIONS") && renewals.count("SET") > 0 {
				<-hold // the holder stalls (as a slow server would) between taking the lock and registering
			}
		}))
		done := make(chan error, 1)
		go func() {
			_, err := gears.Command[string](trig, e.rdb, versionedScript("c"), gears.WithMode(gears.Sync),
				gears.WithLockTTL(ttl))(e.ctx, "a")
			done <- err
		}()
		// Three renewals (EVALSHA or EVAL of the renew script) while the holder stalls.
		waitUntil(t, time.Minute, "three lock renewals", func() bool {
			return renewals.count("EVALSHA")+renewals.count("EVAL") >= 3
		})
		pttl, err := other.PTTL(e.ctx, lock).Result()
		require.NoError(t, err)
		assert.Greater(t, pttl, time.Duration(0), "the lock is still held")
		close(hold)
		require.NoError(t, <-done)
		n, err := other.Exists(e.ctx, lock).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "released")
	})
}

// hookFunc is a go-redis hook that calls fn before each command.
type hookFunc func(cmd redis.Cmder)

func (h hookFunc) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h hookFunc) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h hookFunc) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(cmd)
		return next(ctx, cmd)
	}
}

// --- Command on RedisGears 1.0 and on servers without RedisGears (canned-reply server).

// fake10 emulates what Command sees of a RedisGears 1.0 server: no RG.PYDUMPSESSIONS; registrations are
// found in RG.DUMPREGISTRATIONS; RG.TRIGGER answers with the registered desc so tests see which code
// is registered.
type fake10 struct {
	*fakeServer
	mu   sync.Mutex
	next int
	regs map[string][2]string // trigger → [id, desc]
}

var (
	reTrigger = regexp.MustCompile(`register\(trigger="([^"]*)"`)
	reDesc    = regexp.MustCompile(`desc="([^"]*)"`)
)

func startFake10(t *testing.T) *fake10 {
	f := &fake10{fakeServer: startFake(t), regs: map[string][2]string{}}
	f.handle("RG.PYEXECUTE", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(args) > 1 && args[1] != "REQUIREMENTS" && args[1] != "UNBLOCKING" {
			return rErr("Extra unkown arguments was given.")
		}
		trig := reTrigger.FindStringSubmatch(args[0])[1]
		if _, ok := f.regs[trig]; ok {
			return rErr(`['Traceback (most recent call last):\n', "gears.error: trigger already registered\n"]`)
		}
		f.next++
		f.regs[trig] = [2]string{fmt.Sprintf("%s-%d", zeroID, f.next), reDesc.FindStringSubmatch(args[0])[1]}
		return rStatus("OK")
	})
	f.handle("RG.DUMPREGISTRATIONS", func([]string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []any{}
		for trig, r := range f.regs {
			out = append(out, []any{"id", r[0], "reader", "CommandReader", "desc", r[1], "RegistrationData",
				[]any{"mode", "async", "numTriggered", 0, "numSuccess", 0, "numFailures", 0, "numAborted", 0,
					"lastError", nil, "args", []any{"trigger", trig}},
				"PD", "{'sessionId':'" + r[0] + "', 'depsList':[]}"})
		}
		return out
	})
	f.handle("RG.UNREGISTER", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		for trig, r := range f.regs {
			if r[0] == args[0] {
				delete(f.regs, trig)
				return rStatus("OK")
			}
		}
		return rErr("execution does not registered")
	})
	f.handle("RG.TRIGGER", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		r, ok := f.regs[args[0]]
		if !ok {
			return rErr("ERR subcommand not found")
		}
		return []any{r[1]}
	})
	return f
}

func TestCommandOnRedisGears10(t *testing.T) {
	for _, p := range protocols {
		t.Run(fmt.Sprintf("RESP%d", p), func(t *testing.T) {
			f := startFake10(t)
			rdb := newRedis(f.addr, p)
			defer rdb.Close()
			ctx := context.Background()

			v1 := gears.Command[string]("t", rdb, versionedScript("v1"))
			desc1, err := v1(ctx, "a")
			require.NoError(t, err)
			assert.Regexp(t, `^gears:[0-9a-f]{32}$`, desc1)
			assert.Len(t, f.received("RG.PYDUMPSESSIONS"), 1, "probed once, then remembered as 1.0")
			require.Len(t, f.received("RG.PYEXECUTE"), 1)
			assert.Len(t, f.received("RG.PYEXECUTE")[0], 1, "a 1.0 server gets the script without ID/DESCRIPTION")

			// Same code in another Func: recognised by the hash in the registration's desc.
			again, err := gears.Command[string]("t", rdb, versionedScript("v1"))(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, desc1, again)
			assert.Len(t, f.received("RG.PYEXECUTE"), 1)

			// Keep leaves it; Fail refuses; Upgrade unregisters the old code and registers the new.
			kept, err := gears.Command[string]("t", rdb, versionedScript("v2"), gears.WithOnConflict(gears.Keep))(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, desc1, kept)
			_, err = gears.Command[string]("t", rdb, versionedScript("v2"), gears.WithOnConflict(gears.Fail))(ctx, "a")
			assert.ErrorIs(t, err, gears.ErrConflict)
			desc2, err := gears.Command[string]("t", rdb, versionedScript("v2"))(ctx, "a")
			require.NoError(t, err)
			assert.NotEqual(t, desc1, desc2)
			assert.Equal(t, [][]string{{zeroID + "-1"}}, f.received("RG.UNREGISTER"))

			// Lost registration: the Func registers again and retries the call.
			f.mu.Lock()
			delete(f.regs, "t")
			f.mu.Unlock()
			got, err := v1(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, desc1, got)

			_, err = gears.Command[string]("k", rdb, versionedScript("v1"), gears.WithKeyRouting())(ctx, "key")
			assert.ErrorContains(t, err, "RedisGears 1.0 does not have")
		})
	}
}

func TestCommandWithoutRedisGears(t *testing.T) {
	f := startFake(t) // knows no RG.* command, like a plain Redis
	rdb := newRedis(f.addr, 3)
	defer rdb.Close()
	_, err := gears.Command[string]("t", rdb, versionedScript("v1"))(context.Background(), "a")
	require.ErrorIs(t, err, gears.ErrUnknownCommand)
	assert.ErrorContains(t, err, `gears: registering trigger "t" (session gears_t): the server has no RedisGears module`)
}

// fake12 emulates the session bookkeeping of a RedisGears 1.2 server, so that tests can script the races
// that real processes only hit by chance: another process winning the creation of the session, or a
// session left without registrations.
type fake12 struct {
	*fakeServer
	mu       sync.Mutex
	next     int
	sessions map[string]*fakeSession // by session id
	// onExecute, when set, runs before a PYEXECUTE is applied and may answer it instead (non-nil reply).
	onExecute func(id, desc string) any
}

type fakeSession struct {
	desc, trigger string
	regs          []string
}

func startFake12(t *testing.T) *fake12 {
	f := &fake12{fakeServer: startFake(t), sessions: map[string]*fakeSession{}}
	f.handle("RG.PYEXECUTE", func(args []string) any {
		var id, desc string
		upgrade := false
		for i := 1; i < len(args); i++ {
			switch args[i] {
			case "ID":
				i++
				id = args[i]
			case "DESCRIPTION":
				i++
				desc = args[i]
			case "UPGRADE":
				upgrade = true
			}
		}
		if f.onExecute != nil {
			if r := f.onExecute(id, desc); r != nil {
				return r
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.sessions[id]; ok && !upgrade {
			return rErr("Session " + id + " already exists")
		}
		f.put(id, desc, reTrigger.FindStringSubmatch(args[0])[1])
		return rStatus("OK")
	})
	f.handle("RG.PYDUMPSESSIONS", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		s, ok := f.sessions[args[1]]
		if !ok {
			return []any{"Session " + args[1] + " does not exists"}
		}
		regs := []any{}
		for _, r := range s.regs {
			regs = append(regs, r)
		}
		return []any{[]any{"ID", args[1], "sessionDescription", s.desc, "refCount", 1, "linked", "primary",
			"dead", "false", "requirementInstallationNeeded", 0, "requirements", []any{}, "registrations", regs}}
	})
	f.handle("RG.TRIGGER", func(args []string) any {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, s := range f.sessions {
			if s.trigger == args[0] && len(s.regs) > 0 {
				return []any{s.desc}
			}
		}
		return rErr("ERR subcommand not found")
	})
	return f
}

// put creates or replaces a session holding one registration of trigger; f.mu must be held.
func (f *fake12) put(id, desc, trigger string) {
	f.next++
	f.sessions[id] = &fakeSession{desc: desc, trigger: trigger, regs: []string{fmt.Sprintf("%s-%d", zeroID, f.next)}}
}

func TestCommandRegistrationRaces(t *testing.T) {
	ctx := context.Background()
	t.Run("another process registers first", func(t *testing.T) {
		f := startFake12(t)
		rdb := newRedis(f.addr, 3)
		defer rdb.Close()
		// The first PYEXECUTE loses: meanwhile another process applied the same code (its session appears)
		// and ours fails with "trigger already registered", as the apply step of a real server reports it.
		var once sync.Once
		f.onExecute = func(id, desc string) any {
			var r any
			once.Do(func() {
				f.mu.Lock()
				f.put(id, desc, "t")
				f.mu.Unlock()
				r = rErr(`['Traceback (most recent call last):\n', "gears.error: trigger already registered\n"]`)
			})
			return r
		}
		got, err := gears.Command[string]("t", rdb, versionedScript("v1"))(ctx, "a")
		require.NoError(t, err)
		assert.Regexp(t, `^gears:[0-9a-f]{32}$`, got)
		assert.Len(t, f.received("RG.PYEXECUTE"), 1, "the winner's code is recognised: no second PYEXECUTE")
		assert.Len(t, f.received("RG.PYDUMPSESSIONS"), 3, "before the lock, under it, after the lost race")
	})
	t.Run("session created concurrently", func(t *testing.T) {
		f := startFake12(t)
		rdb := newRedis(f.addr, 2)
		defer rdb.Close()
		var once sync.Once
		f.onExecute = func(id, desc string) any {
			once.Do(func() {
				f.mu.Lock()
				f.put(id, desc, "t") // the other process wins; ours then sees "Session … already exists"
				f.mu.Unlock()
			})
			return nil
		}
		_, err := gears.Command[string]("t", rdb, versionedScript("v1"))(ctx, "a")
		require.NoError(t, err)
		assert.Len(t, f.received("RG.PYEXECUTE"), 1)
		assert.Len(t, f.received("RG.PYDUMPSESSIONS"), 3, "before the lock, under it, after the lost race")
	})
	t.Run("session left without registrations", func(t *testing.T) {
		f := startFake12(t)
		rdb := newRedis(f.addr, 3)
		defer rdb.Close()
		call := gears.Command[string]("t", rdb, versionedScript("v1"))
		_, err := call(ctx, "a")
		require.NoError(t, err)
		f.mu.Lock()
		f.sessions["gears_t"].regs = nil // unregistered while an execution held the session
		f.mu.Unlock()
		_, err = call(ctx, "b")
		require.NoError(t, err)
		calls := f.received("RG.PYEXECUTE")
		require.Len(t, calls, 2)
		assert.Contains(t, calls[1], "UPGRADE", "the code is registered again under the existing session")
	})
	t.Run("gives up after repeated lost races", func(t *testing.T) {
		f := startFake12(t)
		rdb := newRedis(f.addr, 3)
		defer rdb.Close()
		f.onExecute = func(string, string) any { return rErr("Session gears_t already exists") }
		_, err := gears.Command[string]("t", rdb, versionedScript("v1"))(ctx, "a")
		assert.ErrorContains(t, err, "gave up after 5 attempts: the session kept changing under other clients")
		assert.Len(t, f.received("RG.PYEXECUTE"), 5)
	})
}

// heldScript is a function whose call with "hold" waits on a future the first time (per box), kept in
// a module of sys.modules that every session of the interpreter shares, and answers "<arg>:<n>" for its
// n-th call; held reports how many futures wait. The futures are never resolved: the test aborts the
// waiting execution. No thread is involved.
func heldScript(box string) gears.Script {
	return gears.Script{Function: "slow", Source: fmt.Sprintf(`import sys, types
BOX = %q
def box():
    m = sys.modules.get(BOX)
    if m is None:
        m = types.ModuleType(BOX)
        m.futs = []
        m.calls = 0
        sys.modules[BOX] = m
    return m
def slow(arg):
    b = box()
    b.calls += 1
    if arg == 'hold' and not b.futs:
        f = gearsFuture()
        b.futs.append(f)
        return f
    return '%%s:%%d' %% (arg, b.calls)
def held():
    return str(len(box().futs))
`, box)}
}

// abortHeld calls call("hold") in the background, waits until its execution waits on its future, and
// aborts that execution with RG.ABORTEXECUTION; a real RedisGears then answers the caller [] (gears-spec.md
// 8.1). It returns what the call returned.
func abortHeld(t *testing.T, e *gEnv, call gears.Func[string], box string) (string, error) {
	t.Helper()
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call(e.ctx, "hold")
		done <- result{v, err}
	}()
	other := newRedis(e.addr, e.proto) // the test's own calls do not count as the caller's
	defer other.Close()
	held := gears.Command[string](e.name("held"), other, gears.Script{Function: "held", Source: heldScript(box).Source},
		gears.WithMode(gears.Sync))
	waitUntil(t, time.Minute, "the call to wait on its future", func() bool {
		n, err := held(e.ctx)
		return err == nil && n == "1"
	})
	var running []string
	waitUntil(t, time.Minute, "the waiting execution in RG.DUMPEXECUTIONS", func() bool {
		execs, err := e.c.DumpExecutions(e.ctx)
		if err != nil {
			return false
		}
		running = running[:0]
		for _, x := range execs {
			if x.Registered && x.Status != "done" && x.Status != "aborted" {
				running = append(running, x.ExecutionID)
			}
		}
		return len(running) > 0
	})
	require.Len(t, running, 1, "one execution waits")
	require.NoError(t, e.c.AbortExecution(e.ctx, running[0]))
	r := <-done
	return r.v, r.err
}

func TestCommandAbortedExecution(t *testing.T) {
	// An execution aborted while it runs (RG.ABORTEXECUTION here; also queued executions on an UPGRADE
	// or RG.UNREGISTER … ABORTPENDING) replies with no record; the Func says so with ErrAborted.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		box := e.name("box")
		call := gears.Command[string](e.name("slow"), e.rdb, heldScript(box), gears.WithMode(gears.AsyncLocal))
		got, err := call(e.ctx, "first")
		require.NoError(t, err)
		assert.Equal(t, "first:1", got)

		_, err = abortHeld(t, e, call, box)
		assert.ErrorIs(t, err, gears.ErrAborted)
	})
}

func TestIdempotentCommandRetriesADroppedCall(t *testing.T) {
	// The same abort, with WithIdempotent: the Func checks its registration and calls again; the second
	// execution does not wait and answers.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		box := e.name("box")
		call := gears.Command[string](e.name("slow"), e.rdb, heldScript(box), gears.WithMode(gears.AsyncLocal),
			gears.WithIdempotent())
		got, err := abortHeld(t, e, call, box)
		require.NoError(t, err)
		assert.Equal(t, "hold:2", got, "the function ran again and answered")
		assert.Equal(t, 2, hook.count("RG.TRIGGER"), "the dropped call and its retry")

		// A function that fails is not retried.
		failing := gears.Command[string](e.name("fails"), e.rdb, gears.Script{Function: "boom",
			Source: "def boom(x):\n    raise Exception('no')\n"}, gears.WithIdempotent())
		_, err = failing(e.ctx, "a")
		assert.ErrorContains(t, err, "Exception: no")
		assert.Equal(t, 3, hook.count("RG.TRIGGER"), "one call, no retry")
	})
}
