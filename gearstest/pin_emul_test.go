//go:build linux

package gearstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// threadCPUs is the Cpus_allowed_list of thread tid of this process.
func threadCPUs(t *testing.T, tid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			var out []int
			for _, part := range strings.Split(strings.TrimSpace(v), ",") {
				lo, hi, _ := strings.Cut(part, "-")
				a, err := strconv.Atoi(lo)
				require.NoError(t, err)
				b := a
				if hi != "" {
					b, err = strconv.Atoi(hi)
					require.NoError(t, err)
				}
				for c := a; c <= b; c++ {
					out = append(out, c)
				}
			}
			return out
		}
	}
	t.Fatalf("no Cpus_allowed_list for thread %d", tid)
	return nil
}

// TestSyncLanePinsTheReaderThread (pin_linux.go): while a sync round runs, readLoop's thread runs on
// the lane's CPU alone; once rounds stopped, it gets its own mask back.
func TestSyncLanePinsTheReaderThread(t *testing.T) {
	var all cpuMask
	require.NoError(t, getAffinity(0, &all))
	if len(all.cpus()) < 2 || !pinEnabled {
		t.Skip("pinning is off: one allowed CPU, or GEARS_PIN=0")
	}
	srv := Run(t)
	rdb := newRDB(t, srv.Addr(), 2)
	ctx := ctxT(t)
	gate := filepath.Join(t.TempDir(), "gate")
	script := fmt.Sprintf("import os, time\n"+
		"def wait(x):\n"+
		"    while not os.path.exists(%q):\n"+
		"        time.sleep(0.001)\n"+
		"    return 'ok'\n"+
		"GB('CommandReader').map(wait).register(trigger='gate', mode='sync')", gate)
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE", script).Val())
	wk := srv.currentWorker()
	require.NotNil(t, wk)
	require.GreaterOrEqual(t, wk.pin.cpu, 0)
	tid := int(wk.pin.tid.Load())
	require.NotZero(t, tid)
	own := threadCPUs(t, tid)
	require.Equal(t, all.cpus(), own)

	reply := make(chan any, 1)
	go func() { reply <- rdb.Do(ctx, "RG.TRIGGER", "gate").Val() }()
	waitUntil(t, time.Minute, "readLoop's thread pinned to the lane's CPU", func() bool {
		cpus := threadCPUs(t, tid)
		return len(cpus) == 1 && cpus[0] == wk.pin.cpu
	})
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	require.Equal(t, []any{"ok"}, <-reply)
	waitUntil(t, time.Minute, "readLoop's thread back on its own CPUs", func() bool {
		return fmt.Sprint(threadCPUs(t, tid)) == fmt.Sprint(own)
	})
}

// TestPickPairCPU: a CPU of the allowed set chosen by the worker's pid, -1 when pinning is off.
func TestPickPairCPU(t *testing.T) {
	var all cpuMask
	require.NoError(t, getAffinity(0, &all))
	cpus := all.cpus()
	if len(cpus) < 2 {
		require.Equal(t, -1, pickPairCPU(1234))
		return
	}
	prev := pinEnabled
	t.Cleanup(func() { pinEnabled = prev })
	pinEnabled = true
	for pid := 1; pid < 2*len(cpus); pid++ {
		require.Equal(t, cpus[pid%len(cpus)], pickPairCPU(pid))
	}
	pinEnabled = false
	require.Equal(t, -1, pickPairCPU(1234))
}
