package gears_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
	"github.com/gearsgo/gears/internal/testtarget"
)

// The cache_get suite runs against gearstest by default and against the RedisGears server at GEARS_ADDR
// when it is set. The origin is an httptest server on 127.0.0.1, so with GEARS_ADDR the server must run
// on this machine. Every test uses its own trigger and a key prefix fresh for the run, so tests neither
// see each other's keys nor a previous run's.

// cgEnv is one test's server, client and cache_get command.
type cgEnv struct {
	t       testing.TB
	addr    string
	rdb     *redis.Client
	prefix  string
	trigger string
	cache   gears.Func[[]byte]
	log     *cgLog // the server log, when the server is ours (gearstest)
}

// cgLog keeps the server's log for the test to inspect and passes it on to t.Log.
type cgLog struct {
	t    testing.TB
	mu   sync.Mutex
	buf  strings.Builder
	done bool
}

func (l *cgLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *cgLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
}

// count is how many lines of the log so far contain s.
func (l *cgLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// cgStart registers cache_get (built with opts plus a fresh key prefix) under a trigger of the test's own.
func cgStart(t testing.TB, opts ...gears.CacheOption) *cgEnv {
	t.Helper()
	var log *cgLog
	addr := os.Getenv("GEARS_ADDR")
	if addr == "" {
		log = &cgLog{t: t}
		t.Cleanup(log.stop)
		addr = gearstest.Run(t, gearstest.WithLogger(log)).Addr()
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 256, ReadTimeout: 30 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	e := &cgEnv{
		log:     log,
		t:       t,
		addr:    addr,
		rdb:     rdb,
		prefix:  "cgtest:" + cgRandom() + ":",
		trigger: "cache_get_" + regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"),
	}
	// The test origins listen on 127.0.0.1, which cache_get refuses unless allowed: allow it by name, as
	// a deployment would. A test's own CacheAllowHosts replaces this (CacheAllowHosts() with no hosts
	// restores the defaults).
	opts = append(append([]gears.CacheOption{gears.CacheAllowHosts("127.0.0.1")}, opts...), gears.CacheKeyPrefix(e.prefix))
	e.cache = gears.Command[[]byte](e.trigger, rdb, gears.NewCacheGet(opts...))
	// Register now, with a call that is refused before any key or origin is touched, so that the tests'
	// concurrent first calls are triggers, not a registration.
	_, err := e.cache(context.Background(), "not a url")
	require.Equal(t, `cache_get: refused "not a url": URL contains whitespace or control characters`, cgServerMsg(t, err))
	return e
}

func cgRandom() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// key is where cache_get stores url in this test.
func (e *cgEnv) key(url string) string { return gears.CacheGetKey(url, gears.CacheKeyPrefix(e.prefix)) }

// keys lists every key cache_get wrote in this test.
func (e *cgEnv) keys() []string {
	keys, err := e.rdb.Keys(context.Background(), e.prefix+"*").Result()
	require.NoError(e.t, err)
	return keys
}

// serverMsg asserts err is the server's error reply and returns its exact text.
func cgServerMsg(t testing.TB, err error) string {
	t.Helper()
	var ge *gears.Error
	require.ErrorAs(t, err, &ge, "want a server error reply, got %v", err)
	return ge.Msg
}

// cgOrigin is an HTTP origin that counts requests, tracks how many run at once and serves per path
// what the test set up.
type cgOrigin struct {
	*httptest.Server
	mu        sync.Mutex
	latency   time.Duration
	status    int
	body      []byte
	release   chan struct{} // when set, requests wait for it instead of latency
	hang      chan struct{} // when set, requests wait for it (before release: a herd's release does not free them)
	count     map[string]int
	active    int
	maxActive int
}

func cgNewOrigin(t testing.TB) *cgOrigin {
	o := &cgOrigin{status: 200, body: []byte("hello from the origin"), count: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *cgOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.count[r.URL.Path]++
	o.active++
	o.maxActive = max(o.maxActive, o.active)
	latency, status, body, release := o.latency, o.status, o.body, o.release
	if o.hang != nil {
		release = o.hang
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.active--
		o.mu.Unlock()
	}()
	if release != nil {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	} else {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	if status != 200 {
		body = []byte("no such image")
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (o *cgOrigin) set(f func(o *cgOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func (o *cgOrigin) requests(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count[path]
}

func (o *cgOrigin) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.count {
		n += c
	}
	return n
}

func TestCacheGetMissThenHit(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	url := o.URL + "/a.png"

	body, err := e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), body)
	assert.Equal(t, 1, o.requests("/a.png"))

	// Stored under the hash-tagged key of its own namespace, with the default expiry.
	stored, err := e.rdb.Get(ctx, e.key(url)).Bytes()
	require.NoError(t, err)
	assert.Equal(t, body, stored)
	assert.Equal(t, []string{e.key(url)}, e.keys())
	assert.Regexp(t, `^cgtest:[0-9a-f]{12}:\{[0-9a-f]{40}\}$`, e.key(url))
	pttl, err := e.rdb.PTTL(ctx, e.key(url)).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, gears.DefaultCacheExpiry-time.Minute)
	assert.LessOrEqual(t, pttl, gears.DefaultCacheExpiry)

	// The hit does not touch the origin.
	o.set(func(o *cgOrigin) { o.body = []byte("changed at the origin") })
	body, err = e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), body)
	assert.Equal(t, 1, o.requests("/a.png"))

	// A raw RG.TRIGGER gets the same bytes: the reply is one bulk string.
	reply, err := e.rdb.Do(ctx, "RG.TRIGGER", e.trigger, url).Slice()
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, reply)
}

func TestCacheGetBinaryBodyRoundTrips(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	var all []byte
	for r := 0; r < 3; r++ {
		for b := 0; b < 256; b++ {
			all = append(all, byte(b))
		}
	}
	all = append(all, 0xff, 0xfe, 0x00, 0xc3) // ends inside a would-be UTF-8 sequence
	o.set(func(o *cgOrigin) { o.body = all })
	url := o.URL + "/binary.bin"

	miss, err := e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, all, miss)
	hit, err := e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, all, hit)
	stored, err := e.rdb.Get(ctx, e.key(url)).Bytes()
	require.NoError(t, err)
	assert.Equal(t, all, stored)
	assert.Equal(t, 1, o.requests("/binary.bin"))

	// Valid UTF-8 comes back from execute('GET') as str on the server: it must still be the same bytes.
	text := []byte("h\u00e9llo, w\u00f6rld \u2603")
	o.set(func(o *cgOrigin) { o.body = text })
	url = o.URL + "/text.txt"
	_, err = e.cache(ctx, url)
	require.NoError(t, err)
	hit, err = e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, text, hit)
}

