package gears_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// The Go side of a cache_get hit (issue 11): a Func made from CacheGet reads the key it computes with
// one GET and calls the trigger only when the key is missing or the call is one it cannot judge.

// cgCmdLog is a go-redis hook that records the name of every command a client sends.
type cgCmdLog struct {
	mu    sync.Mutex
	names []string
}

func (l *cgCmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *cgCmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *cgCmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			l.add(c)
		}
		return next(ctx, cmds)
	}
}

func (l *cgCmdLog) add(cmd redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, strings.ToLower(cmd.Name()))
}

// take returns the names recorded since the last take.
func (l *cgCmdLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.names
	l.names = nil
	return n
}

// cgRawMsg asserts err is an error reply read by go-redis (a raw rdb.Do) and returns its text.
func cgRawMsg(t *testing.T, err error) string {
	t.Helper()
	var re redis.Error
	require.ErrorAs(t, err, &re, "want an error reply, got %v", err)
	return re.Error()
}

// cgFast is a Func made from NewCacheGet(opts...) (127.0.0.1 allowed unless opts say otherwise, the
// test's key prefix) on a client of its own whose commands are recorded. It is registered already.
func cgFast(t *testing.T, e *cgEnv, name string, opts ...gears.CacheOption) (gears.Func[[]byte], *cgCmdLog) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.addr})
	t.Cleanup(func() { _ = rdb.Close() })
	log := &cgCmdLog{}
	rdb.AddHook(log)
	opts = append(append([]gears.CacheOption{gears.CacheAllowHosts("127.0.0.1")}, opts...), gears.CacheKeyPrefix(e.prefix))
	cache := gears.Command[[]byte](e.trigger+"_"+name, rdb, gears.NewCacheGet(opts...))
	_, err := cache(context.Background(), "not a url")
	require.Equal(t, `cache_get: refused "not a url": URL contains whitespace or control characters`, cgServerMsg(t, err))
	log.take()
	return cache, log
}

// TestCacheGetFuncHitIsOneGET: a hit through the Func sends one GET and no RG.TRIGGER; a miss sends
// the GET, finds nothing and calls the trigger.
func TestCacheGetFuncHitIsOneGET(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	cache, log := cgFast(t, e, "fast")
	url := o.URL + "/one-get.png"

	got, err := cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), got)
	assert.Equal(t, []string{"get", "rg.trigger"}, log.take(), "a miss: the GET finds nothing, the trigger downloads")

	for i := 0; i < 3; i++ {
		got, err = cache(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, []byte("hello from the origin"), got)
	}
	got, err = cache(ctx, url, "5000", 1000) // valid expiry and timeout: still a hit
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), got)
	got, err = cache(ctx, url, "", nil) // empty arguments mean the defaults
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), got)
	assert.Equal(t, []string{"get", "get", "get", "get", "get"}, log.take(), "hits: one GET each, no trigger")
	assert.Equal(t, 1, o.requests("/one-get.png"))
	e.assertNoThreadTouchedRedis()
}

// TestCacheGetFuncHitRespectsExpiry: the fast path serves a body only while Redis keeps its key; once
// the key has expired the trigger downloads it again and stores it with the expiry it is given.
func TestCacheGetFuncHitRespectsExpiry(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	cache, log := cgFast(t, e, "expiry")
	url := o.URL + "/expiring.png"
	key := e.key(url)

	_, err := cache(ctx, url, "600000")
	require.NoError(t, err)
	ttl, err := e.rdb.PTTL(ctx, key).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 0 && ttl <= 600*time.Second, "stored with the caller's expiry, got TTL %v", ttl)
	log.take()
	_, err = cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []string{"get"}, log.take())

	// Expire it now: a PEXPIREAT in the past deletes the key as its expiry would.
	require.NoError(t, e.rdb.PExpireAt(ctx, key, time.UnixMilli(1)).Err())
	require.Equal(t, int64(0), e.rdb.Exists(ctx, key).Val())
	got, err := cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), got)
	assert.Equal(t, []string{"get", "rg.trigger"}, log.take(), "an expired key is a miss")
	assert.Equal(t, 2, o.requests("/expiring.png"))
	ttl, err = e.rdb.PTTL(ctx, key).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 600*time.Second && ttl <= gears.DefaultCacheExpiry, "stored again with the default expiry, got TTL %v", ttl)
}

