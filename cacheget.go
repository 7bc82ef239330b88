package gears

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// cacheGetSource is gears/scripts/cache_get.py as shipped, with its default settings.
//
//go:embed gears/scripts/cache_get.py
var cacheGetSource string

// The settings block of cache_get.py that NewCacheGet rewrites.
const (
	cacheGetSettingsBegin = "# --- cache_get settings"
	cacheGetSettingsEnd   = "# --- end of cache_get settings ---"
)

// Defaults of the cache_get settings; NewCacheGet with no options uses them.
const (
	// DefaultCacheExpiry is how long a stored body lives unless CacheExpiry says otherwise.
	DefaultCacheExpiry = time.Hour
	// DefaultCacheTimeout is how long one download may take unless CacheTimeout says otherwise.
	DefaultCacheTimeout = 10 * time.Second
	// DefaultCacheMaxBytes is the largest body cache_get downloads unless CacheMaxBytes says otherwise.
	DefaultCacheMaxBytes int64 = 32 << 20
	// DefaultCacheKeyPrefix is the namespace of cache_get's keys unless CacheKeyPrefix says otherwise.
	DefaultCacheKeyPrefix = "cache_get:"
)

// CacheGet is the cache_get server function with its default settings: a read-through cache for HTTP
// resources that downloads each URL at most once at a time however many callers ask, and stores the body
// in Redis for DefaultCacheExpiry. Register and call it with
//
//	cache := gears.Command[[]byte]("cache_get", rdb, gears.CacheGet)
//	body, err := cache(ctx, url)
//
// or, from any language, RG.TRIGGER cache_get <url> [expiry_ms] [timeout_ms]. On a Redis Cluster the
// call must run on the shard that owns the URL's key (CacheGetKey): a Func made with a
// *redis.ClusterClient sends RG.TRIGGERONKEY cache_get <key> <url> [expiry_ms] [timeout_ms], which the
// cluster routes there, and other clients do the same (redis-cli -c). The function checks that the key
// is the URL's. NewCacheGet builds a variant with other settings. It refuses URLs whose host is, or resolves to, a loopback, private or
// otherwise non-public address (see CacheAllowPrivateNetworks and CacheAllowHosts to opt in).
var CacheGet = NewCacheGet()

// cacheGetSettings are the values NewCacheGet bakes into the Python source.
type cacheGetSettings struct {
	expiry       time.Duration
	timeout      time.Duration
	maxBytes     int64
	keyPrefix    string
	allowHosts   []string
	allowPrivate bool
}

// CacheOption changes one setting of NewCacheGet.
type CacheOption func(*cacheGetSettings)

// CacheExpiry sets how long a stored body lives; 0 or less stores it without expiry. Sub-millisecond
// parts are rounded up to a whole millisecond (Redis' PX resolution). A caller may still pass its own
// expiry in milliseconds as the second trigger argument.
func CacheExpiry(d time.Duration) CacheOption {
	return func(s *cacheGetSettings) { s.expiry = d }
}

// CacheTimeout sets the longest one download may take, redirects included; no caller waits longer.
// 0 or less keeps DefaultCacheTimeout. A caller may ask for a shorter timeout (third trigger argument,
// milliseconds), never a longer one. The server caps it further at 90% of its ExecutionMaxIdleTime less
// 100 ms (4.4 s with RedisGears' default of 5 s): RedisGears ends an execution that waits longer with
// "Execution max idle reached". Raise ExecutionMaxIdleTime (RG.CONFIGSET) to allow longer downloads.
func CacheTimeout(d time.Duration) CacheOption {
	return func(s *cacheGetSettings) { s.timeout = d }
}

// CacheAllowHosts restricts downloads to these hosts (names or IP addresses, compared case-insensitively;
// "*.example.com" allows every subdomain of example.com). Redirects are checked too. No hosts, the
// default, allows any host. Calling it again replaces the list.
//
// An entry that names a host literally ("127.0.0.1", "images.internal") also lets cache_get connect to
// it when it is, or resolves to, a private address, which cache_get otherwise refuses (see
// CacheAllowPrivateNetworks). A wildcard entry does not: whoever controls the DNS of a domain could
// point any of its names at an internal address.
func CacheAllowHosts(hosts ...string) CacheOption {
	return func(s *cacheGetSettings) { s.allowHosts = append([]string(nil), hosts...) }
}