// cgRedisCli runs RG.TRIGGER through redis-cli and returns its output; redis-cli prints a one-element
// array reply of a bulk string as that string and a newline when its output is not a terminal.
func cgRedisCli(ctx context.Context, addr string, args ...string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

func TestCacheGetOneDownloadForManyCallers(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	o.set(func(o *cgOrigin) { o.body = []byte("the one and only download") })
	url := o.URL + "/herd.png"

	const callers = 100
	cliCallers := 20
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Logf("redis-cli not found (apt-get install redis-tools): all %d callers use go-redis", callers)
		cliCallers = 0
	}
	// Several go-redis clients, each with its own pool, plus redis-cli processes.
	clients := make([]*redis.Client, 4)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: e.addr, PoolSize: callers, ReadTimeout: 30 * time.Second})
		defer clients[i].Close()
	}
	bodies, errs := cgHerd(t, e, o, "/herd.png", callers, func(i int) ([]byte, error) {
		if i < cliCallers {
			out, err := cgRedisCli(ctx, e.addr, "RG.TRIGGER", e.trigger, url)
			if err == nil && !strings.HasSuffix(out, "\n") {
				err = fmt.Errorf("redis-cli output %q", out)
			}
			return []byte(strings.TrimSuffix(out, "\n")), err
		}
		c := gears.Command[[]byte](e.trigger, clients[i%len(clients)], gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(e.prefix)))
		return c(ctx, url)
	})
	for i := 0; i < callers; i++ {
		require.NoError(t, errs[i], "caller %d", i)
		assert.Equal(t, "the one and only download", string(bodies[i]), "caller %d", i)
	}
	assert.Equal(t, 1, o.requests("/herd.png"), "the origin must see exactly one download")
	assert.Equal(t, []string{e.key(url)}, e.keys())
	e.assertNoThreadTouchedRedis()
}

// cgHerd runs call(0) … call(n-1) at once for the URL at path of origin o, while o holds every request:
// it waits until the one download is at the origin and the other n-1 callers wait for it (so the herd
// really is concurrent rather than a series of hits or failures), then lets the origin answer and
// returns what each call returned. It asserts that the origin saw exactly one request meanwhile. The
// during functions run (in the test's goroutine) while the herd waits.
func cgHerd(t *testing.T, e *cgEnv, o *cgOrigin, path string, n int, call func(i int) ([]byte, error), during ...func()) ([][]byte, []error) {
	t.Helper()
	release := make(chan struct{})
	o.set(func(o *cgOrigin) { o.release = release })
	base := e.joinedLines()
	before := o.requests(path)
	var wg sync.WaitGroup
	bodies := make([][]byte, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i], errs[i] = call(i)
		}()
	}
	released := false
	defer func() {
		if !released { // a failed wait: let the callers finish before the test's cleanup
			close(release)
			wg.Wait()
		}
	}()
	waitUntil(t, 20*time.Second, "the download to reach the origin", func() bool { return o.requests(path) > before })
	cgWaitForWaiters(t, e, base, n)
	require.Equal(t, before+1, o.requests(path), "one download for the whole herd")
	for _, f := range during {
		f()
	}
	released = true
	close(release)
	wg.Wait()
	return bodies, errs
}

