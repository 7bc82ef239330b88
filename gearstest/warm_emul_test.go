//go:build unix

package gearstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Emulator-only tests of the warm pool (warm.go): a server started from a spare owns its worker alone,
// the spare is replaced, Close kills the worker, a spare nobody takes goes away with its process.

func warmPython(t *testing.T) string {
	t.Helper()
	if os.Getenv("GEARS_WARM") == "0" {
		t.Skip("GEARS_WARM=0: Start takes no spare")
	}
	py, err := exec.LookPath(defaultPython())
	if err != nil {
		t.Skip(err)
	}
	return py
}

func warmSpare(t *testing.T, py string) int {
	t.Helper()
	pid, err := waitWarmSpare(py, time.Minute)
	require.NoError(t, err)
	return pid
}

func workerPid(s *Server) int {
	wk := s.currentWorker()
	if wk == nil {
		return 0
	}
	return wk.cmd.Process.Pid
}

// processGone reports whether no process pid exists (Close reaps its worker, so it is not a zombie).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// runOne runs script with RG.PYEXECUTE and returns its reply, formatted.
func runOne(t *testing.T, s *Server, script string) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2, MaxRetries: -1})
	defer rdb.Close()
	v, err := rdb.Do(context.Background(), "RG.PYEXECUTE", script).Result()
	require.NoError(t, err)
	return fmt.Sprint(v)
}

// TestWarmServersShareNothing: two servers started one after the other from the warm pool run in two
// processes (the spares' pids), and what a script leaves in one interpreter (a builtins attribute, a
// module in sys.modules: both visible to every later session of that server) is not in the other.
func TestWarmServersShareNothing(t *testing.T) {
	py := warmPython(t)
	pid1 := warmSpare(t, py)
	s1 := Run(t)
	require.Equal(t, pid1, workerPid(s1), "the first server took the warm spare")
	pid2 := warmSpare(t, py)
	s2 := Run(t)
	require.Equal(t, pid2, workerPid(s2), "the second server took the next spare")
	require.NotEqual(t, pid1, pid2)

	require.Equal(t, "[[set] []]", runOne(t, s1, `
import builtins, sys, types
builtins.h10_marker = 'server one'
sys.modules['h10_module'] = types.ModuleType('h10_module')
GB('ShardsIDReader').map(lambda x: 'set').run()`))
	probe := `
import builtins, os, sys
GB('ShardsIDReader').map(lambda x: '%s %s %d' % (getattr(builtins, 'h10_marker', None), 'h10_module' in sys.modules, os.getpid())).run()`
	require.Equal(t, fmt.Sprintf("[[server one True %d] []]", pid1), runOne(t, s1, probe), "a later session of the same server sees them")
	require.Equal(t, fmt.Sprintf("[[None False %d] []]", pid2), runOne(t, s2, probe), "the other server does not")
}

// TestWarmSpareReplacedAfterTaken: Start takes the spare, and a new one (another process) is started
// for the next Start; the taken one serves the server.
func TestWarmSpareReplacedAfterTaken(t *testing.T) {
	py := warmPython(t)
	pid1 := warmSpare(t, py)
	s := Run(t)
	require.Equal(t, pid1, workerPid(s))
	warm.mu.Lock()
	asked := warm.filling[py] || warm.spares[py] != nil
	warm.mu.Unlock()
	require.True(t, asked, "Start asked for a new spare")
	pid2 := warmSpare(t, py)
	require.NotEqual(t, pid1, pid2, "a new spare")
	require.False(t, processGone(pid2))
	require.Equal(t, "[[1] []]", runOne(t, s, "GB('ShardsIDReader').count().run()"))
}

// TestWarmCloseKillsWorker: Close of a server started from a spare stops its worker process (reaped)
// and removes the spare's directory, which the server adopted.
func TestWarmCloseKillsWorker(t *testing.T) {
	py := warmPython(t)
	pid := warmSpare(t, py)
	s, err := Start(WithLogger(nil))
	require.NoError(t, err)
	require.Equal(t, pid, workerPid(s))
	dir := s.tmp
	require.DirExists(t, dir+"/worker")
	require.Equal(t, "[[1] []]", runOne(t, s, "GB('ShardsIDReader').count().run()"))
	require.False(t, processGone(pid))
	watchdog := time.AfterFunc(time.Minute, func() { panic("gearstest: Close did not return") })
	require.NoError(t, s.Close())
	watchdog.Stop()
	require.True(t, processGone(pid), "the worker process is gone after Close")
	require.NoDirExists(t, dir)
}

