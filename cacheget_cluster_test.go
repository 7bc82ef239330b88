package gears_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// The cluster tests of cache_get, on gearstest.RunCluster(t, 3) or GEARS_CLUSTER_ADDRS (the origin is an
// httptest server on 127.0.0.1, so a real cluster must run on this machine).

// clCache is cache_get registered on the test's cluster under a trigger and key prefix of its own.
type clCache struct {
	*clEnv
	trigger string
	prefix  string // key prefix
	opts    []gears.CacheOption
}

func newClusterCache(t testing.TB) *clCache {
	e := newClusterEnv(t)
	c := &clCache{clEnv: e, trigger: e.name("cache_get"), prefix: "cgtest:" + cgRandom() + ":"}
	c.opts = []gears.CacheOption{gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(c.prefix)}
	return c
}

// key is where cache_get stores url in this test.
func (c *clCache) key(url string) string {
	return gears.CacheGetKey(url, gears.CacheKeyPrefix(c.prefix))
}

// command is a Func of cache_get on rdb.
func (c *clCache) command(rdb redis.UniversalClient) gears.Func[[]byte] {
	return gears.Command[[]byte](c.trigger, rdb, gears.NewCacheGet(c.opts...))
}

// keysOn lists the test's keys node i holds.
func (c *clCache) keysOn(i int) []string {
	c.t.Helper()
	keys, err := c.node(i, 2).Keys(c.ctx, c.prefix+"*").Result()
	require.NoError(c.t, err)
	return keys
}

// assertOnlyOnOwner checks that the body of url is stored on the shard that owns its key, and only there.
func (c *clCache) assertOnlyOnOwner(url, body string) {
	c.t.Helper()
	key := c.key(url)
	own := c.owner(key)
	for i := range c.addrs {
		if i == own {
			assert.Equal(c.t, []string{key}, c.keysOn(i), "the owner, node %d, holds the body", i)
			v, err := c.node(i, 2).Get(c.ctx, key).Result()
			require.NoError(c.t, err)
			assert.Equal(c.t, body, v)
			continue
		}
		assert.Empty(c.t, c.keysOn(i), "node %d holds none of the test's keys", i)
	}
}

// waitForHerd waits until n callers wait for the one download the origin holds: on gearstest, n-1 callers
// that joined it in every shard's log; elsewhere n blocked clients on the node that owns key.
func (c *clCache) waitForHerd(base, n int, key string) {
	c.t.Helper()
	if c.log != nil {
		waitUntil(c.t, 30*time.Second, fmt.Sprintf("%d callers to join the one download", n-1), func() bool {
			return c.log.count(cgJoined)-base >= n-1
		})
		require.Equal(c.t, n-1, c.log.count(cgJoined)-base, "callers that joined the download in flight")
		return
	}
	owner := c.node(c.owner(key), 2)
	waitUntil(c.t, 30*time.Second, fmt.Sprintf("%d blocked clients on the key's node", n), func() bool {
		info, err := owner.Info(c.ctx, "clients").Result()
		require.NoError(c.t, err)
		m := regexp.MustCompile(`blocked_clients:(\d+)`).FindStringSubmatch(info)
		var b int
		if m != nil {
			_, _ = fmt.Sscan(m[1], &b)
		}
		return b >= n
	})
}

func (c *clCache) joined() int {
	if c.log == nil {
		return 0
	}
	return c.log.count(cgJoined)
}