// waitUntil polls cond until it holds (a state of the server or the origin, not a time) and fails the
// test after limit.
func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cgThreadHazard is in the server log of gearstest when a thread the script started called execute()
// or atomic(), which hangs a real RedisGears 1.2 (gears-spec.md section 8.1 K2). It is part of both the
// former warning ("execute()/atomic() called from a thread the script started") and the HAZARD error
// ("HAZARD execute() … from a thread the script started").
const cgThreadHazard = "from a thread the script started"

// assertNoThreadTouchedRedis checks that gearstest did not report execute()/atomic() called from a
// thread the script started (TestCacheGetThreadCheckCanFail shows that it would).
func (e *cgEnv) assertNoThreadTouchedRedis() {
	if e.log != nil {
		assert.Zero(e.t, e.log.count(cgThreadHazard), "a thread cache_get started touched Redis")
	}
}

// cgJoined is cache_get's log line (verbose level) for a caller that joins a download in flight.
const cgJoined = "miss, waiting for the download in flight"

// joinedLines is how many callers joined a download in flight so far (gearstest only; 0 elsewhere).
func (e *cgEnv) joinedLines() int {
	if e.log == nil {
		return 0
	}
	return e.log.count(cgJoined)
}

// cgWaitForWaiters waits until n callers wait for the download that the origin holds, and fails the test
// when they do not. On gearstest it reads cache_get's own log lines: n-1 more than base (one per caller
// that joins the download in flight, besides the one that started it). On another server it waits for
// INFO's blocked_clients (a real RedisGears blocks a client for every waiting trigger), and skips the
// test when the server does not report it: the herd could not be shown to be concurrent.
func cgWaitForWaiters(t *testing.T, e *cgEnv, base, n int) {
	t.Helper()
	if e.log != nil {
		waitUntil(t, 20*time.Second, fmt.Sprintf("%d callers to join the one download", n-1), func() bool {
			return e.log.count(cgJoined)-base >= n-1
		})
		require.Equal(t, n-1, e.log.count(cgJoined)-base, "callers that joined the download in flight")
		return
	}
	blocked := func() (int, bool) {
		info, err := e.rdb.Info(context.Background(), "clients").Result()
		require.NoError(t, err)
		m := regexp.MustCompile(`blocked_clients:(\d+)`).FindStringSubmatch(info)
		if m == nil {
			return 0, false
		}
		var b int
		_, _ = fmt.Sscan(m[1], &b)
		return b, true
	}
	if _, ok := blocked(); !ok {
		t.Skipf("%s server: INFO clients has no blocked_clients, so the herd cannot be shown to be concurrent", testtarget.Kind())
	}
	waitUntil(t, 20*time.Second, fmt.Sprintf("%d blocked clients", n), func() bool {
		b, _ := blocked()
		return b >= n
	})
}

// TestCacheGetThreadCheckCanFail shows that the check assertNoThreadTouchedRedis relies on sees a thread
// the script started calling execute(): gearstest reports it in its log (as a warning, or as a HAZARD
// error). The server is started without Run, which would fail this test for the hazard it provokes.
func TestCacheGetThreadCheckCanFail(t *testing.T) {
	if testtarget.Kind() != "gearstest" {
		t.Skip("emulator-only: a thread calling execute() hangs a real RedisGears 1.2")
	}
	log := &cgLog{t: t}
	t.Cleanup(log.stop)
	srv, err := gearstest.Start(gearstest.WithLogger(log))
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	require.NoError(t, rdb.Do(ctx, "RG.PYEXECUTE", `
import threading
def touch(x):
    def run():
        try:
            execute('SET', 'touched', '1')
        except Exception:
            pass
    threading.Thread(target=run).start()
    return 'started'
GB('CommandReader').map(touch).register(trigger='touch')
`).Err())
	require.Zero(t, log.count(cgThreadHazard), "nothing touched Redis from a thread yet")
	require.Equal(t, []any{"started"}, rdb.Do(ctx, "RG.TRIGGER", "touch").Val())
	waitUntil(t, 20*time.Second, "gearstest to report the thread's execute()", func() bool { return log.count(cgThreadHazard) > 0 })

	rec := &cgRecordingTB{TB: t}
	(&cgEnv{t: rec, log: log}).assertNoThreadTouchedRedis()
	assert.True(t, rec.failed, "assertNoThreadTouchedRedis must fail when a thread touched Redis")
}

// cgRecordingTB records a failure instead of failing the test (to check that a check can fail).
type cgRecordingTB struct {
	testing.TB
	failed bool
}

func (r *cgRecordingTB) Errorf(string, ...any) { r.failed = true }