// TestCacheGetFuncHitBinaryBody: bodies that are not UTF-8, or that look like a status or an error
// reply, come back byte for byte from the fast path and from the trigger.
func TestCacheGetFuncHitBinaryBody(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	cache, log := cgFast(t, e, "binary")
	all := make([]byte, 0, 1024+2)
	for i := 0; i < 1024; i++ {
		all = append(all, byte(i))
	}
	bodies := map[string][]byte{
		"/all-bytes": append(all, 0xff, 0xfe),
		"/error":     []byte("-ERR not an error"),
		"/status":    []byte("+OK"),
		"/nul":       {0},
		"/utf8":      []byte("h\u00e9llo"),
	}
	for path, body := range bodies {
		o.set(func(o *cgOrigin) { o.body = body })
		url := o.URL + path
		got, err := cache(ctx, url)
		require.NoError(t, err, path)
		require.Equal(t, body, got, path)
		log.take()
		got, err = cache(ctx, url)
		require.NoError(t, err, path)
		assert.Equal(t, body, got, "%s: the fast path", path)
		assert.Equal(t, []string{"get"}, log.take(), path)
		reply, err := e.rdb.Do(ctx, "RG.TRIGGER", e.trigger+"_binary", url).Slice()
		require.NoError(t, err, path)
		assert.Equal(t, []any{string(body)}, reply, "%s: the trigger", path)
	}
}

// TestCacheGetFuncNarrowedAllowlist: a CacheGet whose allowlist no longer holds a host refuses that
// host's URLs, stored bodies included, through the Func (which leaves them to the trigger without
// reading the key) and through RG.TRIGGER alike; the wider CacheGet still serves them.
func TestCacheGetFuncNarrowedAllowlist(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	wide, _ := cgFast(t, e, "wide")
	narrow, log := cgFast(t, e, "narrow", gears.CacheAllowHosts("images.example.com", "*.example.org"))
	url := o.URL + "/stored-before.png"
	_, err := wide(ctx, url)
	require.NoError(t, err)

	_, err = narrow(ctx, url)
	want := fmt.Sprintf(`cache_get: refused "%s": host "127.0.0.1" is not in the allowlist`, url)
	assert.Equal(t, want, cgServerMsg(t, err))
	assert.Equal(t, []string{"rg.trigger"}, log.take(), "the Func does not read the key of a URL it does not allow")
	_, err = e.rdb.Do(ctx, "RG.TRIGGER", e.trigger+"_narrow", url).Result()
	assert.Equal(t, want, cgRawMsg(t, err))

	got, err := wide(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), got)
	assert.Equal(t, 1, o.requests("/stored-before.png"))
}

// TestCacheGetFuncDeclinesArguments: arguments cache_get would refuse are left to the trigger, so a
// hit fails with the server's own error.
func TestCacheGetFuncDeclinesArguments(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	o := cgNewOrigin(t)
	cache, log := cgFast(t, e, "args")
	url := o.URL + "/args.png"
	_, err := cache(ctx, url)
	require.NoError(t, err)
	log.take()

	cases := []struct {
		args []any
		msg  string
	}{
		{[]any{url, "x"}, `cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "x"`},
		{[]any{url, -1}, `cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "-1"`},
		{[]any{url, "", "0"}, `cache_get: timeout must be a whole number of milliseconds above 0, got "0"`},
		{[]any{url, "10", "000"}, `cache_get: timeout must be a whole number of milliseconds above 0, got "000"`},
	}
	for _, c := range cases {
		_, err := cache(ctx, c.args...)
		assert.Equal(t, c.msg, cgServerMsg(t, err), "%q", c.args)
		assert.Equal(t, []string{"rg.trigger"}, log.take(), "%q", c.args)
	}
	_, err = cache(ctx, url, "1", "2", "3")
	cgServerMsg(t, err) // too many arguments: the function's own error
	assert.Equal(t, []string{"rg.trigger"}, log.take())
	_, err = cache(ctx, url, "0", "007")
	require.NoError(t, err)
	assert.Equal(t, []string{"get"}, log.take(), "expiry 0 and a timeout of 7 ms are valid: a hit")
}