// CacheAllowPrivateNetworks lets cache_get download from any address, for deployments that cache
// internal services. By default it refuses a URL whose host is, or resolves to, an address that is not
// public: loopback, private (RFC 1918), shared (100.64.0.0/10), link-local (169.254.0.0/16, where cloud
// metadata endpoints answer, and fe80::/10), unique-local (fc00::/7), unspecified, multicast, broadcast,
// documentation and reserved ranges, in every spelling and in IPv4-mapped form. Any client that may call
// RG.TRIGGER chooses the URL, so without this check cache_get would fetch the server's own network for
// it. The check applies to the address actually connected to, at every redirect hop. To allow only some
// internal hosts, name them in CacheAllowHosts instead.
func CacheAllowPrivateNetworks() CacheOption {
	return func(s *cacheGetSettings) { s.allowPrivate = true }
}

// CacheMaxBytes sets the largest body cache_get downloads; a larger one fails the call and is not stored.
// 0 or less keeps DefaultCacheMaxBytes.
func CacheMaxBytes(n int64) CacheOption {
	return func(s *cacheGetSettings) { s.maxBytes = n }
}

// CacheKeyPrefix sets the namespace of cache_get's keys: a body is stored under
// <prefix>{<SHA-1 of the URL>}. An empty prefix keeps DefaultCacheKeyPrefix, since keys without a
// namespace could collide with the application's own. The prefix must not contain '{' or '}': Redis
// Cluster would take its braces for the hash tag and put every entry in one slot. NewCacheGet and
// CacheGetKey panic if it does, as they would on any other programming error.
func CacheKeyPrefix(prefix string) CacheOption {
	return func(s *cacheGetSettings) { s.keyPrefix = prefix }
}

// NewCacheGet returns the cache_get Script with opts applied. The settings are written into the Python
// source as literals, so the registered function behaves the same for every caller in every language,
// and a change of settings is a change of code that Command upgrades on the server.
func NewCacheGet(opts ...CacheOption) Script {
	s := cacheGetSettings{
		expiry:    DefaultCacheExpiry,
		timeout:   DefaultCacheTimeout,
		maxBytes:  DefaultCacheMaxBytes,
		keyPrefix: DefaultCacheKeyPrefix,
	}
	for _, o := range opts {
		o(&s)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultCacheTimeout
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultCacheMaxBytes
	}
	if s.keyPrefix == "" {
		s.keyPrefix = DefaultCacheKeyPrefix
	}
	checkCacheKeyPrefix(s.keyPrefix)
	script := Script{
		Function:     "cache_get",
		Then:         "cache_get_store",
		Source:       renderCacheGet(s),
		Requirements: []string{"requests"},
		// AsyncLocal, on one server and on a cluster alike: a hit runs on the thread pool of the shard
		// called, the fastest mode for a short function under load (a real RedisGears 1.2.13 ran a one-GET
		// trigger at 49k/s async_local, 39k/s async, 36k/s sync with 50 clients), and in a cluster Async
		// would run cache_get on every shard, each with its own in-flight table and most without the key.
		// Sync would run hits inline but block Redis while they run. Idempotent: a call RedisGears
		// dropped without running it (an UPGRADE) is simply made again. WithMode overrides the mode.
		defaults: []Option{WithMode(AsyncLocal), WithIdempotent()},
		lookup:   s.hit,
		route:    s.route,
	}
	script.lookupFor = scriptCode(script) // a copy with other Python loses the Go-side hit
	return script
}

// route is CacheGet's routing key (Script.route): the cache key of the URL, the first argument, read as
// go-redis sends it (a string, *string, []byte, or an encoding.BinaryMarshaler such as *url.URL). Any
// such value is routed, valid URL or not: cache_get.py refuses a bad URL on whichever shard owns its
// key. Other argument types (numbers, nil) are no URL: they get the plain RG.TRIGGER, which cache_get
// refuses before touching any key.
func (s cacheGetSettings) route(args []any) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	switch v := args[0].(type) {
	case string:
		return cacheGetKey(s.keyPrefix, v), true
	case *string:
		if v != nil {
			return cacheGetKey(s.keyPrefix, *v), true
		}
	case []byte:
		return cacheGetKey(s.keyPrefix, string(v)), true
	case encoding.BinaryMarshaler:
		if b, err := v.MarshalBinary(); err == nil {
			return cacheGetKey(s.keyPrefix, string(b)), true
		}
	}
	return "", false
}

// cacheGetMaxURLLen is CACHE_GET_MAX_URL_LEN of cache_get.py: longer URLs are refused.
const cacheGetMaxURLLen = 8192