func TestCacheGetManyURLsDownloadInParallel(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	release := make(chan struct{})
	o.set(func(o *cgOrigin) { o.release = release })

	const urls = 60
	var wg sync.WaitGroup
	errs := make([]error, urls)
	bodies := make([][]byte, urls)
	for i := 0; i < urls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i], errs[i] = e.cache(ctx, fmt.Sprintf("%s/img/%d.png", o.URL, i))
		}()
	}
	// All 60 downloads are at the origin at the same time: none waits for another.
	require.Eventually(t, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.active == urls
	}, 20*time.Second, 5*time.Millisecond, "downloads did not run in parallel")
	// Meanwhile the server answers other clients.
	require.NoError(t, e.rdb.Ping(ctx).Err())
	require.NoError(t, e.rdb.Set(ctx, e.prefix+"probe", "x", 0).Err())
	o.mu.Lock()
	stillActive := o.active
	o.mu.Unlock()
	assert.Equal(t, urls, stillActive, "PING must be answered while the downloads are in flight")
	require.NoError(t, e.rdb.Del(ctx, e.prefix+"probe").Err())
	close(release)
	wg.Wait()

	for i := 0; i < urls; i++ {
		require.NoError(t, errs[i], "url %d", i)
		assert.Equal(t, []byte("hello from the origin"), bodies[i])
	}
	assert.Equal(t, urls, o.total())
	assert.Equal(t, urls, o.maxActive)
	assert.Len(t, e.keys(), urls)
	e.assertNoThreadTouchedRedis()
}

// TestCacheGetSyncMode registers cache_get as a sync trigger: a hit then runs inline (on the "main
// thread": it works inside MULTI/EXEC, where only sync executions may run); a miss still waits on a
// gearsFuture, which a sync registration may return, so a herd of misses waits together without holding
// the server.
func TestCacheGetSyncMode(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	cache := gears.Command[[]byte](e.trigger+"_sync", e.rdb, gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(e.prefix)), gears.WithMode(gears.Sync))
	url := o.URL + "/sync.png"
	// Register before the herd, with a refused call: the herd's calls are then all triggers.
	_, err := cache(ctx, "not a url")
	require.Equal(t, `cache_get: refused "not a url": URL contains whitespace or control characters`, cgServerMsg(t, err))
	mode := ""
	for _, r := range e.rdb.Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any) {
		reg := cgPairs(r)
		data := cgPairs(reg["RegistrationData"])
		if cgPairs(data["args"])["trigger"] == e.trigger+"_sync" {
			mode, _ = data["mode"].(string)
		}
	}
	require.Equal(t, "sync", mode, "the registration's mode")

	// 20 callers miss at once: one downloads, 19 wait on futures; meanwhile the server answers others.
	bodies, errs := cgHerd(t, e, o, "/sync.png", 20, func(int) ([]byte, error) { return cache(ctx, url) }, func() {
		require.Equal(t, "PONG", e.rdb.Ping(ctx).Val())
	})
	for i := range bodies {
		require.NoError(t, errs[i])
		assert.Equal(t, []byte("hello from the origin"), bodies[i])
	}
	assert.Equal(t, 1, o.requests("/sync.png"))
	body, err := cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), body)
	assert.Equal(t, 1, o.requests("/sync.png"))

	// Inside MULTI/EXEC a hit works; a miss cannot wait and says so.
	cmds, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "RG.TRIGGER", e.trigger+"_sync", url)
		p.Do(ctx, "RG.TRIGGER", e.trigger+"_sync", o.URL+"/cold.png")
		p.Do(ctx, "RG.TRIGGER", e.trigger, url)
		return nil
	})
	require.Error(t, err)
	require.Len(t, cmds, 3)
	hit, err := cmds[0].(*redis.Cmd).Slice()
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, hit)
	assert.EqualError(t, cmds[1].Err(), "cache_get: "+o.URL+"/cold.png is not cached and a download cannot be waited for inside MULTI/EXEC or Lua")
	// The async registration of the same cache cannot run inline at all.
	assert.EqualError(t, cmds[2].Err(), "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.")
	assert.Equal(t, 0, o.requests("/cold.png"))
}

// cgPairs turns a flat [k1, v1, k2, v2, …] reply (RESP2) or a map reply into a map.
func cgPairs(v any) map[string]any {
	m := map[string]any{}
	switch x := v.(type) {
	case []any:
		for i := 0; i+1 < len(x); i += 2 {
			if k, ok := x[i].(string); ok {
				m[k] = x[i+1]
			}
		}
	case map[any]any:
		for k, v := range x {
			if ks, ok := k.(string); ok {
				m[ks] = v
			}
		}
	}
	return m
}

// cgFailure runs n concurrent callers of url and checks they all get want and nothing was stored.
func cgFailure(t *testing.T, e *cgEnv, url, want string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.cache(context.Background(), url)
		}()
	}
	wg.Wait()
	cgCheckFailures(t, e, errs, want)
}