// TestWarmRestartRestoresSessions: a worker that came from the pool is restarted after KillWorker (a
// cold one, in the same directory) with the registrations restored.
func TestWarmRestartRestoresSessions(t *testing.T) {
	py := warmPython(t)
	pid := warmSpare(t, py)
	s := Run(t)
	require.Equal(t, pid, workerPid(s))
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2, MaxRetries: -1})
	defer rdb.Close()
	ctx := context.Background()
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'pong').register(trigger='h10')", "ID", "h10").Val())
	require.NoError(t, s.KillWorker())
	// The restart is observed through the trigger: it answers again once the session is restored.
	var got []any
	waitUntil(t, time.Minute, "the trigger to answer after the restart", func() bool {
		v, err := rdb.Do(ctx, "RG.TRIGGER", "h10").Slice()
		got = v
		return err == nil
	})
	require.Equal(t, []any{"pong"}, got)
	require.NotEqual(t, pid, workerPid(s))
	require.True(t, processGone(pid))
}

// TestWarmSpareNotUsedForAnotherEnvironment: a spare started before the environment changed (here
// GEARS_NEST_MAX, which the worker reads at start) is killed instead of used.
func TestWarmSpareNotUsedForAnotherEnvironment(t *testing.T) {
	py := warmPython(t)
	pid := warmSpare(t, py)
	t.Setenv("GEARS_NEST_MAX", "3")
	s := Run(t)
	require.NotEqual(t, pid, workerPid(s))
	require.True(t, processGone(pid), "the stale spare was killed")
	require.Equal(t, "[[3] []]", runOne(t, s, "import os\nGB('ShardsIDReader').map(lambda x: os.environ['GEARS_NEST_MAX']).run()"))
}

// TestWarmDisabled: WithoutWarmWorker and GEARS_WARM=0 start a worker of the server's own and leave
// the spare in the pool.
func TestWarmDisabled(t *testing.T) {
	py := warmPython(t)
	pid := warmSpare(t, py)
	s := Run(t, WithoutWarmWorker())
	require.NotEqual(t, pid, workerPid(s))
	t.Setenv("GEARS_WARM", "0")
	s2 := Run(t)
	require.NotEqual(t, pid, workerPid(s2))
	warm.mu.Lock()
	sp := warm.spares[py]
	warm.mu.Unlock()
	require.NotNil(t, sp)
	require.Equal(t, pid, sp.cmd.Process.Pid, "the spare is still there")
}

// TestSpareExitsWhenItsStdinEnds: a spare whose stdin ends before any server took it (what happens
// when the Go process exits, however it exits) exits and removes its directory.
func TestSpareExitsWhenItsStdinEnds(t *testing.T) {
	py := warmPython(t)
	sp, err := startSpare(py)
	require.NoError(t, err)
	require.NoError(t, sp.waitReady())
	require.DirExists(t, sp.tmp+"/worker")
	require.NoError(t, sp.stdin.Close())
	require.NoError(t, sp.cmd.Wait(), "it exits with status 0")
	_, err = os.Stat(sp.tmp)
	require.True(t, os.IsNotExist(err), "its directory is gone: %v", err)
}

// TestWarmDeadSpareFallsBackToCold: a spare that died while it waited in the pool (killed here) is
// noticed by Start, which starts a worker of its own instead and works.
func TestWarmDeadSpareFallsBackToCold(t *testing.T) {
	py := warmPython(t)
	pid := warmSpare(t, py)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	logs := &syncBuffer{}
	s := Run(t, WithLogger(logs))
	require.NotEqual(t, pid, workerPid(s))
	require.Equal(t, "[[1] []]", runOne(t, s, "GB('ShardsIDReader').count().run()"))
	require.Contains(t, logs.String(), "the warm python worker failed")
}
