package gearstest_test

// Write throughput with and without a sync KeysReader registration on the written keys (issue 9): SET
// of keys under a prefix, 1 and 20 clients, first with no registration, then with a sync registration
// whose function does one execute('INCR', counter). The "with" sub-benchmark reports its ops/s and its
// ratio to the "without" one that ran just before it. Set GEARS_ADDR to measure a real RedisGears.

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

func BenchmarkWriteWithSyncKeysReader(b *testing.B) {
	addr := targetAddr(b)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	b.Cleanup(func() { _ = admin.Close() })
	p, counter := uniq(b, "w")+":", uniq(b, "n")
	var seq atomic.Int64
	b.Cleanup(func() {
		admin.Del(context.Background(), counter)
		for i := int64(0); i < seq.Load(); i += 1000 {
			keys := make([]string, 0, 1000)
			for j := i; j < i+1000 && j < seq.Load(); j++ {
				keys = append(keys, p+strconv.FormatInt(j, 10))
			}
			admin.Del(context.Background(), keys...)
		}
	})
	sid := uniq(b, "s")
	for _, clients := range []int{1, 20} {
		rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: clients, MinIdleConns: clients})
		b.Cleanup(func() { _ = rdb.Close() })
		set := func() error {
			return rdb.Set(ctx, p+strconv.FormatInt(seq.Add(1)-1, 10), "v", 0).Err()
		}
		unregisterSession(ctx, admin, sid)
		var without float64
		b.Run(fmt.Sprintf("clients=%d/without", clients), func(b *testing.B) {
			without = benchCalls(b, clients, set)
		})
		script := fmt.Sprintf("GB().foreach(lambda r: execute('INCR', %s)).register(prefix=%s, mode='sync')", pyQuote(counter), pyQuote(p+"*"))
		if err := admin.Do(ctx, "RG.PYEXECUTE", script, "ID", sid).Err(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unregisterSession(context.Background(), admin, sid) })
		b.Run(fmt.Sprintf("clients=%d/with-sync", clients), func(b *testing.B) {
			with := benchCalls(b, clients, set)
			if without > 0 {
				b.ReportMetric(with/without, "ratio")
			}
		})
	}
}