// TestClusterCacheGetOneDownload: 100 callers of one URL spread over every node — two ClusterClients and,
// when redis-cli is installed, redis-cli -c processes started against each of the three nodes — cause one
// download, on the shard that owns the URL's key, which stores the body there and only there.
func TestClusterCacheGetOneDownload(t *testing.T) {
	c := newClusterCache(t)
	o := cgNewOrigin(t)
	o.set(func(o *cgOrigin) { o.body = []byte("one download for the whole cluster") })
	url := o.URL + "/cluster-herd.png"
	key := c.key(url)

	hook := &nodeHook{}
	ccs := []*redis.ClusterClient{c.clusterClient(3, hook), c.clusterClient(2, hook)}
	funcs := []gears.Func[[]byte]{c.command(ccs[0]), c.command(ccs[1])}
	// Register now, with a call that is refused before any key or origin is touched.
	for _, f := range funcs {
		_, err := f(c.ctx, "not a url")
		require.Equal(t, `cache_get: refused "not a url": URL contains whitespace or control characters`, cgServerMsg(t, err))
	}

	const callers = 100
	cliCallers := 30
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Logf("redis-cli not found (apt-get install redis-tools): all %d callers use go-redis", callers)
		cliCallers = 0
	}
	sentBefore := make([]int, len(c.addrs))
	for i, a := range c.addrs {
		sentBefore[i] = hook.at(a, "RG.TRIGGERONKEY")
	}
	release := make(chan struct{})
	o.set(func(o *cgOrigin) { o.release = release })
	base := c.joined()
	bodies, errs := make([][]byte, callers), make([]error, callers)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i < cliCallers {
				// Against node i%3, which follows the MOVED to the key's owner.
				out, err := cgRedisCli(c.ctx, c.addrs[i%len(c.addrs)], "-c", "RG.TRIGGERONKEY", c.trigger, key, url)
				if err == nil && !strings.HasSuffix(out, "\n") {
					err = fmt.Errorf("redis-cli output %q", out)
				}
				bodies[i], errs[i] = []byte(strings.TrimSuffix(out, "\n")), err
				return
			}
			bodies[i], errs[i] = funcs[i%2](c.ctx, url)
		}()
	}
	released := false
	defer func() {
		if !released {
			close(release)
			wg.Wait()
		}
	}()
	waitUntil(t, 30*time.Second, "the download to reach the origin", func() bool { return o.requests("/cluster-herd.png") > 0 })
	c.waitForHerd(base, callers, key)
	released = true
	close(release)
	wg.Wait()
	for i := 0; i < callers; i++ {
		require.NoError(t, errs[i], "caller %d", i)
		assert.Equal(t, "one download for the whole cluster", string(bodies[i]), "caller %d", i)
	}
	assert.Equal(t, 1, o.requests("/cluster-herd.png"), "the origin must see exactly one download")
	c.assertOnlyOnOwner(url, "one download for the whole cluster")
	own := c.addrs[c.owner(key)]
	for i, a := range c.addrs {
		want := sentBefore[i]
		if a == own {
			want += callers - cliCallers
		}
		assert.Equal(t, want, hook.at(a, "RG.TRIGGERONKEY"), "node %d: every go-redis call went straight to the key's owner", i)
	}
	assert.Zero(t, hook.total("RG.TRIGGER"), "a ClusterClient never sends the plain RG.TRIGGER")

	// A hit is one GET on the owner, answered by the Go fast path: no trigger.
	triggers := hook.total("RG.TRIGGERONKEY")
	gets := hook.at(own, "GET")
	body, err := funcs[0](c.ctx, url)
	require.NoError(t, err)
	assert.Equal(t, "one download for the whole cluster", string(body))
	assert.Equal(t, triggers, hook.total("RG.TRIGGERONKEY"))
	assert.Equal(t, gets+1, hook.at(own, "GET"))
	assert.Equal(t, 1, o.requests("/cluster-herd.png"))
}

// Each URL's body lands on the shard that owns its key: 12 URLs spread over the three nodes, each one
// download, each body on its owner only; redis-cli -c sent to any node gets the same body.
func TestClusterCacheGetBodiesOnTheirOwners(t *testing.T) {
	c := newClusterCache(t)
	o := cgNewOrigin(t)
	cache := c.command(c.clusterClient(3, nil))
	perNode := make([]int, len(c.addrs))
	for i := 0; i < 12; i++ {
		path := fmt.Sprintf("/spread/%d.png", i)
		url := o.URL + path
		body, err := cache(c.ctx, url)
		require.NoError(t, err)
		require.Equal(t, "hello from the origin", string(body))
		own := c.owner(c.key(url))
		perNode[own]++
		v, err := c.node(own, 2).Get(c.ctx, c.key(url)).Result()
		require.NoError(t, err, "url %d on its owner, node %d", i, own)
		assert.Equal(t, "hello from the origin", v)
		if _, err := exec.LookPath("redis-cli"); err == nil {
			for n := range c.addrs {
				out, err := cgRedisCli(c.ctx, c.addrs[n], "-c", "RG.TRIGGERONKEY", c.trigger, c.key(url), url)
				require.NoError(t, err, out)
				assert.Equal(t, "hello from the origin\n", out, "redis-cli -c against node %d", n)
			}
		}
		assert.Equal(t, 1, o.requests(path), "url %d downloaded once", i)
	}
	for n, k := range perNode {
		assert.NotZero(t, k, "node %d owns none of the URLs' keys", n)
		assert.Len(t, c.keysOn(n), k, "node %d holds the bodies of the keys it owns, and no other", n)
	}
	// A *url.URL argument (go-redis sends its MarshalBinary text) is routed by the same key.
	for i := 0; i < 12; i++ {
		u, err := neturl.Parse(fmt.Sprintf("%s/spread/%d.png", o.URL, i))
		require.NoError(t, err)
		body, err := cache(c.ctx, u)
		require.NoError(t, err, "url %d as *url.URL", i)
		assert.Equal(t, "hello from the origin", string(body))
	}
	assert.Equal(t, 12, o.total(), "all hits")
}

