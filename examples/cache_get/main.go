// Command cache_get demonstrates gears.CacheGet: a read-through cache that runs inside Redis and
// downloads each resource once, however many clients ask for it at the same time.
//
//	go run ./examples/cache_get                 # embedded gearstest server + a local image origin
//	go run ./examples/cache_get --shards 3      # the same on an embedded 3-shard gearstest Redis Cluster
//	go run ./examples/cache_get --addr 127.0.0.1:6379 --url https://example.com/a.png --url ...
//	go run ./examples/cache_get --addr 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002   # a Redis Cluster
//
// With no flags it starts an embedded RedisGears-compatible server (gearstest) and a local HTTP origin
// that serves generated PNG images with a realistic latency, then
//  1. fetches 8 images through cache_get twice and compares the miss and hit times;
//  2. sends --concurrency requests for one fresh image at once and shows the origin served it once;
//  3. prints the redis-cli command that any other language can send;
//  4. on a Redis Cluster, shows that each body is stored on the shard that owns its key.
//
// On a cluster (--shards N, or several --addr addresses) the client is a go-redis ClusterClient: the
// same gears.Command sends RG.TRIGGERONKEY cache_get <key> <url>, so that each URL's download and body
// live on the shard that owns its key, and the herd of part 2 still causes one download.

// --addr uses an existing RedisGears 1.2 server (or cluster: its nodes, comma-separated) instead; the local origin must then be reachable from
// that server (it listens on --origin, 127.0.0.1 by default). --url fetches real URLs in part 1.
// cache_get only downloads from the origin's and the --url hosts (gears.CacheAllowHosts): naming the
// origin's private address there is what lets cache_get reach it at all.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "cache_get:", err)
		os.Exit(1)
	}
}

// urlList is a repeatable --url flag.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }

func (u *urlList) Set(s string) error {
	*u = append(*u, s)
	return nil
}

