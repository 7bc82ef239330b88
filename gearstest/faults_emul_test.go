package gearstest

import (
	"bufio"
	"context"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests cover what only gearstest has (worker crashes, protocol guards, the data store modes);
// the behaviour shared with a real RedisGears is covered by the spec_*_test.go suite.

func newRDB(t *testing.T, addr string, proto int) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, ReadTimeout: 30 * time.Second, PoolSize: 8})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWorkerDeathRestartsAndRestoresSessions(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.NoError(t, rdb.Set(ctx, "k", "v1", 0).Err())
	script := `
import time
counter = {'n': 0}
def slow(x):
    execute('SET', 'slow_started', '1')
    time.sleep(30)
    return 'never'
def get(x):
    counter['n'] += 1
    return [execute('GET', 'k'), counter['n']]
GB('CommandReader').map(slow).register(trigger='slow')
GB('CommandReader').map(get).register(trigger='get', mode='sync', convertToStr=False)
`
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", script, "ID", "survivor").Val())
	require.Equal(t, []any{[]any{"v1", int64(1)}}, rdb.Do(ctx, "RG.TRIGGER", "get").Val())
	before := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, before, 2)

	// A call in flight when the worker dies gets an error, not a hang.
	errc := make(chan error, 1)
	go func() { errc <- rdb.Do(ctx, "RG.TRIGGER", "slow").Err() }()
	waitUntil(t, 30*time.Second, "the slow trigger to run", func() bool { return rdb.Get(ctx, "slow_started").Val() == "1" })
	require.NoError(t, srv.KillWorker())
	select {
	case err := <-errc:
		require.EqualError(t, err, "ERR gearstest: python worker died, execution aborted")
	case <-ctx.Done():
		t.Fatal("the trigger in flight did not get an error after the worker died")
	}

	// The session is restored in a fresh worker: same registration ids, fresh globals, same code.
	require.Eventually(t, func() bool {
		v, err := rdb.Do(ctx, "RG.TRIGGER", "get").Result()
		return err == nil && assert.ObjectsAreEqual([]any{[]any{"v1", int64(1)}}, v)
	}, 20*time.Second, 50*time.Millisecond)
	after := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, after, 2)
	for i := range before {
		assert.Equal(t, before[i].([]any)[1], after[i].([]any)[1], "registration id kept")
	}
	sess := rdb.Do(ctx, "RG.PYDUMPSESSIONS", "SESSIONS", "survivor").Val().([]any)
	require.Len(t, sess, 1)
	assert.Equal(t, "survivor", sess[0].([]any)[1])

	// New registrations keep counting ids from where they were.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='late')").Val())
	require.Equal(t, []any{"['late', 'x']"}, rdb.Do(ctx, "RG.TRIGGER", "late", "x").Val())
}

func TestWorkerDeathAbortsBlockingRun(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	id, err := rdb.Do(ctx, "RG.PYEXECUTE", "import time\nGB('ShardsIDReader').map(lambda x: time.sleep(30)).run()", "UNBLOCKING").Text()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(id, zeroShard+"-"), id)
	require.NoError(t, srv.KillWorker())
	res, err := rdb.Do(ctx, "RG.GETRESULTSBLOCKING", id).Result()
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{}, []any{"ERR gearstest: python worker died, execution aborted"}}, res)
	ex := rdb.Do(ctx, "RG.DUMPEXECUTIONS").Val().([]any)
	require.Len(t, ex, 1)
	assert.Equal(t, []any{"executionId", id, "status", "aborted", "registered", int64(0)}, ex[0])
}

// rawConn sends raw bytes to the server and reads raw replies.
type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(t *testing.T, s string) {
	t.Helper()
	_, err := rc.c.Write([]byte(s))
	require.NoError(t, err)
}

// reply reads one whole reply and returns its bytes.
func (rc *rawConn) reply(t *testing.T) string {
	t.Helper()
	b, err := readRaw(rc.r, nil)
	require.NoError(t, err)
	return string(b)
}