// cgCheckFailures checks that every call failed with the server error want and nothing was stored.
func cgCheckFailures(t *testing.T, e *cgEnv, errs []error, want string) {
	t.Helper()
	for i, err := range errs {
		require.Error(t, err, "caller %d", i)
		assert.Equal(t, want, cgServerMsg(t, err), "caller %d", i)
	}
	assert.Empty(t, e.keys(), "a failure must not be cached")
}

func TestCacheGetFailures(t *testing.T) {
	ctx := context.Background()

	for _, status := range []int{404, 500} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			e := cgStart(t)
			o := cgNewOrigin(t)
			o.set(func(o *cgOrigin) { o.status = status })
			url := o.URL + "/img.png"
			// Every caller waits for the one download and gets its error.
			_, errs := cgHerd(t, e, o, "/img.png", 10, func(int) ([]byte, error) { return e.cache(ctx, url) })
			cgCheckFailures(t, e, errs, fmt.Sprintf("cache_get: GET %s: status %d", url, status))
			assert.Equal(t, 1, o.requests("/img.png"), "one download, one error for all")

			// The origin recovers: the next call downloads and stores.
			o.set(func(o *cgOrigin) { o.status = 200 })
			body, err := e.cache(ctx, url)
			require.NoError(t, err)
			assert.Equal(t, []byte("hello from the origin"), body)
			assert.Equal(t, 2, o.requests("/img.png"))
			assert.Equal(t, []string{e.key(url)}, e.keys())
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		e := cgStart(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		url := "http://" + addr + "/img.png"
		_, err = e.cache(ctx, url)
		require.Error(t, err)
		msg := cgServerMsg(t, err)
		assert.True(t, strings.HasPrefix(msg, "cache_get: GET "+url+": connection failed: "), msg)
		assert.Contains(t, msg, "Connection refused")
		assert.Empty(t, e.keys())

		// Something listens there now: the next call succeeds.
		ln, err = net.Listen("tcp", addr)
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("back"))
		})}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		body, err := e.cache(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, []byte("back"), body)
	})

	t.Run("slow origin past the timeout", func(t *testing.T) {
		// The origin never answers on its own: only cache_get's timeout can end the calls. The timeout
		// leaves the herd time to gather (it is shown to have gathered before the timeout ends it).
		e := cgStart(t, gears.CacheTimeout(3*time.Second))
		o := cgNewOrigin(t)
		url := o.URL + "/slow.png"
		hang := make(chan struct{})
		defer close(hang)
		o.set(func(o *cgOrigin) { o.hang = hang })
		_, errs := cgHerd(t, e, o, "/slow.png", 10, func(int) ([]byte, error) { return e.cache(ctx, url) })
		cgCheckFailures(t, e, errs, fmt.Sprintf("cache_get: GET %s: timed out after 3s", url))
		assert.Equal(t, 1, o.requests("/slow.png"))

		o.set(func(o *cgOrigin) { o.hang, o.release, o.latency = nil, nil, 0 })
		body, err := e.cache(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, []byte("hello from the origin"), body)
	})

	t.Run("timeout capped by ExecutionMaxIdleTime", func(t *testing.T) {
		// RedisGears ends an execution that waits longer than ExecutionMaxIdleTime with "Execution max
		// idle reached": cache_get keeps its deadline inside it and fails with its own error first.
		e := cgStart(t) // CacheTimeout: the default 10 s
		old, err := e.rdb.Do(ctx, "RG.CONFIGGET", "ExecutionMaxIdleTime").Slice()
		require.NoError(t, err)
		require.NoError(t, e.rdb.Do(ctx, "RG.CONFIGSET", "ExecutionMaxIdleTime", "500").Err())
		t.Cleanup(func() { e.rdb.Do(context.Background(), "RG.CONFIGSET", "ExecutionMaxIdleTime", old[0]) })
		o := cgNewOrigin(t)
		hang := make(chan struct{})
		defer close(hang)
		o.set(func(o *cgOrigin) { o.release = hang })
		url := o.URL + "/idle.png"
		cgFailure(t, e, url, fmt.Sprintf("cache_get: GET %s: timed out after 0.35s", url), 5)
	})

	t.Run("oversized body", func(t *testing.T) {
		e := cgStart(t, gears.CacheMaxBytes(1000))
		o := cgNewOrigin(t)
		o.set(func(o *cgOrigin) { o.body = bytes.Repeat([]byte("x"), 1001) })
		url := o.URL + "/big.png"
		cgFailure(t, e, url, fmt.Sprintf("cache_get: GET %s: body of 1001 bytes is larger than the limit of 1000 bytes", url), 5)

		o.set(func(o *cgOrigin) { o.body = bytes.Repeat([]byte("x"), 1000) })
		body, err := e.cache(ctx, url)
		require.NoError(t, err)
		assert.Len(t, body, 1000)
	})

	t.Run("oversized body without Content-Length", func(t *testing.T) {
		e := cgStart(t, gears.CacheMaxBytes(100000))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 20; i++ { // chunked: the size is only known while reading
				_, _ = w.Write(bytes.Repeat([]byte("y"), 10000))
				w.(http.Flusher).Flush()
			}
		}))
		defer srv.Close()
		url := srv.URL + "/stream"
		cgFailure(t, e, url, fmt.Sprintf("cache_get: GET %s: body larger than the limit of 100000 bytes", url), 3)
	})
}