// config is the example's command line.
type config struct {
	addr        string
	origin      string
	urls        urlList
	images      int
	concurrency int
	latency     time.Duration
	serverLog   bool
	shards      int
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("cache_get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "", "use the RedisGears 1.2 server at host:port (a Redis Cluster: host:port,host:port,...) instead of an embedded gearstest server")
	fs.IntVar(&c.shards, "shards", 0, "run the embedded gearstest server as a Redis Cluster of this many shards (0: a single server)")
	fs.StringVar(&c.origin, "origin", "127.0.0.1:0", "listen address of the local image origin (the server must reach it)")
	fs.Var(&c.urls, "url", "a real URL to fetch in part 1 instead of the local images (repeatable)")
	fs.IntVar(&c.images, "images", 8, "how many local images part 1 fetches")
	fs.IntVar(&c.concurrency, "concurrency", 100, "concurrent callers of one fresh URL in part 2")
	fs.DurationVar(&c.latency, "latency", 300*time.Millisecond, "latency of the local origin")
	fs.BoolVar(&c.serverLog, "log", false, "print the embedded server's log (cache_get's log() lines) to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.images < 1 || c.concurrency < 1 || c.latency < 0 {
		return c, errors.New("--images and --concurrency must be at least 1, --latency not negative")
	}
	if c.shards < 0 || c.shards > 64 {
		return c, errors.New("--shards must be between 0 (a single server) and 64")
	}
	if c.shards > 0 && c.addr != "" {
		return c, errors.New("--shards starts an embedded cluster; --addr names an existing server: give one of them")
	}
	return c, nil
}

// run is the whole demo; main only wires it to the process.
func run(ctx context.Context, args []string, out, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	origin, err := startOrigin(cfg.origin, cfg.latency)
	if err != nil {
		return err
	}
	defer origin.Close()
	fmt.Fprintf(out, "Origin: %s serves generated PNG images with %v latency.\n", origin.base, cfg.latency)

	addrs := strings.Split(cfg.addr, ",")
	logTo := io.Discard
	if cfg.serverLog {
		logTo = stderr
	}
	switch {
	case cfg.shards > 0:
		fmt.Fprintf(out, "Starting an embedded RedisGears-compatible Redis Cluster of %d shards (gearstest)...\n", cfg.shards)
		cl, err := gearstest.StartCluster(cfg.shards, gearstest.WithLogger(logTo))
		if err != nil {
			return err
		}
		defer cl.Close()
		addrs = cl.Addrs()
		fmt.Fprintf(out, "Cluster: %s (gearstest, embedded)\n", strings.Join(addrs, " "))
	case cfg.addr == "":
		fmt.Fprintf(out, "Starting an embedded RedisGears-compatible server (gearstest)...\n")
		srv, err := gearstest.Start(gearstest.WithLogger(logTo))
		if err != nil {
			return err
		}
		defer srv.Close()
		addrs = []string{srv.Addr()}
		fmt.Fprintf(out, "Server: %s (gearstest, embedded)\n", addrs[0])
	default:
		fmt.Fprintf(out, "Server: %s\n", strings.Join(addrs, " "))
	}
	addr := addrs[0]

	// One connection per concurrent caller, so part 2 really has that many requests in flight. Several
	// addresses make a ClusterClient.
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, PoolSize: cfg.concurrency + 4})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("server %s: %w", addr, err)
	}
	cc, cluster := rdb.(*redis.ClusterClient)

	// The whole client side of the cache: register once (on first call), then call like a function.
	// cache_get refuses private addresses such as the local origin's 127.0.0.1 unless told otherwise
	// (any client may name any URL): allow the origin, and the hosts of --url, by name.
	cache := gears.Command[[]byte]("cache_get", rdb, gears.NewCacheGet(gears.CacheAllowHosts(allowedHosts(origin.base, cfg.urls)...)))

	fmt.Fprintln(out, "Registering cache_get (RG.PYEXECUTE, once)...")
	start := time.Now()
	// Warm the registration with a URL that is refused before anything is fetched or stored, so that
	// registering is not counted in the first miss below.
	if _, err := cache(ctx, "registration-check"); err != nil && !strings.Contains(err.Error(), "cache_get: refused") {
		return fmt.Errorf("registering cache_get: %w", err)
	}
	fmt.Fprintf(out, "Registered in %v.\n\n", round(time.Since(start)))

	// Part 1: misses, then hits.
	urls := []string(cfg.urls)
	local := len(urls) == 0
	if local {
		batch := strconv.FormatInt(time.Now().UnixNano(), 36) // fresh URLs on every run: cold cache
		for i := 1; i <= cfg.images; i++ {
			urls = append(urls, origin.prepare(fmt.Sprintf("/images/%s/%d.png", batch, i)))
		}
	} else if err := forget(ctx, rdb, urls); err != nil {
		return err
	}
	fmt.Fprintf(out, "Part 1: fetching %d images through cache_get, twice.\n", len(urls))
	missTime, bodies, err := fetchAll(ctx, out, cache, urls, "miss")
	if err != nil {
		return err
	}
	hitTime, again, err := fetchAll(ctx, out, cache, urls, "hit ")
	if err != nil {
		return err
	}
	for i := range bodies {
		if !bytes.Equal(bodies[i], again[i]) {
			return fmt.Errorf("%s: the cached body differs from the downloaded one", urls[i])
		}
	}
	fmt.Fprintf(out, "Cache-miss time: %v\n", round(missTime))
	fmt.Fprintf(out, "Cache-hit time: %v\n", round(hitTime))
	fmt.Fprintf(out, "That is %.0f times faster!\n\n", float64(missTime)/float64(max(hitTime, time.Microsecond)))

	// Part 2: a thundering herd on one cold URL.
	herdURL := origin.prepare(fmt.Sprintf("/images/herd-%d.png", time.Now().UnixNano()))
	fmt.Fprintf(out, "Part 2: %d concurrent requests for one fresh image (%s).\n", cfg.concurrency, herdURL)
	warm(ctx, rdb, cfg.concurrency) // the herd's workers are already connected, as in a real fleet
	before := origin.Downloads(herdURL)
	slowest, err := herd(ctx, cache, herdURL, cfg.concurrency)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "The origin saw %d download(s) for %d concurrent requests.\n",
		origin.Downloads(herdURL)-before, cfg.concurrency)
	fmt.Fprintf(out, "Slowest caller: %v (origin latency %v, so %v on top).\n\n",
		round(slowest), cfg.latency, round(max(slowest-cfg.latency, 0)))

	// Part 3: any language.
	host, port, _ := net.SplitHostPort(addr)
	fmt.Fprintln(out, "Part 3: any client in any language calls the same function, with the same behaviour:")
	if cluster {
		fmt.Fprintf(out, "  redis-cli -c -h %s -p %s RG.TRIGGERONKEY cache_get %s %s\n", host, port, gears.CacheGetKey(urls[0]), urls[0])
		fmt.Fprintln(out, "  (the key, cache_get:{<hex SHA-1 of the URL>}, routes the call to the shard that owns it;")
		fmt.Fprintln(out, "  optional arguments after the URL: expiry in ms, 0 = none; timeout in ms)")
	} else {
		fmt.Fprintf(out, "  redis-cli -h %s -p %s RG.TRIGGER cache_get %s\n", host, port, urls[0])
		fmt.Fprintln(out, "  (optional arguments after the URL: expiry in ms, 0 = none; timeout in ms)")
	}
	if cluster {
		// Part 4: where the bodies are.
		fmt.Fprintln(out, "\nPart 4: each body is stored on the shard that owns its key:")
		if err := bodiesPerShard(ctx, out, cc, append(urls, herdURL)); err != nil {
			return err
		}
	}
	if cfg.addr == "" && cfg.shards == 0 {
		fmt.Fprintln(out, "  The embedded server stops with this program; for one that stays up:")
		fmt.Fprintln(out, "  go run ./cmd/gears serve --addr 127.0.0.1:6379, then this example with --addr 127.0.0.1:6379")
	}
	return nil
}