func TestMalformedInput(t *testing.T) {
	srv := Run(t)
	addr := srv.Addr()

	cases := []struct{ name, in, want string }{
		{"bulk length overflow", "*1\r\n$9223372036854775800\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk length too big", "*2\r\n$4\r\nPING\r\n$999999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk length not a number", "*1\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"array length huge", "*99999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.send(t, tc.in)
			assert.Equal(t, tc.want, rc.reply(t))
			_, err := rc.r.ReadByte()
			assert.Error(t, err, "the connection is closed after a protocol error, as Redis does")
		})
	}

	t.Run("commands before a bad one are answered", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.send(t, "PING\r\n*1\r\n$9999999999999\r\n")
		assert.Equal(t, "+PONG\r\n", rc.reply(t))
		assert.Equal(t, "-ERR Protocol error: invalid bulk length\r\n", rc.reply(t))
	})

	t.Run("errors that keep the connection", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.send(t, "NOSUCHCOMMAND a b\r\n")
		assert.Equal(t, "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b' \r\n", rc.reply(t))
		rc.send(t, respCmd("RG.UNREGISTER"))
		assert.Equal(t, "-ERR wrong number of arguments for 'rg.unregister' command\r\n", rc.reply(t))
		rc.send(t, respCmd("RG.GETRESULTSBLOCKING", "a", "b"))
		assert.Equal(t, "-ERR wrong number of arguments for 'rg.getresultsblocking' command\r\n", rc.reply(t))
		rc.send(t, respCmd("RG.TRIGGER"))
		assert.Equal(t, "-ERR wrong number of arguments for 'rg.trigger' command\r\n", rc.reply(t))
		// Inline commands and pipelining work on the same connection afterwards.
		rc.send(t, "PING\r\nSET a 1\r\nGET a\r\n")
		assert.Equal(t, "+PONG\r\n", rc.reply(t))
		assert.Equal(t, "+OK\r\n", rc.reply(t))
		assert.Equal(t, "$1\r\n1\r\n", rc.reply(t))
	})

	t.Run("big but legal bulk", func(t *testing.T) {
		rc := dialRaw(t, addr)
		big := strings.Repeat("x", 3<<20)
		rc.send(t, respCmd("SET", "big", big))
		assert.Equal(t, "+OK\r\n", rc.reply(t))
		rc.send(t, "STRLEN big\r\n")
		assert.Equal(t, ":3145728\r\n", rc.reply(t))
	})

	// The server is still fine.
	rdb := newRDB(t, addr, 3)
	require.Equal(t, "PONG", rdb.Ping(ctxT(t)).Val())
}

// respCmd encodes a command as a RESP array of bulk strings.
func respCmd(args ...string) string {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return string(appendCommand(nil, bs...))
}

