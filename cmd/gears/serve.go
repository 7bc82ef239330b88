package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gearsgo/gears/gearstest"
)

func (c *cli) serve(args []string) int {
	fs := c.flags("serve", "[--addr 127.0.0.1:6379] [--shards N] [--redis redis://HOST:PORT] [--python PATH] [--no-py37-check]",
		"Runs a RedisGears 1.2 compatible server (gearstest: a RESP front and a CPython worker) until SIGINT or\n"+
			"SIGTERM. Hazards (actions that crash or hang a real RedisGears 1.2.13) are refused and logged.",
		"gears serve --addr 127.0.0.1:6379\ngears serve --addr :6380 --redis redis://127.0.0.1:6379\n"+
			"gears serve --shards 3 --addr 127.0.0.1:7000   # a Redis Cluster on ports 7000, 7001, 7002")
	addr := fs.String("addr", "127.0.0.1:6379", "address to listen on")
	redisURL := fs.String("redis", "", "external Redis for the data (redis://HOST:PORT); default: in-process")
	python := fs.String("python", "", "Python interpreter for the worker (default $GEARS_PYTHON, else python3)")
	no37 := fs.Bool("no-py37-check", false, "accept scripts that are not valid Python 3.7 syntax")
	shards := fs.Int("shards", 0, "run a Redis Cluster of N shards on ports PORT..PORT+N-1 of --addr (0: stand-alone)")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	// A long-lived process starts its servers once: a warm spare worker would only idle beside them.
	opts := []gearstest.Option{gearstest.WithAddr(*addr), gearstest.WithLogger(c.stderr), gearstest.WithoutWarmWorker()}
	if *redisURL != "" {
		opts = append(opts, gearstest.WithRedis(*redisURL))
	}
	if *python != "" {
		opts = append(opts, gearstest.WithPython(*python))
	}
	if *no37 {
		opts = append(opts, gearstest.WithoutPython37Check())
	}
	tuneGC()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if *shards != 0 {
		return c.serveCluster(*shards, opts, sigs)
	}
	srv, err := gearstest.Start(opts...)
	if err != nil {
		fmt.Fprintf(c.stderr, "gears serve: %v\n", err)
		return 1
	}
	sig := <-sigs
	fmt.Fprintf(c.stderr, "gears serve: received %v, shutting down\n", sig)
	// Each hazard (an action that crashes or hangs a real RedisGears 1.2.13) was logged when it
	// happened and is counted in INFO gearstest; the total once more at the end.
	if n := len(srv.Hazards()); n > 0 {
		fmt.Fprintf(c.stderr, "gears serve: %d hazard(s) were refused; each would crash or hang a real RedisGears 1.2.13 (see the log)\n", n)
	}
	if err := srv.Close(); err != nil {
		fmt.Fprintf(c.stderr, "gears serve: %v\n", err)
		return 1
	}
	return 0
}

// serveCluster runs a gearstest cluster of n shards until a signal arrives.
func (c *cli) serveCluster(n int, opts []gearstest.Option, sigs <-chan os.Signal) int {
	cl, err := gearstest.StartCluster(n, opts...)
	if err != nil {
		fmt.Fprintf(c.stderr, "gears serve: %v\n", err)
		return 1
	}
	fmt.Fprintf(c.stderr, "gears serve: cluster of %d shards on %s\n", n, strings.Join(cl.Addrs(), " "))
	sig := <-sigs
	fmt.Fprintf(c.stderr, "gears serve: received %v, shutting down\n", sig)
	hazards := 0
	for _, s := range cl.Shards() {
		hazards += len(s.Hazards())
	}
	if hazards > 0 {
		fmt.Fprintf(c.stderr, "gears serve: %d hazard(s) were refused; each would crash or hang a real RedisGears 1.2.13 (see the log)\n", hazards)
	}
	if err := cl.Close(); err != nil {
		fmt.Fprintf(c.stderr, "gears serve: %v\n", err)
		return 1
	}
	return 0
}

// serveGCPercent is the garbage collector's target for `gears serve` when GOGC is not set. The
// server's live heap is small (a few MB: the data and the sessions) and every command allocates a
// little, so with Go's default (100) it collected ~20 times a second under redis-benchmark, and
// the collector's share of the CPU came off the 2 cores the server, its worker and the clients
// share: GOGC=400 measured 5-10% more RG.TRIGGERs/s with 50 clients (issue 11). The heap may grow
// to about five times the live data instead of twice. GOGC in the environment wins.
const serveGCPercent = 400

// tuneGC applies serveGCPercent unless GOGC is set; it reports whether it did.
func tuneGC() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(serveGCPercent)
	return true
}
