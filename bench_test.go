package gears_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/internal/testtarget"
)

// BenchmarkTrigger compares a Func[T] call with a raw rdb.Do of the same RG.TRIGGER on the same server
// in the same run; the difference is the library's overhead (target: at most 3%).
//
//	go test -run '^$' -bench BenchmarkTrigger -count 5 . | benchstat -
func BenchmarkTrigger(b *testing.B) {
	addr := testtarget.Addr(b)
	e := newEnv(b, addr, 3)
	trig := e.name("bench")
	script := gears.Script{Function: "echo", Source: "def echo(x):\n    return x\n"}
	call := gears.Command[[]byte](trig, e.rdb, script, gears.WithMode(gears.Sync))
	ctx := context.Background()
	if _, err := call(ctx, "warm-up"); err != nil { // registers
		b.Fatal(err)
	}

	b.Run("raw-Do", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			v, err := e.rdb.Do(ctx, "RG.TRIGGER", trig, "payload").Result()
			if err != nil {
				b.Fatal(err)
			}
			if s := v.([]any)[0].(string); s != "payload" {
				b.Fatal(s)
			}
		}
	})
	b.Run("Func", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			v, err := call(ctx, "payload")
			if err != nil {
				b.Fatal(err)
			}
			if string(v) != "payload" {
				b.Fatal(string(v))
			}
		}
	})
	// Both calls alternately in one loop, so that drift in server speed hits both alike; the overhead-%
	// metric is the figure the README reports.
	b.Run("interleaved", func(b *testing.B) {
		var rawT, funcT time.Duration
		for i := 0; i < b.N; i++ {
			for j := 0; j < 2; j++ {
				t0 := time.Now()
				if (i+j)%2 == 0 {
					if err := e.rdb.Do(ctx, "RG.TRIGGER", trig, "payload").Err(); err != nil {
						b.Fatal(err)
					}
					rawT += time.Since(t0)
				} else {
					if _, err := call(ctx, "payload"); err != nil {
						b.Fatal(err)
					}
					funcT += time.Since(t0)
				}
			}
		}
		b.ReportMetric(float64(rawT.Nanoseconds())/float64(b.N), "raw-ns/call")
		b.ReportMetric(float64(funcT.Nanoseconds())/float64(b.N), "func-ns/call")
		b.ReportMetric(100*(float64(funcT)-float64(rawT))/float64(rawT), "overhead-%")
	})
	b.Run("raw-Do-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.rdb.Do(ctx, "RG.TRIGGER", trig, "payload").Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Func-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := call(ctx, "payload"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRegistration measures the first call of a new Command — the registration — for one caller
// and for 12 callers racing with their own clients and Funcs (as 12 processes would: one registers under
// the registration lock, the others wait for it and find its code). Each iteration uses a new trigger.
//
//	go test -run '^$' -bench BenchmarkRegistration -benchtime 20x .
func BenchmarkRegistration(b *testing.B) {
	addr := testtarget.Addr(b)
	for _, racers := range []int{1, 12} {
		b.Run(fmt.Sprintf("racers=%d", racers), func(b *testing.B) {
			e := newEnv(b, addr, 3)
			clients := make([]*redis.Client, racers)
			for i := range clients {
				clients[i] = newRedis(addr, 3)
				defer clients[i].Close()
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				trig := e.name(fmt.Sprintf("reg%d", i))
				errs := make(chan error, racers)
				for _, rdb := range clients {
					call := gears.Command[string](trig, rdb, versionedScript("v1"), gears.WithMode(gears.Sync))
					go func() {
						_, err := call(ctx, "a")
						errs <- err
					}()
				}
				for range clients {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