func TestMultiExecWithTriggers(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := newRDB(t, srv.Addr(), proto)
		require.NoError(t, rdb.FlushAll(ctx).Err())
		_ = rdb.Do(ctx, "RG.UNREGISTER", zeroShard+"-1").Err()
		// Fresh session per protocol: triggers are named after it.
		p := strconv.Itoa(proto)
		require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
GB('CommandReader').map(lambda x: [isAsyncAllow(), execute('INCR', x[1])]).register(trigger='s`+p+`', mode='sync', convertToStr=False)
GB('CommandReader').register(trigger='a`+p+`')
`).Val())
		cmds, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, "n", "10", 0)
			pipe.Do(ctx, "RG.TRIGGER", "s"+p, "n")
			pipe.Do(ctx, "RG.TRIGGER", "a"+p)
			pipe.Do(ctx, "RG.PYEXECUTE", "GB().run()")
			pipe.Get(ctx, "n")
			return nil
		})
		require.Error(t, err) // the first error of the transaction
		require.Len(t, cmds, 5)
		assert.Equal(t, "OK", cmds[0].(*redis.StatusCmd).Val())
		assert.Equal(t, []any{[]any{int64(0), int64(11)}}, cmds[1].(*redis.Cmd).Val(), "sync trigger ran inside EXEC with isAsyncAllow() False")
		assert.EqualError(t, cmds[2].Err(), "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.")
		assert.EqualError(t, cmds[3].Err(), "Can not run gears inside a multi exec, lua, or when blocking is not allowed")
		assert.Equal(t, "11", cmds[4].(*redis.StringCmd).Val())
	}

	t.Run("WATCH aborts a transaction with triggers", func(t *testing.T) {
		rdb := newRDB(t, srv.Addr(), 2)
		other := newRDB(t, srv.Addr(), 2)
		err := rdb.Watch(ctx, func(tx *redis.Tx) error {
			require.NoError(t, other.Set(ctx, "w", "changed", 0).Err())
			_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Do(ctx, "RG.TRIGGER", "s2", "w2")
				return nil
			})
			return err
		}, "w")
		require.ErrorIs(t, err, redis.TxFailedErr)
		v, err := rdb.Get(ctx, "w2").Result()
		assert.ErrorIs(t, err, redis.Nil, "the trigger did not run: %q", v)
	})

	t.Run("queue-time error aborts", func(t *testing.T) {
		rc := dialRaw(t, srv.Addr())
		rc.send(t, "MULTI\r\nRG.TRIGGER\r\nSET x 1\r\nEXEC\r\nGET x\r\n")
		assert.Equal(t, "+OK\r\n", rc.reply(t))
		assert.Equal(t, "-ERR wrong number of arguments for 'rg.trigger' command\r\n", rc.reply(t))
		assert.Equal(t, "+QUEUED\r\n", rc.reply(t))
		assert.Equal(t, "-EXECABORT Transaction discarded because of previous errors.\r\n", rc.reply(t))
		assert.Equal(t, "$-1\r\n", rc.reply(t))
	})
}

func TestResp3Replies(t *testing.T) {
	srv := Run(t)
	rc := dialRaw(t, srv.Addr())
	rc.send(t, "HELLO 3\r\n")
	hello := rc.reply(t)
	require.True(t, strings.HasPrefix(hello, "%"), hello)
	rc.send(t, respCmd("RG.PYEXECUTE", "GB('CommandReader').register(trigger='three')"))
	require.Equal(t, "+OK\r\n", rc.reply(t))
	rc.send(t, "RG.DUMPREGISTRATIONS\r\n")
	got := rc.reply(t)
	assert.Contains(t, got, "$4\r\ndesc\r\n_\r\n")
	assert.Contains(t, got, "$16\r\navgRunDurationMS\r\n,0\r\n")
	assert.Contains(t, got, "$9\r\nlastError\r\n_\r\n")
	// The same under RESP2.
	rc2 := dialRaw(t, srv.Addr())
	rc2.send(t, "RG.DUMPREGISTRATIONS\r\n")
	got2 := rc2.reply(t)
	assert.Contains(t, got2, "$4\r\ndesc\r\n$-1\r\n")
	assert.Contains(t, got2, "$16\r\navgRunDurationMS\r\n$1\r\n0\r\n")
}

func TestBlockingCommands(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	blocker := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 2)

	// A client blocked in BLPOP does not stall the others.
	got := make(chan []string, 1)
	go func() {
		v, _ := blocker.BLPop(ctx, 0, "q").Result()
		got <- v
	}()
	notAnsweredYet(t, got, "BLPOP of an empty list") // (its window lets the BLPOP reach the server)
	// No elapsed-time check: BLPOP getting the item shows that PING and RPUSH ran while it blocked.
	require.Equal(t, "PONG", other.Ping(ctx).Val())
	require.NoError(t, other.RPush(ctx, "q", "item").Err())
	select {
	case v := <-got:
		assert.Equal(t, []string{"q", "item"}, v)
	case <-ctx.Done():
		t.Fatal("BLPOP was not served")
	}

	// Inside a gear function blocking commands answer at once, as on a real RedisGears.
	require.Equal(t, "OK", other.Do(ctx, "RG.PYEXECUTE", `
def f(x):
    return [execute('BLPOP', 'empty', '0'), execute('BRPOP', 'full', '0'), execute('BZPOPMIN', 'nz', '0'),
            execute('BRPOPLPUSH', 'empty', 'dst', '0'), execute('XREAD', 'BLOCK', '0', 'STREAMS', 'nostream', '$')]
GB('CommandReader').map(f).register(trigger='nb', mode='sync', convertToStr=False)
`).Val())
	require.NoError(t, other.RPush(ctx, "full", "a", "b").Err())
	// A blocking form that blocked would never return (timeouts 0): ctx ends the test then.
	v, err := other.Do(ctx, "RG.TRIGGER", "nb").Result()
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"PY RECORD", []any{"full", "b"}, "PY RECORD", "PY RECORD", "PY RECORD"}}, v)
}

func TestConcurrentClients(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 3)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
GB('CommandReader').map(lambda x: execute('INCR', 'hits')).register(trigger='inc', mode='async_local', convertToStr=False)
`).Val())
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer c.Close()
			for j := 0; j < 25; j++ {
				if err := c.Do(ctx, "RG.TRIGGER", "inc").Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, "500", rdb.Get(ctx, "hits").Val())
}