// allowedHosts is the host of every URL given, in order, without repeats.
func allowedHosts(base string, urls []string) []string {
	var hosts []string
	for _, raw := range append([]string{base}, urls...) {
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" || slices.Contains(hosts, u.Hostname()) {
			continue // cache_get refuses it with its own error
		}
		hosts = append(hosts, u.Hostname())
	}
	return hosts
}

// fetchAll gets every URL through cache, one after the other, and reports each.
func fetchAll(ctx context.Context, out io.Writer, cache gears.Func[[]byte], urls []string, what string) (time.Duration, [][]byte, error) {
	var total time.Duration
	bodies := make([][]byte, len(urls))
	for i, u := range urls {
		start := time.Now()
		body, err := cache(ctx, u)
		took := time.Since(start)
		if err != nil {
			return 0, nil, err
		}
		total += took
		bodies[i] = body
		fmt.Fprintf(out, "  %s [%d/%d] %7d bytes %10v  %s\n", what, i+1, len(urls), len(body), round(took), u)
	}
	return total, bodies, nil
}

// herd calls cache for url from n goroutines at once and returns the slowest caller's time.
func herd(ctx context.Context, cache gears.Func[[]byte], url string, n int) (time.Duration, error) {
	var (
		wg      sync.WaitGroup
		ready   sync.WaitGroup
		gate    = make(chan struct{})
		mu      sync.Mutex
		slowest time.Duration
		first   []byte
		errs    []error
	)
	ready.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-gate
			start := time.Now()
			body, err := cache(ctx, url)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case first == nil:
				first = body
			case !bytes.Equal(first, body):
				errs = append(errs, errors.New("callers got different bodies"))
			}
			slowest = max(slowest, took)
		}()
	}
	ready.Wait()
	close(gate)
	wg.Wait()
	if len(errs) > 0 {
		return 0, fmt.Errorf("%d of %d callers failed, first: %w", len(errs), n, errs[0])
	}
	return slowest, nil
}