// The key a caller gives must be the URL's: another URL's key is refused, on a cluster as on one server,
// before any key or origin is touched.
func TestClusterCacheGetChecksTheKey(t *testing.T) {
	c := newClusterCache(t)
	o := cgNewOrigin(t)
	cc := c.clusterClient(3, nil)
	cache := c.command(cc)
	url, other := o.URL+"/mine.png", o.URL+"/theirs.png"
	_, err := cache(c.ctx, "not a url") // registers
	require.Error(t, err)
	_, err = gears.NewClient(cc).TriggerOnKey(c.ctx, c.trigger, c.key(other), url)
	assert.Equal(t, fmt.Sprintf(`cache_get: key "%s" is not the key of "%s" (RG.TRIGGERONKEY cache_get <key> <url>: `+
		`the key must be %s{<hex SHA-1 of the URL>}, here "%s")`, c.key(other), url, c.prefix, c.key(url)), cgServerMsg(t, err))
	// A plain RG.TRIGGER reaches whichever node it is sent to: one that does not own the key says how to
	// get there.
	foreign := (c.owner(c.key(url)) + 1) % len(c.addrs)
	_, err = gears.NewClient(c.node(foreign, 2)).Trigger(c.ctx, c.trigger, url)
	assert.Equal(t, fmt.Sprintf(`cache_get: the key of "%s" (%s) is on another shard of this Redis Cluster: call `+
		`RG.TRIGGERONKEY cache_get %s <url> through a cluster client, which routes it to the shard that owns the key`,
		url, c.key(url), c.key(url)), cgServerMsg(t, err))
	for i := range c.addrs {
		assert.Empty(t, c.keysOn(i), "node %d", i)
	}
	assert.Zero(t, o.total())
}

// On one server cache_get takes both forms: the plain RG.TRIGGER cache_get <url> that gears sends there,
// and RG.TRIGGERONKEY cache_get <key> <url>, which other clients may use everywhere.
func TestCacheGetKeyedFormOnOneServer(t *testing.T) {
	e := cgStart(t)
	o := cgNewOrigin(t)
	url := o.URL + "/keyed.png"
	c := gears.NewClient(e.rdb)
	reply, err := c.TriggerOnKey(context.Background(), e.trigger, e.key(url), url)
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, reply)
	reply, err = c.Trigger(context.Background(), e.trigger, url)
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, reply)
	reply, err = c.TriggerOnKey(context.Background(), e.trigger, e.key(url), url, "", "500")
	require.NoError(t, err)
	assert.Equal(t, []any{"hello from the origin"}, reply)
	assert.Equal(t, 1, o.requests("/keyed.png"))
	_, err = c.TriggerOnKey(context.Background(), e.trigger, e.key(url+"x"), url)
	assert.Contains(t, cgServerMsg(t, err), `is not the key of "`+url+`"`)
	assert.Equal(t, []string{e.key(url)}, e.keys())
}

// BenchmarkClusterCacheGetHit measures hits of one stored 16 KiB body on a 3-shard cluster through a
// ClusterClient, 50 goroutines at a time: the Func (the Go fast path, one GET routed to the owner), the
// trigger itself (RG.TRIGGERONKEY, async_local on the owner) and a plain GET of the key.
//
//	go test -run '^$' -bench BenchmarkClusterCacheGetHit -benchtime 2000x .
func BenchmarkClusterCacheGetHit(b *testing.B) {
	c := newClusterCache(b)
	o := cgNewOrigin(b)
	body := strings.Repeat("0123456789abcdef", 1024)
	o.set(func(o *cgOrigin) { o.body = []byte(body) })
	url := o.URL + "/thumb.png"
	cc := c.clusterClient(3, nil)
	cache := c.command(cc)
	got, err := cache(c.ctx, url)
	require.NoError(b, err)
	require.Equal(b, body, string(got))
	key := c.key(url)
	client := gears.NewClient(cc)
	run := func(b *testing.B, call func() error) {
		b.SetParallelism(25) // 50 goroutines on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("Func", func(b *testing.B) {
		run(b, func() error { _, err := cache(c.ctx, url); return err })
	})
	b.Run("TRIGGERONKEY", func(b *testing.B) {
		run(b, func() error { _, err := client.TriggerOnKey(c.ctx, c.trigger, key, url); return err })
	})
	b.Run("GET", func(b *testing.B) {
		run(b, func() error { return cc.Get(c.ctx, key).Err() })
	})
	require.Equal(b, 1, o.requests("/thumb.png"))
}