// TestCacheGetRedirects: a download follows at most 5 redirects (README, Safety).
func TestCacheGetRedirects(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	var mu sync.Mutex
	hops := 0
	// /hop/N redirects to /hop/N-1; /hop/0 answers.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hops++
		mu.Unlock()
		var n int
		if _, err := fmt.Sscanf(r.URL.Path, "/hop/%d", &n); err != nil {
			http.NotFound(w, r)
			return
		}
		if n == 0 {
			_, _ = w.Write([]byte("landed"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	}))
	defer srv.Close()
	requests := func() int {
		mu.Lock()
		defer mu.Unlock()
		return hops
	}

	body, err := e.cache(ctx, srv.URL+"/hop/5")
	require.NoError(t, err)
	assert.Equal(t, []byte("landed"), body)
	assert.Equal(t, 6, requests(), "5 redirects and the answer")

	url := srv.URL + "/hop/6"
	_, err = e.cache(ctx, url)
	assert.Equal(t, fmt.Sprintf("cache_get: GET %s: more than 5 redirects", url), cgServerMsg(t, err))
	assert.Equal(t, 6+6, requests(), "the sixth redirect is not followed")
	assert.Equal(t, []string{e.key(srv.URL + "/hop/5")}, e.keys())
}

// TestCacheGetCallerTimeouts: through the Go API, a caller's own shorter timeout ends its wait for a
// download in flight without ending the download, and a body trickling in (every read well inside the
// HTTP client's own timeouts) still ends at the caller's deadline (README, "No caller waits longer than
// the timeout").
func TestCacheGetCallerTimeouts(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)

	t.Run("joining caller with a shorter timeout", func(t *testing.T) {
		o := cgNewOrigin(t)
		release := make(chan struct{})
		o.set(func(o *cgOrigin) { o.release = release })
		url := o.URL + "/slowish.png"
		type result struct {
			body []byte
			err  error
		}
		leader := make(chan result, 1)
		go func() {
			b, err := e.cache(ctx, url)
			leader <- result{b, err}
		}()
		waitUntil(t, 20*time.Second, "the download to reach the origin", func() bool { return o.requests("/slowish.png") == 1 })
		base := e.joinedLines()
		// The origin holds the download until this caller has given up.
		_, err := e.cache(ctx, url, "", 300)
		assert.Equal(t, fmt.Sprintf("cache_get: GET %s: timed out after 0.3s", url), cgServerMsg(t, err))
		if e.log != nil {
			assert.Equal(t, 1, e.joinedLines()-base, "the caller joined the download in flight")
		}
		close(release)
		r := <-leader
		require.NoError(t, r.err)
		assert.Equal(t, []byte("hello from the origin"), r.body)
		assert.Equal(t, 1, o.requests("/slowish.png"), "the download went on and was not repeated")
		assert.Equal(t, []string{e.key(url)}, e.keys())
	})

	t.Run("trickling body", func(t *testing.T) {
		stop := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(200)
			tick := time.NewTicker(20 * time.Millisecond) // one byte per tick: never a read timeout
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					if _, err := w.Write([]byte("x")); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				case <-r.Context().Done():
					return
				case <-stop:
					return
				}
			}
		}))
		defer func() {
			close(stop) // before Close, which waits for the handler
			srv.Close()
		}()
		url := srv.URL + "/trickle"
		_, err := e.cache(ctx, url, "", 400)
		assert.Equal(t, fmt.Sprintf("cache_get: GET %s: timed out after 0.4s", url), cgServerMsg(t, err))
		assert.NotContains(t, e.keys(), e.key(url))
	})
}