func TestPubSub(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := newRDB(t, srv.Addr(), proto)
		sub := rdb.Subscribe(ctx, "news")
		_, err := sub.Receive(ctx)
		require.NoError(t, err)
		ch := sub.Channel()
		require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
		require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
			"GB('CommandReader').map(lambda x: execute('PUBLISH', 'news', x[1])).register(trigger='pub"+strconv.Itoa(proto)+"', mode='sync')").Val())
		require.Equal(t, []any{"1"}, rdb.Do(ctx, "RG.TRIGGER", "pub"+strconv.Itoa(proto), "hello").Val())
		select {
		case m := <-ch:
			assert.Equal(t, "news", m.Channel)
			assert.Equal(t, "hello", m.Payload)
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
		require.NoError(t, sub.Close())
	}
}

func TestInfoAndConfig(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := newRDB(t, srv.Addr(), proto)
		info := rdb.Info(ctx).Val()
		assert.Contains(t, info, "# Server\r\nredis_version:7.0.15\r\n")
		assert.Contains(t, info, "# Clients\r\n")
		assert.True(t, strings.HasPrefix(rdb.Info(ctx, "server").Val(), "# Server\r\n"))
		assert.NotContains(t, rdb.Info(ctx, "clients").Val(), "# Server")
		assert.Equal(t, map[string]string{"save": "", "appendonly": "no"}, rdb.ConfigGet(ctx, "[sa]*").Val())
	}
}