// hit is CacheGet's Go-side fast path (Script.lookup): a call whose key holds a body is answered with
// one GET of that key, no trigger. It answers only calls the server function would answer with that
// same body, and leaves every other call to the trigger (ok false), which then decides exactly as before:
//
//   - the URL must pass the checks cache_get.py makes before a hit — scheme http or https, a host, a
//     port other than 0, at most 8192 characters without spaces or control characters, and the host in
//     this CacheGet's allowlist — as judged by a deliberately narrower reading (ASCII only, no
//     credentials, no '%' in the host, no backslash): a URL it is unsure of goes to the trigger. So a
//     narrowed allowlist refuses stored bodies of hosts it no longer allows on both paths;
//   - expiry and timeout arguments, when given, must be ones cache_get.py accepts (digits; a timeout
//     above 0), so that a bad argument fails a hit as it fails on the server;
//   - a missing key (redis.Nil), or any error of the GET, goes to the trigger.
//
// What it returns is what cache_get stored with one SET (never a partial value) and Redis has not
// expired, byte for byte.
func (s cacheGetSettings) hit(ctx context.Context, rdb redis.UniversalClient, args []any) (any, bool) {
	if len(args) == 0 || len(args) > 3 {
		return nil, false
	}
	var url string
	switch v := args[0].(type) {
	case string:
		url = v
	case []byte:
		url = string(v)
	default:
		return nil, false
	}
	if !s.fastURL(url) {
		return nil, false
	}
	for i, a := range args[1:] {
		if !cacheMillisArg(a, i == 1) {
			return nil, false
		}
	}
	v, err := rdb.Get(ctx, cacheGetKey(s.keyPrefix, url)).Result()
	if err != nil {
		return nil, false
	}
	return []any{v}, true
}

// fastURL reports whether cache_get.py would accept url with these settings, for the URLs whose
// reading by Python's urlsplit is certain; false for the others (the trigger decides).
func (s cacheGetSettings) fastURL(url string) bool {
	if url == "" || len(url) > cacheGetMaxURLLen {
		return false
	}
	for i := 0; i < len(url); i++ {
		if c := url[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	i := strings.Index(url, "://")
	if i < 0 || !(strings.EqualFold(url[:i], "http") || strings.EqualFold(url[:i], "https")) {
		return false
	}
	netloc := url[i+3:]
	if j := strings.IndexAny(netloc, "/?#"); j >= 0 {
		netloc = netloc[:j]
	}
	host, port, ok := cacheFastHostPort(netloc)
	if !ok {
		return false
	}
	if port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return false
		}
	}
	return s.hostAllowed(strings.ToLower(host))
}

// cacheFastHostPort splits the host[:port] part of a URL whose host the fast path reads exactly as
// cache_get.py's urlsplit does: a name or IPv4 address of plain characters (no '%', ':' or '@'), or an
// IPv6 address in brackets (no zone); an optional port of 1-5 digits. ok is false for anything else.
func cacheFastHostPort(netloc string) (host, port string, ok bool) {
	rest := ""
	if strings.HasPrefix(netloc, "[") {
		end := strings.IndexByte(netloc, ']')
		if end < 0 {
			return "", "", false
		}
		host, rest = netloc[1:end], netloc[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", "", false
		}
	} else {
		host = netloc
		if i := strings.IndexByte(netloc, ':'); i >= 0 {
			host, rest = netloc[:i], netloc[i:]
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._~!$&'()*+,;=-", c) >= 0) {
				return "", "", false
			}
		}
	}
	if host == "" {
		return "", "", false
	}
	if rest != "" {
		port = rest[1:]
		if rest[0] != ':' || len(port) < 1 || len(port) > 5 {
			return "", "", false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return "", "", false
			}
		}
	}
	return host, port, true
}

