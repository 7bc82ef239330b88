package gearstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkStart times a fresh Start until its first `RG.PYEXECUTE "GB('ShardsIDReader').count().run()"`
// reply (dial included), cold (WithoutWarmWorker: the worker starts with the server) and warm (the
// process' spare, warm.go), in one run. Close and the wait for the next spare to be warm are outside
// the timer: a test suite starts its next server while the previous test runs. Each reports ms/op,
// its median (ms_median) and the warm one its median's ratio to the cold one (ratio_to_cold).
//
//	go test -run XXX -bench Start -benchtime 20x ./gearstest
func BenchmarkStart(b *testing.B) {
	py, err := exec.LookPath(defaultPython())
	if err != nil {
		b.Skip(err)
	}
	var coldMedian float64
	for _, kind := range []string{"cold", "warm"} {
		b.Run(kind, func(b *testing.B) {
			if kind == "warm" && os.Getenv("GEARS_WARM") == "0" {
				b.Skip("GEARS_WARM=0: Start takes no spare")
			}
			var opts []Option
			if kind == "cold" {
				opts = append(opts, WithoutWarmWorker())
			}
			opts = append(opts, WithLogger(nil))
			times := make([]float64, 0, b.N)
			b.ResetTimer()
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				if kind == "warm" {
					if _, err := waitWarmSpare(py, time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				t0 := time.Now()
				b.StartTimer()
				s, err := Start(opts...)
				if err != nil {
					b.Fatal(err)
				}
				reply, err := firstRun(s.Addr())
				b.StopTimer()
				times = append(times, float64(time.Since(t0))/float64(time.Millisecond))
				_ = s.Close()
				if err != nil {
					b.Fatal(err)
				}
				if reply != "[[1] []]" {
					b.Fatalf("run() replied %s", reply)
				}
			}
			slices.Sort(times)
			median := times[len(times)/2]
			b.ReportMetric(median, "ms_median")
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
			if kind == "cold" {
				coldMedian = median
			} else if coldMedian > 0 {
				b.ReportMetric(median/coldMedian, "ratio_to_cold")
			}
		})
	}
}

// firstRun connects to addr and returns the reply of the benchmark's run(), formatted.
func firstRun(addr string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 1, MaxRetries: -1})
	defer rdb.Close()
	v, err := rdb.Do(context.Background(), "RG.PYEXECUTE", "GB('ShardsIDReader').count().run()").Result()
	if err != nil {
		return "", err
	}
	return fmt.Sprint(v), nil
}

// defaultPython is the interpreter Start uses without WithPython.
func defaultPython() string {
	if p := os.Getenv("GEARS_PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// waitWarmSpare waits until the warm pool holds a spare for interpreter py (a resolved path) that is
// warm (its `ready` frame was read) and started with the current environment, and returns its pid.
// It asks for one when none is starting.
func waitWarmSpare(py string, timeout time.Duration) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		warm.mu.Lock()
		if sp := warm.spares[py]; sp != nil && sp.key != warmKey(py, os.Environ()) {
			// Started before a test changed the environment: Start would not use it.
			delete(warm.spares, py)
			warm.mu.Unlock()
			sp.discard()
			continue
		}
		if sp := warm.spares[py]; sp != nil {
			err := sp.waitReady()
			warm.mu.Unlock()
			return sp.cmd.Process.Pid, err
		}
		if warm.changed == nil {
			warm.changed = make(chan struct{})
		}
		changed := warm.changed
		warm.mu.Unlock()
		refillSpare(py)
		select {
		case <-changed:
		case <-deadline.C:
			return 0, fmt.Errorf("no warm spare for %s after %v", py, timeout)
		}
	}
}
