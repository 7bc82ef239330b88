package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer collects the server's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestServeUntilSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	bin := gearsBinary(t)

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			cmd := exec.Command(bin, "serve", "--addr", addr)
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
			})

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			defer rdb.Close()
			require.Eventually(t, func() bool { return rdb.Ping(ctx).Err() == nil }, 20*time.Second, 50*time.Millisecond)
			require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
				"GB('CommandReader').foreach(lambda x: log('hello ' + x[1])).register(trigger='hi', mode='sync')").Val())
			require.Equal(t, []any{"['hi', 'world']"}, rdb.Do(ctx, "RG.TRIGGER", "hi", "world").Val())

			require.NoError(t, cmd.Process.Signal(sig))
			select {
			case err := <-exited:
				require.NoError(t, err, "clean exit on %v; log:\n%s", sig, stderr.String())
			case <-time.After(15 * time.Second):
				t.Fatalf("gears serve did not stop on %v; log:\n%s", sig, stderr.String())
			}
			log := stderr.String()
			// Redis' log style: "<pid>:M 28 Nov 2026 18:00:00.000 * <msg>".
			assert.Regexp(t, regexp.MustCompile(`(?m)^\d+:M \d\d \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3} \* gearstest ready to accept connections on `+regexp.QuoteMeta(addr)), log)
			assert.Regexp(t, regexp.MustCompile(`(?m)^\d+:M .* \* GEARS: hello world$`), log)
			assert.Contains(t, log, "shutting down")
			_, err := net.DialTimeout("tcp", addr, time.Second)
			assert.Error(t, err, "nothing listens after exit")
		})
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
	assert.Equal(t, 2, c.run(nil))
	assert.Contains(t, stderr.String(), "usage: gears <command>")
	stderr.Reset()
	assert.Equal(t, 2, c.run([]string{"bogus"}))
	assert.Contains(t, stderr.String(), `unknown command "bogus"`)
	stderr.Reset()
	assert.Equal(t, 2, c.run([]string{"serve", "--nope"}))
	stderr.Reset()
	assert.Equal(t, 1, c.run([]string{"serve", "--redis", "http://x", "--addr", "127.0.0.1:0"}))
	assert.Contains(t, stderr.String(), "redis URL must look like")
}

// TestServeGCPercent: gears serve sets the collector's target to serveGCPercent, unless GOGC is set.
func TestServeGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Setenv("GOGC", "")
	require.True(t, tuneGC())
	require.Equal(t, serveGCPercent, debug.SetGCPercent(100))

	t.Setenv("GOGC", "150")
	require.False(t, tuneGC())
	require.Equal(t, 100, debug.SetGCPercent(100))
}