// hostAllowed is _cache_get_host_allowed of cache_get.py for an ASCII host, with the allowlist entries
// as renderCacheGet writes them. Entries that are not ASCII never match here (Python and Go lower-case
// them differently): their hosts go to the trigger.
func (s cacheGetSettings) hostAllowed(host string) bool {
	if len(s.allowHosts) == 0 {
		return true
	}
	host = strings.TrimRight(host, ".")
	for _, a := range s.allowHosts {
		a = strings.TrimRight(strings.ToLower(strings.TrimSpace(a)), ".")
		if !isASCII(a) {
			continue
		}
		if strings.HasPrefix(a, "*.") {
			if strings.HasSuffix(host, a[1:]) {
				return true
			}
		} else if host == a {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// cacheMillisArg reports whether cache_get.py certainly accepts a as its expiry (timeout: false) or
// timeout argument: empty (go-redis sends nil as "") for the default, or decimal digits, not all zeros for
// a timeout.
func cacheMillisArg(a any, timeout bool) bool {
	var text string
	switch v := a.(type) {
	case nil:
		return true
	case string:
		text = v
	case []byte:
		text = string(v)
	case int:
		text = strconv.Itoa(v)
	case int64:
		text = strconv.FormatInt(v, 10)
	case uint64:
		text = strconv.FormatUint(v, 10)
	default:
		return false
	}
	if text == "" {
		return true
	}
	nonzero := false
	for i := 0; i < len(text); i++ {
		if text[i] < '0' || text[i] > '9' {
			return false
		}
		nonzero = nonzero || text[i] != '0'
	}
	return nonzero || !timeout
}

// CacheGetKey is the key under which cache_get, built with opts, stores the body of url:
// <prefix>{<hex SHA-1 of url>}. Deleting it makes the next call download url again.
func CacheGetKey(url string, opts ...CacheOption) string {
	s := cacheGetSettings{keyPrefix: DefaultCacheKeyPrefix}
	for _, o := range opts {
		o(&s)
	}
	if s.keyPrefix == "" {
		s.keyPrefix = DefaultCacheKeyPrefix
	}
	checkCacheKeyPrefix(s.keyPrefix)
	return cacheGetKey(s.keyPrefix, url)
}

// cacheGetKey is _cache_get_key of cache_get.py: prefix{hex SHA-1 of url}.
func cacheGetKey(prefix, url string) string {
	sum := sha1.Sum([]byte(url))
	var b strings.Builder
	b.Grow(len(prefix) + 2 + 2*len(sum))
	b.WriteString(prefix)
	b.WriteByte('{')
	var h [2 * sha1.Size]byte
	hex.Encode(h[:], sum[:])
	b.Write(h[:])
	b.WriteByte('}')
	return b.String()
}

// checkCacheKeyPrefix panics on a prefix that would break the per-URL hash tag.
func checkCacheKeyPrefix(prefix string) {
	if !utf8.ValidString(prefix) {
		panic(fmt.Sprintf("gears: CacheKeyPrefix %q is not valid UTF-8", prefix))
	}
	if strings.ContainsAny(prefix, "{}") {
		panic(fmt.Sprintf("gears: CacheKeyPrefix %q contains a brace; the hash tag {<SHA-1 of the URL>} must be the key's first", prefix))
	}
}

// renderCacheGet replaces the settings block of cache_get.py with s.
func renderCacheGet(s cacheGetSettings) string {
	begin := strings.Index(cacheGetSource, cacheGetSettingsBegin)
	end := strings.Index(cacheGetSource, cacheGetSettingsEnd)
	if begin < 0 || end < begin {
		// The embedded file is ours; a test guards the markers.
		panic("gears: cache_get.py lost its settings markers")
	}
	var b strings.Builder
	b.WriteString(cacheGetSource[:begin])
	b.WriteString(cacheGetSettingsBegin + " (rendered by NewCacheGet) ---\n")
	b.WriteString("CACHE_GET_KEY_PREFIX = " + pyString(s.keyPrefix) + "\n")
	b.WriteString("CACHE_GET_EXPIRY_MS = " + strconv.FormatInt(durationMillis(s.expiry), 10) + "\n")
	b.WriteString("CACHE_GET_TIMEOUT_MS = " + strconv.FormatInt(durationMillis(s.timeout), 10) + "\n")
	b.WriteString("CACHE_GET_MAX_BYTES = " + strconv.FormatInt(s.maxBytes, 10) + "\n")
	b.WriteString("CACHE_GET_ALLOW_HOSTS = [")
	for i, h := range s.allowHosts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyString(strings.ToLower(strings.TrimSpace(h))))
	}
	b.WriteString("]\n")
	b.WriteString("CACHE_GET_ALLOW_PRIVATE_NETWORKS = " + pyBool(s.allowPrivate) + "\n")
	b.WriteString(cacheGetSource[end:])
	return b.String()
}

// durationMillis is d in whole milliseconds, rounded up so that a positive duration never becomes 0
// (which would mean "no expiry"); 0 for d <= 0.
func durationMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// pyBool is b as a Python literal.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// pyString quotes a setting as a Python literal (pyLiteral). Settings are checked to be valid UTF-8
// before rendering (NewCacheGet panics otherwise, like on other programming errors in its options).
func pyString(s string) string {
	lit, err := pyLiteral(s)
	if err != nil {
		panic(err)
	}
	return lit
}
