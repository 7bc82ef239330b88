package gears_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// cache_get must not be a door into the server's network (issue 13): with its defaults it refuses every
// URL whose host is, or resolves to, an address that is not public, before connecting anywhere. These
// tests only ever send traffic to loopback origins; the other private ranges are covered address by
// address in gears/scripts/testdata/cache_get_harness.py (AddressTest), with the runtime faked.

const cgLoopback = "loopback 127.0.0.0/8"

// cgCountingServer is a local origin on 127.0.0.1 that counts requests per path and answers path /r
// with a redirect to location.
type cgCountingServer struct {
	*httptest.Server
	mu       sync.Mutex
	count    map[string]int
	location string
}

func cgNewCountingServer(t *testing.T) *cgCountingServer {
	s := &cgCountingServer{count: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.URL.Path]++
		location := s.location
		s.mu.Unlock()
		if r.URL.Path == "/r" {
			w.Header().Set("Location", location)
			w.WriteHeader(http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("secret of " + r.Host))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *cgCountingServer) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

func (s *cgCountingServer) port() string {
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}

func TestCacheGetRefusesLoopbackByDefault(t *testing.T) {
	ctx := context.Background()
	e := cgStart(t, gears.CacheAllowHosts()) // no allowlist: cache_get's defaults
	o := cgNewOrigin(t)
	_, port, err := net.SplitHostPort(o.Listener.Addr().String())
	require.NoError(t, err)

	resolves := func(host, addr, why string) string {
		return fmt.Sprintf(`host "%s" resolves to %s, which is not public (%s)`, host, addr, why)
	}
	cases := []struct{ host, why string }{
		{"127.0.0.1", "address 127.0.0.1 is not public (" + cgLoopback + ")"},
		{"[::1]", "address ::1 is not public (loopback ::1/128)"},
		{"2130706433", resolves("2130706433", "127.0.0.1", cgLoopback)},           // decimal
		{"0x7f000001", resolves("0x7f000001", "127.0.0.1", cgLoopback)},           // hex
		{"0177.0.0.1", resolves("0177.0.0.1", "127.0.0.1", cgLoopback)},           // octal
		{"127.1", resolves("127.1", "127.0.0.1", cgLoopback)},                     // short
		{"127.000.000.001", resolves("127.000.000.001", "127.0.0.1", cgLoopback)}, // zero-padded
		{"0.0.0.0", "address 0.0.0.0 is not public (unspecified 0.0.0.0/8)"},      // reaches this host on Linux
		{"[::ffff:127.0.0.1]", "address ::ffff:127.0.0.1 is not public (IPv4-mapped " + cgLoopback + ")"},
	}
	for i, c := range cases {
		url := "http://" + c.host + ":" + port + "/secret.png"
		_, err := e.cache(ctx, url)
		require.Error(t, err, url)
		assert.Equal(t, fmt.Sprintf(`cache_get: refused "%s": %s`, url, c.why), cgServerMsg(t, err), url)
		if e.log != nil {
			// Logged as a warning ('#'), under the request's number (cgStart's check was #1).
			assert.Equal(t, 1, e.log.count(fmt.Sprintf("# GEARS: cache_get: request #%d refused: %s\n", i+2, c.why)), url)
		}
	}

	// localhost is a name: the download resolves it and refuses before connecting. It may resolve to
	// 127.0.0.1 or ::1 first; every address is checked, the first that is not public is named.
	url := "http://localhost:" + port + "/secret.png"
	_, err = e.cache(ctx, url)
	require.Error(t, err)
	msg := cgServerMsg(t, err)
	assert.Contains(t, []string{
		fmt.Sprintf(`cache_get: refused "%s": %s`, url, resolves("localhost", "127.0.0.1", cgLoopback)),
		fmt.Sprintf(`cache_get: refused "%s": %s`, url, resolves("localhost", "::1", "loopback ::1/128")),
	}, msg)
	if e.log != nil {
		assert.Equal(t, 1, e.log.count("# GEARS: "+msg+"\n"), "the refusal is logged as a warning")
	}

	assert.Equal(t, 0, o.total(), "the origin must never be reached")
	assert.Empty(t, e.keys(), "a refusal writes no key")

	// A wildcard entry does not opt a private address in, a literal one does.
	w := cgStart(t, gears.CacheAllowHosts("*.0.0.1", "127.0.0.1"))
	url = "http://0x7f.0.0.1:" + port + "/wild.png"
	_, err = w.cache(ctx, url)
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf(`cache_get: refused "%s": %s`, url, resolves("0x7f.0.0.1", "127.0.0.1", cgLoopback)), cgServerMsg(t, err))
	assert.Equal(t, 0, o.total())
	body, err := w.cache(ctx, o.URL+"/named.png")
	require.NoError(t, err)
	assert.Equal(t, []byte("hello from the origin"), body)
	assert.Equal(t, 1, o.requests("/named.png"))
}