// TestCacheGetInsideLua: RG.TRIGGER from a Lua script runs a sync registration only (gears-spec.md
// §8.1, last line: "RG.TRIGGER from Lua/MULTI (sync only; async gets a clean error)"); there a hit works
// and a miss cannot wait and says so (README).
func TestCacheGetInsideLua(t *testing.T) {
	if testtarget.Kind() == "gearstest" {
		// Lua runs in gearstest's data store, which does not know RG.TRIGGER ("Unknown Redis command
		// called from script"): a gap of gearstest, reported; this test runs against a real server.
		t.Skip("gearstest does not route redis.call('RG.TRIGGER') from Lua; run with GEARS_ADDR")
	}
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	sync := gears.Command[[]byte](e.trigger+"_sync", e.rdb, gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(e.prefix)), gears.WithMode(gears.Sync))
	url := o.URL + "/lua.png"
	_, err := sync(ctx, url) // the miss, outside Lua: downloads and stores
	require.NoError(t, err)
	const lua = "return redis.call('RG.TRIGGER', ARGV[1], ARGV[2])"

	hit, err := e.rdb.Eval(ctx, lua, nil, e.trigger+"_sync", url).Result()
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, hit)

	_, err = e.rdb.Eval(ctx, lua, nil, e.trigger+"_sync", o.URL+"/cold.png").Result()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cache_get: "+o.URL+"/cold.png is not cached and a download cannot be waited for inside MULTI/EXEC or Lua")

	_, err = e.rdb.Eval(ctx, lua, nil, e.trigger, url).Result()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "can not run a non-sync execution inside a MULTI/LUA")
	assert.Equal(t, 1, o.requests("/lua.png"))
	assert.Equal(t, 0, o.requests("/cold.png"))
}

func TestCacheGetExpiry(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t, gears.CacheExpiry(500*time.Millisecond))
	o := cgNewOrigin(t)
	url := o.URL + "/exp.png"

	_, err := e.cache(ctx, url)
	require.NoError(t, err)
	pttl, err := e.rdb.PTTL(ctx, e.key(url)).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, time.Duration(0))
	assert.LessOrEqual(t, pttl, 500*time.Millisecond)

	// Once Redis has expired the key, the next call downloads again.
	require.Eventually(t, func() bool {
		n, err := e.rdb.Exists(ctx, e.key(url)).Result()
		return err == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond, "the key never expired")
	_, err = e.cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, 2, o.requests("/exp.png"))

	// A caller's own expiry (ms) wins; 0 stores without expiry.
	url2 := o.URL + "/forever.png"
	_, err = e.cache(ctx, url2, 0)
	require.NoError(t, err)
	pttl, err = e.rdb.PTTL(ctx, e.key(url2)).Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), pttl, "PTTL -1: no expiry")

	url3 := o.URL + "/minute.png"
	_, err = e.cache(ctx, url3, 60000)
	require.NoError(t, err)
	pttl, err = e.rdb.PTTL(ctx, e.key(url3)).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, 50*time.Second)
	assert.LessOrEqual(t, pttl, time.Minute)

	_, err = e.cache(ctx, url3, "soon")
	assert.Equal(t, `cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "soon"`, cgServerMsg(t, err))
}

func TestCacheGetRejectsURLs(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t, gears.CacheAllowHosts("127.0.0.1", "*.example.com"))
	o := cgNewOrigin(t)
	// A key of the application's own that a caller might try to read or overwrite through cache_get.
	require.NoError(t, e.rdb.Set(ctx, "mykey", "the application's secret", 0).Err())
	t.Cleanup(func() { e.rdb.Del(context.Background(), "mykey") })
	dbsize, err := e.rdb.DBSize(ctx).Result()
	require.NoError(t, err)

	cases := map[string]string{
		"file:///etc/passwd":       `scheme "file" is not allowed (only http and https)`,
		"ftp://127.0.0.1/img.png":  `scheme "ftp" is not allowed (only http and https)`,
		"http://localhost/img.png": `host "localhost" is not in the allowlist`,
		"https://evil.test/x.png":  `host "evil.test" is not in the allowlist`,
		"mykey":                    `not a URL`,
		"cgtest:{abc}":             `scheme "cgtest" is not allowed (only http and https)`,
		"http:///img.png":          `not a URL`,
		"http://127.0.0.1/a b.png": `URL contains whitespace or control characters`,
	}
	for url, why := range cases {
		_, err := e.cache(ctx, url)
		require.Error(t, err, url)
		assert.Equal(t, fmt.Sprintf(`cache_get: refused "%s": %s`, url, why), cgServerMsg(t, err))
	}
	// A redirect off the allowlist is refused too.
	redirect := httptest.NewServer(http.RedirectHandler("http://evil.test/x.png", http.StatusFound))
	defer redirect.Close()
	_, err = e.cache(ctx, redirect.URL+"/r")
	assert.Equal(t, fmt.Sprintf(`cache_get: GET %s/r: redirect to http://evil.test/x.png refused: host "evil.test" is not in the allowlist`, redirect.URL),
		cgServerMsg(t, err))

	assert.Empty(t, e.keys())
	after, err := e.rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	assert.Equal(t, dbsize, after)
	v, err := e.rdb.Get(ctx, "mykey").Result()
	require.NoError(t, err)
	assert.Equal(t, "the application's secret", v)
	assert.Equal(t, 0, o.total())

	// The allowlisted origin works.
	body, err := e.cache(ctx, o.URL+"/ok.png")
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), body)
}

