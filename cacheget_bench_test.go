package gears_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// BenchmarkCacheGetHit compares a hit through cache_get with a plain GET of the same bytes on the same
// server, with cache_get registered in the default async mode and in sync mode. The "ratio" sub-benchmark
// interleaves the three and reports hit/GET and sync-hit/GET (target: at most 3).
func BenchmarkCacheGetHit(b *testing.B) {
	ctx := context.Background()
	e := cgStart(b)
	o := cgNewOrigin(b)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1024) // a 16 KiB thumbnail
	o.set(func(o *cgOrigin) { o.body = body })
	url := o.URL + "/thumb.png"
	got, err := e.cache(ctx, url)
	require.NoError(b, err)
	require.Equal(b, body, got)
	key := e.key(url)

	b.Run("cache_get", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := e.cache(ctx, url); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same function registered in sync mode: a hit runs inline, a miss still waits on a future.
	syncCache := gears.Command[[]byte](e.trigger+"_sync", e.rdb, gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(e.prefix)), gears.WithMode(gears.Sync))
	b.Run("cache_get-sync", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := syncCache(ctx, url); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GET", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := e.rdb.Get(ctx, key).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ratio", func(b *testing.B) {
		var hit, hitSync, get time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, err := e.cache(ctx, url); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := syncCache(ctx, url); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			if _, err := e.rdb.Get(ctx, key).Bytes(); err != nil {
				b.Fatal(err)
			}
			hit += t1.Sub(t0)
			hitSync += t2.Sub(t1)
			get += time.Since(t2)
		}
		b.ReportMetric(float64(hit)/float64(get), "hit/GET")
		b.ReportMetric(float64(hitSync)/float64(get), "sync-hit/GET")
		b.ReportMetric(float64(get.Microseconds())/float64(b.N), "GET-µs")
	})
	require.Equal(b, 1, o.requests("/thumb.png"), "every call after the first must be a hit")
}

// BenchmarkCacheGetColdHerd sends 100 concurrent callers at one cold URL per iteration and reports the
// slowest caller's time against the origin latency (target: at most origin + 20 ms), and the downloads
// the origin saw per iteration (must be 1).
func BenchmarkCacheGetColdHerd(b *testing.B) {
	const callers = 100
	const latency = 100 * time.Millisecond
	ctx := context.Background()
	e := cgStart(b)
	o := cgNewOrigin(b)
	o.set(func(o *cgOrigin) {
		o.latency = latency
		o.body = bytes.Repeat([]byte("0123456789abcdef"), 1024) // every caller gets a 16 KiB thumbnail
	})
	// Open every connection first: the herd's workers are already connected.
	var warm sync.WaitGroup
	for i := 0; i < callers; i++ {
		warm.Add(1)
		go func() {
			defer warm.Done()
			_ = e.rdb.Ping(ctx).Err()
		}()
	}
	warm.Wait()

	var slowest, total time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		url := fmt.Sprintf("%s/herd/%d.png", o.URL, n)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			worst time.Duration
			fail  error
		)
		gate := make(chan struct{})
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				start := time.Now()
				_, err := e.cache(ctx, url)
				took := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				worst = max(worst, took)
				if err != nil && fail == nil {
					fail = err
				}
			}()
		}
		close(gate)
		wg.Wait()
		if fail != nil {
			b.Fatal(fail)
		}
		slowest = max(slowest, worst)
		total += worst
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "slowest-ms")
	b.ReportMetric(float64((total/time.Duration(b.N)-latency).Microseconds())/1000, "over-origin-ms")
	b.ReportMetric(float64(o.total())/float64(b.N), "downloads/op")
}
