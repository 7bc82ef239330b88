package gearstest_test

// Benchmarks of issue 2: RG.TRIGGER of a function doing one execute('GET', k) against a plain GET k on
// the same server in the same run, with 1 and 50 clients, for the sync, async and async_local modes.
// Each trigger sub-benchmark reports its ops/s and its ratio to the GET sub-benchmark that ran just
// before it. Set GEARS_ADDR to measure a real RedisGears the same way. Nothing here asserts on time.

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// benchValue is what the benchmarked key holds and what every call must return.
const benchValue = "bench-value"

func BenchmarkTriggerVsGet(b *testing.B) {
	addr := targetAddr(b)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	b.Cleanup(func() { _ = admin.Close() })
	key := uniq(b, "k")
	if err := admin.Set(ctx, key, benchValue, 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Del(context.Background(), key) })

	modes := []string{"sync", "async", "async_local"}
	triggers := map[string]string{}
	for _, mode := range modes {
		trig := uniq(b, mode)
		sid := uniq(b, "s"+mode)
		script := fmt.Sprintf("GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger=%s, mode=%s)", pyQuote(trig), pyQuote(mode))
		if err := admin.Do(ctx, "RG.PYEXECUTE", script, "ID", sid).Err(); err != nil {
			b.Fatalf("registering %s: %v", mode, err)
		}
		b.Cleanup(func() { unregisterSession(context.Background(), admin, sid) })
		triggers[mode] = trig
	}

	for _, clients := range []int{1, 50} {
		rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: clients, MinIdleConns: clients})
		b.Cleanup(func() { _ = rdb.Close() })
		var getOps float64
		b.Run(fmt.Sprintf("clients=%d/GET", clients), func(b *testing.B) {
			getOps = benchCalls(b, clients, func() error {
				v, err := rdb.Get(ctx, key).Result()
				if err == nil && v != benchValue {
					err = fmt.Errorf("GET replied %q", v)
				}
				return err
			})
		})
		for _, mode := range modes {
			trig := triggers[mode]
			b.Run(fmt.Sprintf("clients=%d/TRIGGER-%s", clients, mode), func(b *testing.B) {
				ops := benchCalls(b, clients, func() error {
					v, err := rdb.Do(ctx, "RG.TRIGGER", trig, key).Slice()
					if err == nil && (len(v) != 1 || v[0] != benchValue) {
						err = fmt.Errorf("RG.TRIGGER replied %#v", v)
					}
					return err
				})
				if getOps > 0 {
					b.ReportMetric(ops/getOps, "ratio_to_GET")
				}
			})
		}
	}
}

// benchCalls runs call b.N times from the given number of concurrent clients and reports ops/s.
func benchCalls(b *testing.B, clients int, call func() error) float64 {
	b.Helper()
	var failed atomic.Value
	b.ResetTimer()
	if clients == 1 {
		for i := 0; i < b.N; i++ {
			if err := call(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// RunParallel starts parallelism × GOMAXPROCS goroutines: round up to at least `clients`.
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((clients + procs - 1) / procs)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	ops := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(ops, "ops/s")
	return ops
}