func TestWorkerDeathInsideAtomicReleasesTheLock(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	other := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
import time
def f(x):
    with atomic():
        execute('SET', 'inside', '1')
        time.sleep(30)
    return 'never'
GB('CommandReader').map(f).register(trigger='stuck', mode='async_local')
`).Val())
	errc := make(chan error, 1)
	go func() { errc <- rdb.Do(ctx, "RG.TRIGGER", "stuck").Err() }()
	require.Eventually(t, func() bool { return lockedByExecution(srv) }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, srv.KillWorker())
	require.EqualError(t, <-errc, "ERR gearstest: python worker died, execution aborted")
	// The lock the dead worker's execution held is free: this SET returns (ctx bounds the wait).
	require.NoError(t, other.Set(ctx, "after", "1", 0).Err())
	assert.Equal(t, "1", other.Get(ctx, "inside").Val())
}

// lockedByExecution reports whether an execution token ("x...") holds the global lock.
func lockedByExecution(s *Server) bool {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	return strings.HasPrefix(s.lock.owner, "x") && s.lock.depth > 0
}

func TestBlockingCommandInsideTransactionDoesNotBlock(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := newRDB(t, srv.Addr(), proto)
		p := strconv.Itoa(proto)
		require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='tx"+p+"', mode='sync')").Val())
		require.NoError(t, rdb.RPush(ctx, "l2"+p, "x").Err())
		// BLPOP 0 inside MULTI that blocked would never return: ctx ends the test then.
		cmds, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.BLPop(ctx, 0, "empty"+p, "l2"+p)
			pipe.BLPop(ctx, 0, "empty"+p)
			pipe.Do(ctx, "RG.TRIGGER", "tx"+p)
			return nil
		})
		require.ErrorIs(t, err, redis.Nil)
		assert.Equal(t, []string{"l2" + p, "x"}, cmds[0].(*redis.StringSliceCmd).Val())
		assert.ErrorIs(t, cmds[1].Err(), redis.Nil)
		assert.Equal(t, []any{"['tx" + p + "']"}, cmds[2].(*redis.Cmd).Val())
	}
}

func TestHello(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	v := rdb.Do(ctx, "HELLO", "3", "SETNAME", "me").Val()
	m, ok := v.(map[any]any)
	require.True(t, ok, "%#v", v)
	assert.Equal(t, "redis", m["server"])
	assert.Equal(t, "7.0.15", m["version"])
	assert.Equal(t, int64(3), m["proto"])
	assert.Equal(t, "me", rdb.Do(ctx, "CLIENT", "GETNAME").Val())
	assert.EqualError(t, rdb.Do(ctx, "HELLO", "4").Err(), "NOPROTO unsupported protocol version")
	v2 := newRDB(t, srv.Addr(), 2).Do(ctx, "HELLO", "2").Val()
	arr, ok := v2.([]any)
	require.True(t, ok, "%#v", v2)
	assert.Equal(t, []any{"server", "redis", "version", "7.0.15", "proto", int64(2)}, arr[:6])
}

func TestGarbageInput(t *testing.T) {
	srv := Run(t)
	// Random bytes, and random mutations of valid commands, on many connections: the server must answer
	// or close, never crash or hang.
	valid := []string{
		respCmd("RG.PYEXECUTE", "GB('CommandReader').register(trigger='g')"),
		respCmd("RG.TRIGGER", "g", "a"), respCmd("SET", "k", "v"), respCmd("RG.DUMPREGISTRATIONS"),
		"PING\r\n", respCmd("RG.GETEXECUTION", "x", "y", "z"), respCmd("MULTI"), respCmd("EXEC"),
	}
	rnd := newRand(1)
	for i := 0; i < 150; i++ {
		var payload []byte
		if i%2 == 0 {
			payload = make([]byte, 1+rnd.Intn(512))
			for j := range payload {
				payload[j] = byte(rnd.Intn(256))
			}
		} else {
			payload = []byte(valid[rnd.Intn(len(valid))])
			for k := 0; k < 1+rnd.Intn(3); k++ {
				const alphabet = "*$\r\n-9:0 "
				payload[rnd.Intn(len(payload))] = alphabet[rnd.Intn(len(alphabet))]
			}
		}
		c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Write(payload)
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		_ = c.Close()
	}
	rc := dialRaw(t, srv.Addr())
	rc.send(t, "PING\r\n")
	assert.Equal(t, "+PONG\r\n", rc.reply(t))
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }

func TestRestoreAfterPartialUnregister(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
GB('CommandReader').map(lambda x: 'one').register(trigger='one', mode='sync')
GB('CommandReader').map(lambda x: 'two').register(trigger='two', mode='sync')
`, "ID", "pair").Val())
	regs := rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 2)
	first := regs[0].([]any)[1].(string)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.UNREGISTER", first).Val())
	require.Equal(t, []any{"OK - value was saved in extra config dictionary"}, rdb.Do(ctx, "RG.CONFIGSET", "answer", "42").Val())

	require.NoError(t, srv.KillWorker())
	require.Eventually(t, func() bool {
		v, err := rdb.Do(ctx, "RG.TRIGGER", "two").Result()
		return err == nil && assert.ObjectsAreEqual([]any{"two"}, v)
	}, 20*time.Second, 50*time.Millisecond)
	assert.EqualError(t, rdb.Do(ctx, "RG.TRIGGER", "one").Err(), "ERR subcommand not found")
	// The worker forgot the unregistered trigger too: it can be registered again.
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
		"GB('CommandReader').map(lambda x: configGet('answer')).register(trigger='one', mode='sync')").Val())
	assert.Equal(t, []any{"42"}, rdb.Do(ctx, "RG.TRIGGER", "one").Val())
}