func TestCacheGetRefusesRedirectToLoopback(t *testing.T) {
	ctx := context.Background()
	s := cgNewCountingServer(t)
	e := cgStart(t) // CacheAllowHosts("127.0.0.1"): the origin, allowed by its IP
	url := s.URL + "/r"

	// The allowed origin redirects to itself under other names: each hop is checked like the URL.
	for _, target := range []string{
		"http://localhost:" + s.port() + "/secret",
		"http://2130706433:" + s.port() + "/secret",
		"http://[::ffff:127.0.0.1]:" + s.port() + "/secret",
	} {
		s.mu.Lock()
		s.location = target
		s.mu.Unlock()
		host := strings.TrimSuffix(strings.TrimPrefix(target, "http://"), ":"+s.port()+"/secret")
		host = strings.Trim(host, "[]")
		_, err := e.cache(ctx, url)
		require.Error(t, err, target)
		assert.Equal(t, fmt.Sprintf(`cache_get: GET %s: redirect to %s refused: host "%s" is not in the allowlist`, url, target, host),
			cgServerMsg(t, err))
	}

	// A name the allowlist matches only through a wildcard is checked by address at that hop.
	w := cgStart(t, gears.CacheAllowHosts("127.0.0.1", "*.0.0.1"))
	target := "http://0x7f.0.0.1:" + s.port() + "/secret"
	s.mu.Lock()
	s.location = target
	s.mu.Unlock()
	_, err := w.cache(ctx, url)
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf(`cache_get: GET %s: redirect to %s refused: host "0x7f.0.0.1" resolves to 127.0.0.1, which is not public (%s)`, url, target, cgLoopback),
		cgServerMsg(t, err))

	assert.Equal(t, 4, s.requests("/r"))
	assert.Equal(t, 0, s.requests("/secret"), "no redirect may reach the origin under another name")
	assert.Empty(t, e.keys())
	assert.Empty(t, w.keys())
}

func TestCacheGetPrivateOptIns(t *testing.T) {
	ctx := context.Background()
	s := cgNewCountingServer(t)
	url := s.URL + "/a.png"

	t.Run("CacheAllowHosts by IP", func(t *testing.T) {
		e := cgStart(t, gears.CacheAllowHosts("127.0.0.1"))
		body, err := e.cache(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, "secret of 127.0.0.1:"+s.port(), string(body))
		assert.Equal(t, []string{e.key(url)}, e.keys())
	})

	t.Run("CacheAllowPrivateNetworks", func(t *testing.T) {
		e := cgStart(t, gears.CacheAllowHosts(), gears.CacheAllowPrivateNetworks())
		for _, u := range []string{url, "http://localhost:" + s.port() + "/b.png", "http://2130706433:" + s.port() + "/c.png"} {
			body, err := e.cache(ctx, u)
			require.NoError(t, err, u)
			// The origin is asked for the host the URL names (Host header), at the address checked.
			host := strings.TrimSuffix(strings.TrimPrefix(u, "http://"), u[strings.LastIndex(u, "/"):])
			assert.Equal(t, "secret of "+host, string(body), u)
		}
		assert.Len(t, e.keys(), 3)
	})
	assert.Equal(t, 2, s.requests("/a.png"))
}

func TestNewCacheGetRendersPrivateNetworks(t *testing.T) {
	assert.Contains(t, gears.CacheGet.Source, "\nCACHE_GET_ALLOW_PRIVATE_NETWORKS = False\n")
	s := gears.NewCacheGet(gears.CacheAllowPrivateNetworks())
	assert.Contains(t, s.Source, "\nCACHE_GET_ALLOW_PRIVATE_NETWORKS = True\n")
	assert.Equal(t, 1, strings.Count(s.Source, "CACHE_GET_ALLOW_PRIVATE_NETWORKS ="))
	assert.Contains(t, gears.NewCacheGet(gears.CacheAllowHosts("127.0.0.1")).Source, "\nCACHE_GET_ALLOW_HOSTS = [\"127.0.0.1\"]\n")
}
