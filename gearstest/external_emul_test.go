package gearstest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startRedisServer starts a throw-away redis-server on a free loopback port, stopped by t.Cleanup.
func startRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install -y redis-server); skipping the external Redis test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	require.Eventually(t, func() bool { return rdb.Ping(context.Background()).Err() == nil }, 10*time.Second, 20*time.Millisecond)
	return addr
}

func TestExternalRedis(t *testing.T) {
	redisAddr := startRedisServer(t)
	srv := Run(t, WithRedis("redis://"+redisAddr))
	ctx := ctxT(t)
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = direct.Close() })

	for _, proto := range []int{2, 3} {
		rdb := newRDB(t, srv.Addr(), proto)
		// Data commands go to the external Redis, per client (SELECT stays on this connection).
		require.NoError(t, rdb.Set(ctx, "plain", "from-gears", 0).Err())
		assert.Equal(t, "from-gears", direct.Get(ctx, "plain").Val())
		require.NoError(t, rdb.FlushAll(ctx).Err())
	}

	rdb := newRDB(t, srv.Addr(), 3)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", `
def store(x):
    execute('SET', x[1], x[2])
    return execute('GET', x[1])
GB('CommandReader').map(store).register(trigger='store', mode='sync')
`).Val())
	// execute() inside a gear function writes to the external Redis too.
	require.Equal(t, []any{"v"}, rdb.Do(ctx, "RG.TRIGGER", "store", "written", "v").Val())
	assert.Equal(t, "v", direct.Get(ctx, "written").Val())
	require.NoError(t, direct.Set(ctx, "outside", "o", 0).Err())
	assert.Equal(t, "o", rdb.Get(ctx, "outside").Val())

	// SELECT is per client: another gearstest client still sees DB 0.
	c1 := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: 3})
	t.Cleanup(func() { _ = c1.Close() })
	require.NoError(t, c1.Set(ctx, "indb3", "x", 0).Err())
	assert.Equal(t, int64(0), rdb.Exists(ctx, "indb3").Val())
	assert.Equal(t, "x", c1.Get(ctx, "indb3").Val())

	// MULTI/EXEC with a trigger on the external store.
	cmds, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx", "1", 0)
		p.Do(ctx, "RG.TRIGGER", "store", "tx2", "2")
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []any{"2"}, cmds[1].(*redis.Cmd).Val())
	assert.Equal(t, "1", direct.Get(ctx, "tx").Val())
}

func TestBadRedisURL(t *testing.T) {
	_, err := Start(WithRedis("http://nope"), WithLogger(nil))
	require.ErrorIs(t, err, ErrBadRedisURL)
}

func TestStartErrors(t *testing.T) {
	_, err := Start(WithPython("/nonexistent/python3"), WithLogger(nil))
	require.ErrorIs(t, err, ErrNoPython)
	_, err = Start(WithPython("false"), WithLogger(nil))
	require.ErrorIs(t, err, ErrWorkerStart)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = Start(WithAddr(ln.Addr().String()), WithLogger(nil))
	require.ErrorContains(t, err, "address already in use")
}

func TestRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed (apt-get install -y redis-tools); skipping")
	}
	srv := Run(t)
	host, port, _ := net.SplitHostPort(srv.Addr())
	// Piped commands make redis-cli read the command table first (COMMAND DOCS), which must not trip it.
	cmd := exec.Command(cli, "-h", host, "-p", port)
	cmd.Stdin = strings.NewReader("RG.PYEXECUTE \"GB('CommandReader').register(trigger='cli')\"\nRG.TRIGGER cli a\nCOMMAND COUNT\nMULTI\nBLPOP nothing 0\nEXEC\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Len(t, lines, 6, "%s", out)
	assert.Equal(t, "OK", lines[0])
	assert.Equal(t, "['cli', 'a']", lines[1])
	assert.Regexp(t, `^\d+$`, lines[2])
	assert.Equal(t, []string{"OK", "QUEUED", ""}, lines[3:])
}
