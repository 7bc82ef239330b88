package gears_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	return f
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