// bodiesPerShard prints, for every master of the cluster, how many of urls' bodies it holds, and checks
// that each body is on the master that owns its key.
func bodiesPerShard(ctx context.Context, out io.Writer, cc *redis.ClusterClient, urls []string) error {
	var mu sync.Mutex
	held := map[string]int{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n := 0
		for _, u := range urls {
			k, err := node.Exists(ctx, gears.CacheGetKey(u)).Result()
			if err != nil && !strings.HasPrefix(err.Error(), "MOVED ") {
				return err
			}
			n += int(k)
		}
		mu.Lock()
		held[node.Options().Addr] = n
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	total := 0
	for _, u := range urls {
		owner, err := cc.MasterForKey(ctx, gears.CacheGetKey(u))
		if err != nil {
			return err
		}
		if n, err := owner.Exists(ctx, gears.CacheGetKey(u)).Result(); err != nil || n != 1 {
			return fmt.Errorf("%s: its body is not on %s, the shard that owns its key (%v)", u, owner.Options().Addr, err)
		}
		total++
	}
	addrs := make([]string, 0, len(held))
	for a := range held {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		fmt.Fprintf(out, "  %s holds %d bodies\n", a, held[a])
	}
	fmt.Fprintf(out, "  %d bodies, each on the shard that owns its key.\n", total)
	return nil
}

// warm opens n connections, so that part 2 measures cache_get rather than TCP and HELLO handshakes.
func warm(ctx context.Context, rdb redis.UniversalClient, n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = rdb.Ping(ctx).Err()
		}()
	}
	wg.Wait()
}

// forget deletes the cached copies of urls so that part 1 starts cold on a server that has seen them.
func forget(ctx context.Context, rdb redis.UniversalClient, urls []string) error {
	for _, u := range urls {
		if err := rdb.Del(ctx, gears.CacheGetKey(u)).Err(); err != nil {
			return err
		}
	}
	return nil
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// origin is a local HTTP server of generated PNG images that counts its downloads.
type origin struct {
	base    string
	latency time.Duration
	srv     *http.Server
	done    chan struct{}

	mu     sync.Mutex
	counts map[string]int    // path -> downloads
	images map[string][]byte // path -> generated PNG
	total  atomic.Int64
}

func startOrigin(listen string, latency time.Duration) (*origin, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	o := &origin{
		base:    "http://" + ln.Addr().String(),
		latency: latency,
		done:    make(chan struct{}),
		counts:  map[string]int{},
		images:  map[string][]byte{},
	}
	o.srv = &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(o.done)
		_ = o.srv.Serve(ln)
	}()
	return o, nil
}

// Close stops the origin and waits for its server goroutine.
func (o *origin) Close() {
	_ = o.srv.Close()
	<-o.done
}

// prepare generates the image at path ahead of its first request, so that the origin's answer takes
// its latency and nothing else, and returns its URL.
func (o *origin) prepare(path string) string {
	img := generatePNG(path)
	o.mu.Lock()
	o.images[path] = img
	o.mu.Unlock()
	return o.base + path
}

// Downloads is how many times the origin served the path of url.
func (o *origin) Downloads(url string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[strings.TrimPrefix(url, o.base)]
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/images/") || !strings.HasSuffix(r.URL.Path, ".png") {
		http.NotFound(w, r)
		return
	}
	o.total.Add(1)
	o.mu.Lock()
	o.counts[r.URL.Path]++
	img, ok := o.images[r.URL.Path]
	if !ok {
		img = generatePNG(r.URL.Path)
		o.images[r.URL.Path] = img
	}
	o.mu.Unlock()
	select {
	case <-time.After(o.latency):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}

// generatePNG draws a 256x256 image that is different for every name: a gradient with a little noise, so
// that it weighs what a thumbnail does (tens of kilobytes) rather than compressing to nothing.
func generatePNG(name string) []byte {
	sum := sha1.Sum([]byte(name))
	rng := rand.New(rand.NewSource(int64(sum[0]) | int64(sum[1])<<8 | int64(sum[2])<<16))
	img := image.NewNRGBA(image.Rect(0, 0, 256, 256))
	for y := 0; y < 256; y++ {
		for x := 0; x < 256; x++ {
			n := uint8(rng.Intn(6))
			img.Set(x, y, color.NRGBA{R: uint8(x) ^ sum[3] + n, G: uint8(y) ^ sum[4] + n, B: sum[5] + n, A: 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}