// TestCacheGetFuncAgreesWithTrigger stores a body under the key of URLs spelled in many ways and
// checks that the Func answers each exactly as RG.TRIGGER does, taking the fast path for the ordinary
// ones (the others it leaves to the trigger).
func TestCacheGetFuncAgreesWithTrigger(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	cache, log := cgFast(t, e, "agree", gears.CacheAllowHosts("127.0.0.1", "*.example.com", "Cdn.Example.ORG."))
	const hp = "127.0.0.1:8"
	cases := map[string]bool{ // URL: served by the fast path
		"http://" + hp + "/p":                             true,
		"HTTP://" + hp + "/p":                             true,
		"hTTpS://" + hp + "/p?q=1&r=2#frag":               true,
		"http://" + hp:                                    true,
		"http://127.0.0.1/p":                              true,
		"http://127.0.0.1.:8/p":                           true,
		"http://img.example.com/p":                        true,
		"http://a.b.EXAMPLE.com:65535/p":                  true,
		"https://cdn.example.org/p":                       true,
		"https://cdn.example.org../p":                     true,
		"http://example.com/p":                            false, // not in the allowlist: "*." needs a subdomain
		"http://evil-example.com/p":                       false,
		"http://localhost:8/p":                            false,
		"http://[::1]:8/p":                                false,
		"http://[::ffff:127.0.0.1]/p":                     false,
		"http://user:pw@127.0.0.1:8/p":                    false, // allowed, but credentials are left to the trigger
		"http://127.0.0.1:8/\u00e9":                       false, // allowed, but not ASCII
		"http://127.0.0.1:8/a\\b":                         false, // allowed, but a backslash
		"http://127.0.0.1%2e:8/p":                         false,
		"http://127.0.0.1:0/p":                            false,
		"http://127.0.0.1:65536/p":                        false,
		"http://127.0.0.1:/p":                             false,
		"http://127.0.0.1:8:9/p":                          false,
		"http://127.0.0.1:8/a b":                          false,
		"ftp://127.0.0.1/p":                               false,
		"http:127.0.0.1/p":                                false,
		"//127.0.0.1/p":                                   false,
		"http:///p":                                       false,
		"http://[fe80::1%25eth0]/p":                       false,
		"http://127.0.0.1:8/" + strings.Repeat("x", 8200): false,
	}
	for url, fast := range cases {
		require.NoError(t, e.rdb.Set(ctx, e.key(url), "stored for "+url, 0).Err())
		got, ferr := cache(ctx, url)
		names := log.take()
		want, terr := e.rdb.Do(ctx, "RG.TRIGGER", e.trigger+"_agree", url).Slice()
		if terr != nil {
			assert.Equal(t, cgRawMsg(t, terr), cgServerMsg(t, ferr), url)
			assert.Nil(t, got, url)
		} else {
			require.NoError(t, ferr, url)
			assert.Equal(t, []any{string(got)}, want, url)
		}
		if fast {
			assert.Equal(t, []string{"get"}, names, "%s: the fast path", url)
		} else {
			assert.Equal(t, []string{"rg.trigger"}, names, "%s: the trigger", url)
		}
	}
}

// TestCacheGetDefaults: CacheGet registers in async_local mode, and its Func retries a call the server
// dropped without running it (WithIdempotent); WithMode overrides the mode.
func TestCacheGetDefaults(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	regs, err := gears.NewClient(e.rdb).DumpRegistrations(ctx)
	require.NoError(t, err)
	modes := map[string]string{}
	for _, r := range regs {
		modes[r.Data.Args.Trigger] = r.Data.Mode
	}
	assert.Equal(t, "async_local", modes[e.trigger], "CacheGet's default mode")
	sync := gears.Command[[]byte](e.trigger+"_sync", e.rdb, gears.NewCacheGet(gears.CacheKeyPrefix(e.prefix)), gears.WithMode(gears.Sync))
	_, err = sync(ctx, "not a url")
	require.Error(t, err)
	regs, err = gears.NewClient(e.rdb).DumpRegistrations(ctx)
	require.NoError(t, err)
	for _, r := range regs {
		modes[r.Data.Args.Trigger] = r.Data.Mode
	}
	assert.Equal(t, "sync", modes[e.trigger+"_sync"], "WithMode overrides it")
}

// TestCacheGetFuncCopyWithOtherCode: a copy of CacheGet whose Python was changed is other code; its Func
// has no Go-side hit (its key or rules may differ) and asks the trigger every time.
func TestCacheGetFuncCopyWithOtherCode(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t)
	rdb := redis.NewClient(&redis.Options{Addr: e.addr})
	t.Cleanup(func() { _ = rdb.Close() })
	log := &cgCmdLog{}
	rdb.AddHook(log)
	s := gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1"), gears.CacheKeyPrefix(e.prefix))
	s.Source += "\n# changed by hand\n"
	cache := gears.Command[[]byte](e.trigger+"_copy", rdb, s)
	url := "http://127.0.0.1:8/copied.png"
	require.NoError(t, e.rdb.Set(ctx, e.key(url), "stored", 0).Err())
	got, err := cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("stored"), got)
	names := log.take()
	assert.Equal(t, "rg.trigger", names[len(names)-1])
	assert.NotContains(t, names, "get")
	got, err = cache(ctx, url)
	require.NoError(t, err)
	assert.Equal(t, []byte("stored"), got)
	assert.Equal(t, []string{"rg.trigger"}, log.take())
}