func TestNewCacheGetRendersSettings(t *testing.T) {
	assert.Equal(t, "cache_get", gears.CacheGet.Function)
	assert.Equal(t, "cache_get_store", gears.CacheGet.Then)
	assert.Equal(t, []string{"requests"}, gears.CacheGet.Requirements)
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_KEY_PREFIX = \"cache_get:\"\n")
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_EXPIRY_MS = 3600000\n")
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_TIMEOUT_MS = 10000\n")
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_MAX_BYTES = 33554432\n")
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_ALLOW_HOSTS = []\n")

	s := gears.NewCacheGet(
		gears.CacheExpiry(1500*time.Microsecond), // rounded up: never 0, which means "no expiry"
		gears.CacheTimeout(2*time.Second),
		gears.CacheMaxBytes(1234),
		gears.CacheKeyPrefix(`img:"\`),
		gears.CacheAllowHosts(" CDN.Example.com", "*.img.test", "evil\"\n\x01"),
	)
	assert.Contains(t, s.Source, "\nCACHE_GET_KEY_PREFIX = \"img:\\\"\\\\\"\n")
	assert.Contains(t, s.Source, "\nCACHE_GET_EXPIRY_MS = 2\n")
	assert.Contains(t, s.Source, "\nCACHE_GET_TIMEOUT_MS = 2000\n")
	assert.Contains(t, s.Source, "\nCACHE_GET_MAX_BYTES = 1234\n")
	assert.Contains(t, s.Source, "\nCACHE_GET_ALLOW_HOSTS = [\"cdn.example.com\", \"*.img.test\", \"evil\\\"\\n\\u0001\"]\n")
	assert.Equal(t, 1, strings.Count(s.Source, "CACHE_GET_MAX_BYTES ="), "the default block is replaced, not added to")

	none := gears.NewCacheGet(gears.CacheExpiry(0), gears.CacheTimeout(-1), gears.CacheMaxBytes(0), gears.CacheKeyPrefix(""))
	assert.Contains(t, none.Source, "\nCACHE_GET_EXPIRY_MS = 0\n")
	assert.Contains(t, none.Source, "\nCACHE_GET_TIMEOUT_MS = 10000\n")
	assert.Contains(t, none.Source, "\nCACHE_GET_MAX_BYTES = 33554432\n")
	assert.Contains(t, none.Source, "\nCACHE_GET_KEY_PREFIX = \"cache_get:\"\n")

	assert.Equal(t, "cache_get:{"+cgSHA1("http://x/")+"}", gears.CacheGetKey("http://x/"))
	assert.Equal(t, "img:{"+cgSHA1("http://x/")+"}", gears.CacheGetKey("http://x/", gears.CacheKeyPrefix("img:")))

	assert.PanicsWithValue(t, `gears: CacheKeyPrefix "img{x}:" contains a brace; the hash tag {<SHA-1 of the URL>} must be the key's first`,
		func() { gears.NewCacheGet(gears.CacheKeyPrefix("img{x}:")) })
	assert.Panics(t, func() { gears.CacheGetKey("http://x/", gears.CacheKeyPrefix("}")) })

	// Both renderings are valid Python 3.7, and the settings evaluate to what was asked for.
	python := cgPython(t)
	for _, src := range []string{gears.CacheGet.Source, s.Source} {
		cmd := exec.Command(python, "-c", `
import ast, sys
src = sys.stdin.read()
tree = ast.parse(src, feature_version=(3, 7))
vals = {}
for node in tree.body:
    if isinstance(node, ast.Assign) and node.targets[0].id.startswith('CACHE_GET_'):
        vals[node.targets[0].id] = ast.literal_eval(node.value)
print(repr(vals['CACHE_GET_KEY_PREFIX']), vals['CACHE_GET_ALLOW_HOSTS'])
`)
		cmd.Stdin = strings.NewReader(src)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		if src == s.Source {
			assert.Equal(t, `'img:"\\' ['cdn.example.com', '*.img.test', 'evil"\n\x01']`+"\n", string(out))
		} else {
			assert.Equal(t, "'cache_get:' []\n", string(out))
		}
	}
}

func cgSHA1(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func cgPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("GEARS_PYTHON")
	if python == "" {
		python = "python3"
	}
	p, err := exec.LookPath(python)
	if err != nil {
		t.Skipf("no %s on PATH: cannot check cache_get.py's Python", python)
	}
	return p
}

// TestCacheGetPythonHarness runs cache_get.py's own unit tests, which fake the RedisGears runtime and
// check, among others, that the download thread never touches Redis.
func TestCacheGetPythonHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the harness takes about ten seconds")
	}
	python := cgPython(t)
	if err := exec.Command(python, "-c", "import requests").Run(); err != nil {
		t.Skipf("%s lacks requests: %v", python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, filepath.Join("gears", "scripts", "testdata", "cache_get_harness.py")).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Regexp(t, `(?m)^OK$`, string(out))
}
