package gearstest

import (
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Emulator-only tests of client features the README lists as supported and nothing else covered:
// PSUBSCRIBE, SSUBSCRIBE, DISCARD, QUIT and redis-benchmark.

func TestPatternSubscriptions(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			rdb := newRDB(t, srv.Addr(), proto)
			p := strconv.Itoa(proto)

			psub := rdb.PSubscribe(ctx, "news"+p+".*")
			defer psub.Close()
			sub, err := psub.Receive(ctx)
			require.NoError(t, err)
			assert.Equal(t, &redis.Subscription{Kind: "psubscribe", Channel: "news" + p + ".*", Count: 1}, sub)
			// Published from inside a gear function, as applications do.
			require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
				"GB('CommandReader').map(lambda x: execute('PUBLISH', x[1], x[2])).register(trigger='pub"+p+"', mode='sync')").Val())
			require.Equal(t, []any{"1"}, rdb.Do(ctx, "RG.TRIGGER", "pub"+p, "news"+p+".sport", "goal").Val())
			msg, err := psub.ReceiveMessage(ctx)
			require.NoError(t, err)
			assert.Equal(t, &redis.Message{Channel: "news" + p + ".sport", Pattern: "news" + p + ".*", Payload: "goal"}, msg)

		})
	}
}

// TestShardSubscriptions: SSUBSCRIBE/SPUBLISH reach the data store, so they need one that has them:
// an external Redis 7 (WithRedis). The in-process store (miniredis) answers "unknown command".
func TestShardSubscriptions(t *testing.T) {
	srv := Run(t, WithRedis("redis://"+startRedisServer(t)))
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			rdb := newRDB(t, srv.Addr(), proto)
			p := strconv.Itoa(proto)
			ssub := rdb.SSubscribe(ctx, "orders"+p)
			defer ssub.Close()
			sub, err := ssub.Receive(ctx)
			require.NoError(t, err)
			assert.Equal(t, &redis.Subscription{Kind: "ssubscribe", Channel: "orders" + p, Count: 1}, sub)
			require.Equal(t, int64(1), rdb.SPublish(ctx, "orders"+p, "new order").Val())
			msg, err := ssub.ReceiveMessage(ctx)
			require.NoError(t, err)
			assert.Equal(t, &redis.Message{Channel: "orders" + p, Payload: "new order"}, msg)
		})
	}
}

func TestDiscardAndQuit(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
		"GB('CommandReader').map(lambda x: execute('INCR', 'ran')).register(trigger='count', mode='sync', convertToStr=False)").Val())

	// DISCARD drops the queue, RG commands included: nothing of it runs.
	rc := dialRaw(t, srv.Addr())
	rc.send(t, "MULTI\r\nSET x 1\r\nRG.TRIGGER count\r\nDISCARD\r\nGET x\r\nEXEC\r\nDISCARD\r\n")
	assert.Equal(t, "+OK\r\n", rc.reply(t))
	assert.Equal(t, "+QUEUED\r\n", rc.reply(t))
	assert.Equal(t, "+QUEUED\r\n", rc.reply(t))
	assert.Equal(t, "+OK\r\n", rc.reply(t))
	assert.Equal(t, "$-1\r\n", rc.reply(t))
	assert.Equal(t, "-ERR EXEC without MULTI\r\n", rc.reply(t))
	assert.Equal(t, "-ERR DISCARD without MULTI\r\n", rc.reply(t))
	assert.Equal(t, redis.Nil, rdb.Get(ctx, "ran").Err(), "the discarded trigger did not run")
	// The connection is usable after DISCARD: the same trigger runs once.
	rc.send(t, "RG.TRIGGER count\r\n")
	assert.Equal(t, "*1\r\n:1\r\n", rc.reply(t))

	// QUIT answers OK and closes the connection.
	rc.send(t, "QUIT\r\n")
	assert.Equal(t, "+OK\r\n", rc.reply(t))
	_, err := rc.r.ReadByte()
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "1", rdb.Get(ctx, "ran").Val())
}

// TestRedisBenchmark runs redis-benchmark against gearstest: its handshake (CONFIG GET), plain commands
// and an RG.TRIGGER, which must run exactly as many times as requested.
func TestRedisBenchmark(t *testing.T) {
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark is not installed (apt-get install redis-tools)")
	}
	srv := Run(t)
	ctx := ctxT(t)
	rdb := newRDB(t, srv.Addr(), 2)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
		"GB('CommandReader').map(lambda x: execute('INCR', 'benched')).register(trigger='bench', mode='sync', convertToStr=False)").Val())
	host, port := "127.0.0.1", srv.Addr()[len("127.0.0.1:"):]
	run := func(args ...string) string {
		cmd := exec.CommandContext(ctx, bench, append([]string{"-h", host, "-p", port, "-q"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	out := run("-n", "2000", "-c", "10", "-t", "ping,set,get")
	for _, name := range []string{"PING_INLINE", "PING_MBULK", "SET", "GET"} {
		// Progress lines end in \r: the final line of each test follows one.
		assert.Regexp(t, regexp.MustCompile(`(^|[\r\n])`+name+`: [0-9.]+ requests per second`), out)
	}
	out = run("-n", "1000", "-c", "10", "-P", "4", "RG.TRIGGER", "bench")
	assert.Regexp(t, `(^|[\r\n])RG\.TRIGGER bench: [0-9.]+ requests per second`, out)
	assert.Equal(t, "1000", rdb.Get(ctx, "benched").Val(), "every request ran the trigger once")
	assert.NotContains(t, out, "ERR")
}
