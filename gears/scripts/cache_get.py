# cache_get: a read-through cache for HTTP resources that lives next to the data.
#
#   RG.TRIGGER cache_get <url> [expiry_ms] [timeout_ms]               ->  the body bytes
#   RG.TRIGGERONKEY cache_get <key> <url> [expiry_ms] [timeout_ms]    ->  the same, on a Redis Cluster
#
# <key> is where the body is stored: CACHE_GET_KEY_PREFIX + '{' + hex SHA-1 of the URL's UTF-8 bytes + '}'.
# On a Redis Cluster a client routes RG.TRIGGERONKEY to the shard that owns <key> (it is the command's
# key), so that cache_get runs there (mode async_local) and finds and stores the body on its own shard;
# every caller of one URL reaches the same shard, whose single download serves them all. The key is
# checked against the URL: no caller can store a URL's body under another key.
#
# A hit answers from Redis without touching the origin. On a miss exactly one download per URL runs at a
# time on this shard, however many callers ask: the first caller (the leader) starts it on a thread of its
# own and every later caller joins it, each waiting on a gearsFuture that the download thread resolves. No
# caller polls and none runs a blocking command (those do not block inside a gear function anyway).
#
# Shape, and why (RedisGears 1.2, gears-spec.md section 8):
#   * cache_get runs in the registration's first step and returns the bytes (hit) or a gearsFuture (miss).
#   * The download thread touches NO Redis: no execute(), no atomic(), not even log(). execute()/atomic()
#     from a thread the script started takes the Redis lock while holding the GIL and deadlocks a real
#     RedisGears 1.2 as soon as executions are being resumed at the same time. The thread only does HTTP
#     and resolves futures with continueRun(outcome).
#   * cache_get_store runs as the registration's next step (Script.Then) on RedisGears' own threads: the
#     leader's execution stores the body (SET ... PX, once) and logs; a failure is raised there with
#     flat_error so every waiter gets exactly the same error text.
#   * No module-level locks: register() pickles the callbacks with the globals they reference and a
#     threading.Lock cannot be pickled. Locks are created inside calls (per in-flight entry), never
#     serialized. Cross-call state lives in plain dicts.
#
# Safety: any client that may call RG.TRIGGER chooses the URL, and the server sits inside a private
# network. A download connects only to public addresses unless the allowlist names the host literally or
# private networks are allowed (see "addresses" below); the check is on the address connected to, for
# every redirect hop, on misses only (a hit is served without it).
#
# Valid Python 3.7 (RedisGears 1.2 embeds 3.7): no walrus, no positional-only parameters, no f-strings.

import hashlib
import ipaddress
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

# --- cache_get settings: NewCacheGet (cacheget.go) rewrites the lines between these markers ---
CACHE_GET_KEY_PREFIX = 'cache_get:'
CACHE_GET_EXPIRY_MS = 3600000
CACHE_GET_TIMEOUT_MS = 10000
CACHE_GET_MAX_BYTES = 33554432
CACHE_GET_ALLOW_HOSTS = []
CACHE_GET_ALLOW_PRIVATE_NETWORKS = False
# --- end of cache_get settings ---

# How many redirects a download follows; every hop is checked like the URL itself.
CACHE_GET_MAX_REDIRECTS = 5
# A URL longer than this is refused: it would only serve to bloat logs and keys' inputs.
CACHE_GET_MAX_URL_LEN = 8192
# A finished download whose store step never ran (its execution was dropped) stops serving waiters
# after this long, so a lost store cannot pin a body in memory forever.
CACHE_GET_STALE_ENTRY_S = 60.0

# Cross-call state of this registration, shared by every call on this shard:
#   'inflight': key -> entry of the download in flight for that key (see _new_entry)
#   'counter':  request numbers for the log (created on first use, so nothing unpicklable is in here at
#               register() time)
_CACHE_GET_STATE = {'inflight': {}}


def _cache_get_fail(msg):
    # gears.flat_error makes the execution's error text exactly msg (no traceback list), so every caller
    # in every language sees "cache_get: GET http://...: status 404" and nothing else. It is the
    # exception class RedisGears 1.2 puts in every session's globals; `raise flat_error(msg)` also does
    # the right thing were it a function that raises.
    try:
        fe = flat_error
    except NameError:
        raise Exception(msg)
    raise fe(msg)


def _cache_get_next_request():
    counter = _CACHE_GET_STATE.get('counter')
    if counter is None:
        # setdefault is atomic for a dict with str keys: concurrent first calls share one counter.
        counter = _CACHE_GET_STATE.setdefault('counter', [0, None])
    # The count is for the log only; a rare lost increment under concurrency would be harmless, but
    # next() on an iterator would not pickle on every Python, so a list cell it is.
    counter[0] += 1
    return counter[0]


def _cache_get_host_allowed(host):
    if not CACHE_GET_ALLOW_HOSTS:
        return True
    host = host.lower().rstrip('.')
    for allowed in CACHE_GET_ALLOW_HOSTS:
        allowed = allowed.lower().rstrip('.')
        if allowed.startswith('*.'):
            if host.endswith(allowed[1:]):
                return True
        elif host == allowed:
            return True
    return False


def _cache_get_host_named(host):
    # True when an allowlist entry names host literally (not through a wildcard): the one way, besides
    # CACHE_GET_ALLOW_PRIVATE_NETWORKS, to fetch from a private address. A wildcard never does: who
    # controls the DNS of *.example.com could point a name at 127.0.0.1.
    host = host.lower().rstrip('.')
    for allowed in CACHE_GET_ALLOW_HOSTS:
        allowed = allowed.lower().rstrip('.')
        if not allowed.startswith('*.') and host == allowed:
            return True
    return False


def _cache_get_check_url(url):
    """Returns None when url may be fetched, else the reason it may not."""
    if not isinstance(url, str) or url == '':
        return 'not a URL'
    if len(url) > CACHE_GET_MAX_URL_LEN:
        return 'URL longer than %d characters' % CACHE_GET_MAX_URL_LEN
    for ch in url:
        if ch <= ' ' or ch == '\x7f':
            return 'URL contains whitespace or control characters'
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return 'not a URL (%s)' % e
    scheme = parts.scheme.lower()
    if scheme == '':
        return 'not a URL'
    if scheme not in ('http', 'https'):
        return 'scheme "%s" is not allowed (only http and https)' % scheme
    if parts.netloc == '':
        return 'not a URL'
    host = parts.hostname
    if not host:
        return 'URL has no host'
    if port == 0:
        return 'port 0 is not allowed'
    if not _cache_get_host_allowed(host):
        return 'host "%s" is not in the allowlist' % host
    return None


# --- addresses: cache_get is not a door into the server's network ---
#
# Any client that may call RG.TRIGGER chooses the URL, and the server usually sits deep in a private
# network. So by default a download may only connect to a public address: every address a host resolves
# to is checked, the connection goes to the checked address itself (no second lookup that DNS rebinding
# could answer differently), and so does every redirect hop. Refused, unless CACHE_GET_ALLOW_HOSTS names
# the host literally or CACHE_GET_ALLOW_PRIVATE_NETWORKS is set:
#
# (network, what it is). Written out rather than taken from ipaddress' is_private/is_global, whose
# answers changed between Python versions (3.7's miss some of these ranges).
_CACHE_GET_NOT_PUBLIC = (
    ('0.0.0.0/8', 'unspecified'),  # 0.0.0.0 connects to this host on Linux
    ('10.0.0.0/8', 'private'),
    ('100.64.0.0/10', 'shared'),
    ('127.0.0.0/8', 'loopback'),
    ('169.254.0.0/16', 'link-local'),  # cloud metadata endpoints (169.254.169.254) live here
    ('172.16.0.0/12', 'private'),
    ('192.0.0.0/24', 'IETF protocol assignments'),
    ('192.0.2.0/24', 'documentation'),
    ('192.168.0.0/16', 'private'),
    ('198.18.0.0/15', 'benchmarking'),
    ('198.51.100.0/24', 'documentation'),
    ('203.0.113.0/24', 'documentation'),
    ('224.0.0.0/4', 'multicast'),
    ('255.255.255.255/32', 'broadcast'),
    ('240.0.0.0/4', 'reserved'),
    ('::/128', 'unspecified'),
    ('::1/128', 'loopback'),
    ('::/96', 'IPv4-compatible'),  # deprecated; no public host has one
    ('64:ff9b:1::/48', 'local NAT64'),
    ('100::/64', 'discard-only'),
    ('2001:db8::/32', 'documentation'),
    ('fc00::/7', 'unique-local'),
    ('fe80::/10', 'link-local'),
    ('fec0::/10', 'site-local'),
    ('ff00::/8', 'multicast'),
)
# IPv6 ranges that carry an IPv4 address: that address is checked as well. (network, name, where the
# IPv4 address sits: how far to shift the 128-bit value right).
_CACHE_GET_V4_IN_V6 = (
    ('::ffff:0:0/96', 'IPv4-mapped', 0),
    ('64:ff9b::/96', 'NAT64', 0),
    ('2002::/16', '6to4', 80),
)


def _cache_get_networks():
    nets = _CACHE_GET_STATE.get('nets')
    if nets is None:
        # Parsed on first use, not at import: register() pickles this module's globals.
        nets = ([(ipaddress.ip_network(n), what) for n, what in _CACHE_GET_NOT_PUBLIC],
                [(ipaddress.ip_network(n), what, shift) for n, what, shift in _CACHE_GET_V4_IN_V6])
        _CACHE_GET_STATE['nets'] = nets
    return nets


def _cache_get_not_public(addr):
    """Returns why addr (an ipaddress address) is not public, e.g. 'loopback 127.0.0.0/8', else None."""
    table, embedded = _cache_get_networks()
    for net, what in table:
        if addr.version == net.version and addr in net:
            return '%s %s' % (what, net)
    if addr.version == 6:
        for net, what, shift in embedded:
            if addr in net:
                why = _cache_get_not_public(ipaddress.IPv4Address((int(addr) >> shift) & 0xffffffff))
                if why is not None:
                    return '%s %s' % (what, why)
    return None


def _cache_get_addrinfo(host, port, numeric):
    # The one place cache_get resolves names (the harness stubs it). numeric: AI_NUMERICHOST, never DNS;
    # it reads every spelling of an address (2130706433, 0x7f000001, 0177.0.0.1, 127.1, 127.000.000.001,
    # ::ffff:127.0.0.1) exactly as the OS does when it connects, which ipaddress.ip_address() does not.
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                              socket.AI_NUMERICHOST if numeric else 0)


def _cache_get_ascii_host(host):
    # The host as it goes on the wire (DNS, Host header, TLS name): IDNA like requests encodes it.
    try:
        host.encode('ascii')
        return host
    except UnicodeEncodeError:
        pass
    try:
        import idna  # a dependency of requests
        return idna.encode(host, uts46=True).decode('ascii')
    except Exception:
        return host.encode('idna').decode('ascii')


def _cache_get_addresses(url, numeric):
    """Resolves url's host once and checks every address.

    Returns ('ok', addresses, parts) with the addresses to connect to in order, ('refused', why, None),
    ('unresolved', message, None), or, with numeric, ('name', None, None) when the host is a name (left to
    the download thread: a DNS lookup must not run on a RedisGears thread, let alone Redis' own).
    """
    parts = urlsplit(url)
    host = parts.hostname.replace('%25', '%')  # an IPv6 zone: [fe80::1%25eth0]
    try:
        wire = _cache_get_ascii_host(host)
    except Exception:
        return ('refused', 'host "%s" is not a valid name' % host, None)
    port = parts.port or (443 if parts.scheme.lower() == 'https' else 80)
    try:
        infos = _cache_get_addrinfo(wire, port, numeric)
    except socket.gaierror as e:
        if numeric:
            return ('name', None, None)
        return ('unresolved', str(e), None)
    except (UnicodeError, ValueError) as e:
        return ('refused', 'host "%s" is not a valid name (%s)' % (host, e), None)
    addresses = []
    for info in infos:
        a = info[4][0]
        if a not in addresses:
            addresses.append(a)
    if not addresses:
        return ('unresolved', 'no address for host "%s"' % host, None)
    if not (CACHE_GET_ALLOW_PRIVATE_NETWORKS or _cache_get_host_named(host)):
        # Every address, not only the one connected to first: a name with one private address among
        # public ones is refused as a whole.
        for a in addresses:
            try:
                why = _cache_get_not_public(ipaddress.ip_address(a.split('%', 1)[0]))
            except ValueError:
                why = 'not an IP address'
            if why is not None:
                if a == host:
                    return ('refused', 'address %s is not public (%s)' % (a, why), None)
                return ('refused', 'host "%s" resolves to %s, which is not public (%s)' % (host, a, why), None)
    return ('ok', addresses, parts)


def _cache_get_shown(url):
    shown = url if isinstance(url, str) else ''
    if len(shown) > 200:
        shown = shown[:200] + '...'
    return shown


def _cache_get_ms_arg(name, value, default, allow_zero):
    if value is None or value == '' or value == b'':
        return default
    if isinstance(value, (bytes, bytearray)):
        value = value.decode('utf-8', 'replace')
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or (n == 0 and not allow_zero):
        _cache_get_fail('cache_get: %s must be a whole number of milliseconds%s, got "%s"'
                        % (name, ' (0 = no expiry)' if allow_zero else ' above 0', value))
    return n


def _cache_get_key(url):
    # Own namespace plus a hash tag per URL: a Redis Cluster keeps each entry on one shard, and since the
    # key is derived from the URL's SHA-1 no argument can name a key that cache_get did not write.
    return CACHE_GET_KEY_PREFIX + '{' + hashlib.sha1(url.encode('utf-8')).hexdigest() + '}'


def _cache_get_seconds(ms):
    s = '%.3f' % (ms / 1000.0)
    return s.rstrip('0').rstrip('.') + 's'


def _cache_get_conn_reason(e):
    # requests wraps the socket error several levels deep; the innermost "[Errno 111] Connection
    # refused" is what a caller wants to read.
    text = str(e)
    i = text.find('[Errno')
    if i >= 0:
        j = text.find("'", i)
        if j < 0:
            j = text.find(')', i)
        return text[i:j] if j > i else text[i:]
    # "HTTPSConnectionPool(host='203.0.113.7', ...): Max retries exceeded ... (Caused by SSLError(...))":
    # the cause is the news; the pool names the address connected to, not the URL's host.
    i = text.find('(Caused by ')
    if i >= 0 and text.endswith(')'):
        return text[i + len('(Caused by '):-1]
    return text or e.__class__.__name__


def _cache_get_tls_adapter(name):
    """A requests transport adapter whose TLS connections send SNI for name and check the certificate
    against name, whatever address the URL carries.

    The URL names the checked IP so that nothing resolves the host again; TLS must still be about the
    host. HTTPAdapter.init_poolmanager is requests' documented hook for connection-pool settings (its
    own docs' example overrides it), and urllib3 passes server_hostname (SNI, and the name the
    certificate is matched against) and assert_hostname (the name matched) through to every HTTPS
    connection: both long-stable, in urllib3 since 1.24 (2018) through 2.x and in requests 2.x, so this
    works with whatever versions pip installs next to Python 3.7 on a RedisGears 1.2 server. The class
    is made per download rather than at module level so that register() has no class to pickle.
    """
    class PinnedTLSAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs['server_hostname'] = name
            kwargs['assert_hostname'] = name
            return requests.adapters.HTTPAdapter.init_poolmanager(self, *args, **kwargs)
    return PinnedTLSAdapter()


def _cache_get_request(parts, addresses, deadline):
    """GETs the URL in parts from the first of addresses (already checked) that accepts a connection.

    The host's name goes in the Host header and, for https, in SNI and the certificate check; the
    connection goes to the address. Proxies from the environment still apply: they then fetch the
    address, not the name. Raises requests' exceptions like requests.get.
    """
    scheme = parts.scheme.lower()
    host = _cache_get_ascii_host(parts.hostname.replace('%25', '%'))
    netloc_host = '[%s]' % host if ':' in host else host
    port = parts.port
    host_header = netloc_host if port is None or port == (443 if scheme == 'https' else 80) \
        else '%s:%d' % (netloc_host, port)
    userinfo = parts.netloc.rpartition('@')[0] if '@' in parts.netloc else ''
    last = None
    for a in addresses:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise requests.exceptions.Timeout()
        literal = '[%s]' % a.replace('%', '%25') if ':' in a else a
        netloc = (userinfo + '@' if userinfo else '') + literal + (':%d' % port if port is not None else '')
        target = urlunsplit((scheme, netloc, parts.path, parts.query, ''))
        with requests.Session() as session:  # as requests.get does; a streamed response outlives it
            if scheme == 'https':
                session.mount('https://', _cache_get_tls_adapter(host))
            try:
                return session.get(target, headers={'Host': host_header}, stream=True,
                                   allow_redirects=False, timeout=(remaining, remaining))
            except requests.exceptions.ConnectionError as e:
                last = e  # the next checked address, as a client would (GET is safe to repeat)
    raise last


def _cache_get_download(url, deadline):
    """Fetches url; returns ('ok', body, status) or ('fail', message, status). Touches no Redis."""
    what = 'cache_get: GET %s' % url
    current = url
    resp = None
    try:
        for _hop in range(CACHE_GET_MAX_REDIRECTS + 1):
            # Every hop: resolve once, check every address, connect to a checked one.
            kind, addresses, parts = _cache_get_addresses(current, False)
            if kind == 'refused':
                if current == url:
                    return ('fail', 'cache_get: refused "%s": %s' % (_cache_get_shown(url), addresses), None)
                return ('fail', '%s: redirect to %s refused: %s' % (what, current, addresses), None)
            if kind != 'ok':
                return ('fail', '%s: connection failed: %s' % (what, addresses), None)
            resp = _cache_get_request(parts, addresses, deadline)
            if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get('Location'):
                target = urljoin(current, resp.headers.get('Location'))
                resp.close()
                resp = None
                why = _cache_get_check_url(target)
                if why is not None:
                    return ('fail', '%s: redirect to %s refused: %s' % (what, target, why), None)
                current = target
                continue
            break
        else:
            return ('fail', '%s: more than %d redirects' % (what, CACHE_GET_MAX_REDIRECTS), None)
        status = resp.status_code
        if status != 200:
            return ('fail', '%s: status %d' % (what, status), status)
        declared = resp.headers.get('Content-Length')
        if declared is not None and declared.isdigit() and int(declared) > CACHE_GET_MAX_BYTES:
            return ('fail', '%s: body of %s bytes is larger than the limit of %d bytes'
                    % (what, declared, CACHE_GET_MAX_BYTES), status)
        body = bytearray()
        for chunk in resp.iter_content(65536):
            body.extend(chunk)
            if len(body) > CACHE_GET_MAX_BYTES:
                return ('fail', '%s: body larger than the limit of %d bytes' % (what, CACHE_GET_MAX_BYTES),
                        status)
            if time.time() > deadline:
                raise requests.exceptions.Timeout()
        return ('ok', bytes(body), status)
    except requests.exceptions.Timeout:
        return ('fail', None, None)  # the caller words the timeout: it knows the limit
    except requests.exceptions.ConnectionError as e:
        return ('fail', '%s: connection failed: %s' % (what, _cache_get_conn_reason(e)), None)
    except requests.exceptions.RequestException as e:
        return ('fail', '%s: %s' % (what, _cache_get_conn_reason(e)), None)
    except Exception as e:  # never let the thread die without resolving its waiters
        return ('fail', '%s: %s: %s' % (what, e.__class__.__name__, e), None)
    finally:
        if resp is not None:
            resp.close()


def _cache_get_new_entry(url, key, expiry_ms, timeout_ms):
    now = time.time()
    return {
        'lock': threading.Lock(),  # created per call: never pickled
        'url': url,
        'key': key,
        'expiry_ms': expiry_ms,
        'timeout_ms': timeout_ms,
        'started': now,
        'deadline': now + timeout_ms / 1000.0,
        'waiters': [],  # [{'future', 'leader', 'resolved'}], guarded by 'lock'
        'done': False,  # guarded by 'lock'
        'outcome': None,  # ('ok', body, status) / ('fail', message, status) once done
        'done_at': 0.0,
        'timer': None,
    }


def _cache_get_resolve(waiter, value):
    # RedisGears refuses to resolve a future before the step that created it has returned it
    # ("Can not handle future untill it returned from the callback"). A download that fails at once, or
    # a waiter that joined just before the outcome, can get here first: try again until the step has
    # returned. Any other error means the execution is gone (aborted, dropped): nobody is left to tell.
    # Nothing is logged: this runs on our own thread, where even log() is best avoided on RedisGears 1.2.
    for _ in range(10000):
        try:
            waiter['future'].continueRun(value)
            return True
        except Exception as e:
            if 'returned' not in str(e):
                return False
        time.sleep(0.001)
    return False


def _cache_get_finish(inflight, entry, outcome):
    """Records the download's outcome once and wakes every waiter. Runs on our own threads only."""
    with entry['lock']:
        if entry['done']:
            return
        entry['done'] = True
        entry['done_at'] = time.time()
        if outcome[0] == 'fail' and outcome[1] is None:
            outcome = ('fail', 'cache_get: GET %s: timed out after %s'
                       % (entry['url'], _cache_get_seconds(entry['timeout_ms'])), None)
        entry['outcome'] = outcome
        if outcome[0] != 'ok' and inflight.get(entry['key']) is entry:
            # A failure is never cached: drop the entry before anyone hears about it, so that a caller
            # who retries after its error starts a new download. (A success stays until the leader's
            # store step has written the key; callers in between get the body from the entry.)
            del inflight[entry['key']]
        waiters = [w for w in entry['waiters'] if not w['resolved']]
        for w in waiters:
            w['resolved'] = True
        timer = entry['timer']
    if timer is not None:
        timer.cancel()
    for w in waiters:
        if not _cache_get_resolve(w, _cache_get_message(inflight, entry, w['leader'])) and w['leader']:
            # The leader's execution is gone (aborted, dropped), so nobody will store the body: drop the
            # entry and let the next caller download again rather than serve it from memory.
            if inflight.get(entry['key']) is entry:
                inflight.pop(entry['key'], None)


def _cache_get_message(inflight, entry, leader):
    # What the next step (cache_get_store) receives. Only the leader's execution stores.
    outcome = entry['outcome']
    msg = {'cache_get': outcome[0], 'url': entry['url']}
    if outcome[0] == 'ok':
        msg['body'] = outcome[1]
    else:
        msg['error'] = outcome[1]
    if leader:
        msg['leader'] = True
        msg['inflight'] = inflight
        msg['entry'] = entry
    return msg


def _cache_get_expire_waiter(entry, waiter):
    # A waiter that asked for a shorter timeout than the download in flight gives up on its own.
    with entry['lock']:
        if waiter['resolved']:
            return
        waiter['resolved'] = True
    _cache_get_resolve(waiter, {'cache_get': 'fail', 'url': entry['url'],
                                'error': 'cache_get: GET %s: timed out after %s'
                                % (entry['url'], _cache_get_seconds(waiter['timeout_ms']))})


def _cache_get_run(inflight, entry):
    outcome = _cache_get_download(entry['url'], entry['deadline'])
    _cache_get_finish(inflight, entry, outcome)


def _cache_get_join(entry, leader, timeout_ms):
    """Adds a waiter to entry (caller holds entry['lock']) and returns its future."""
    f = gearsFuture()
    waiter = {'future': f, 'leader': leader, 'resolved': False, 'timeout_ms': timeout_ms}
    entry['waiters'].append(waiter)
    if not leader and time.time() + timeout_ms / 1000.0 < entry['deadline'] - 0.001:
        t = threading.Timer(timeout_ms / 1000.0, _cache_get_expire_waiter, args=(entry, waiter))
        t.daemon = True
        t.start()
    return f


def _cache_get_idle_cap(timeout_ms):
    # RedisGears aborts an execution that waits on a future longer than ExecutionMaxIdleTime (5 s by
    # default) with "Execution max idle reached". Keep the download's deadline well inside it, so that
    # callers get cache_get's own timeout error and the entry is cleaned up by us.
    idle = None
    try:
        # configGet() only knows the "extra" (user-defined) settings; the built-in one is read with
        # RG.CONFIGGET, which execute() reaches like any other command.
        idle = int(execute('RG.CONFIGGET', 'ExecutionMaxIdleTime')[0])
    except Exception:
        idle = None
    if idle is None or idle <= 0:
        idle = 5000  # RedisGears' default
    cap = int(idle * 0.9) - 100
    return max(min(timeout_ms, cap), 1)


def _cache_get_wait(entry, n, url, timeout_ms):
    """Joins entry's download if it is still in flight: returns the caller's future, else None."""
    if entry is None:
        return None
    with entry['lock']:
        if entry['done']:
            return None
        log('cache_get: request #%d %s: miss, waiting for the download in flight' % (n, url), level='verbose')
        return _cache_get_join(entry, False, timeout_ms)


def _cache_get_refuse(n, url, why):
    log('cache_get: request #%d refused: %s' % (n, why), level='warning')
    _cache_get_fail('cache_get: refused "%s": %s' % (_cache_get_shown(url), why))


# The URLs that passed _cache_get_check_url, each with its key, so that a hit neither parses its URL
# again nor hashes it. Whether a URL passes depends only on the URL and this code's settings, and other
# settings are other code (NewCacheGet writes them into the source; Command upgrades the session, which
# starts from fresh globals), so an entry never outlives the rule that admitted it: a narrowed allowlist
# refuses its old URLs at once, stored bodies included. Bounded: emptied when full (a plain dict, so
# that register() can pickle it; dict operations are atomic under the GIL).
_CACHE_GET_KEYS = {}
CACHE_GET_KEYS_MAX = 4096


def cache_get(url=None, expiry=None, timeout=None, *more):
    """Returns the body of url (bytes), downloading it at most once at a time per URL on this shard.

    expiry: milliseconds the stored body lives (0 = no expiry); default CACHE_GET_EXPIRY_MS.
    timeout: milliseconds a download may take, at most CACHE_GET_TIMEOUT_MS (the default).
    Called as RG.TRIGGERONKEY cache_get <key> <url> [expiry] [timeout], the arguments are shifted by one:
    the first is the key, which must be the URL's.
    """
    given = None
    if expiry is not None and url.__class__ is str and url.startswith(CACHE_GET_KEY_PREFIX + '{') \
            and not _cache_get_ms_like(expiry):
        # The keyed form (RG.TRIGGERONKEY): a URL is never a number of milliseconds, while the plain
        # form's second argument always is one (or empty).
        given, url, expiry = url, expiry, timeout
        timeout = more[0] if more else None
        more = more[1:]
    if more:
        _cache_get_fail('cache_get: too many arguments (RG.TRIGGER cache_get <url> [expiry_ms] [timeout_ms], '
                        'or RG.TRIGGERONKEY cache_get <key> <url> [expiry_ms] [timeout_ms])')
    # A hit does only what a hit needs: a dict lookup for the URL's check and key, one for a download in
    # flight (whose callers join it without any Redis call), one GET, the bytes. No request number, no
    # address check (that is about connecting, and a hit connects nowhere), no log line (it would cost
    # more than the hit itself), no lock. Bad expiry/timeout arguments fail a hit as they fail a miss.
    key = _CACHE_GET_KEYS.get(url)
    if key is not None and key not in _CACHE_GET_STATE['inflight']:
        if given is not None and given != key:
            _cache_get_wrong_key(given, url, key)
        if expiry is not None or timeout is not None:
            _cache_get_limits(expiry, timeout)
        try:
            cached = execute('GET', key)
        except Exception as e:  # inline rather than _cache_get_lookup: a hit is the hot path
            _cache_get_foreign(e, key, url)
            raise
        if cached is not None:
            # execute() gives str for UTF-8 values, bytearray otherwise (gears-spec 8); bytes either way:
            # with convertToStr=False a str reply that starts with '+' or '-' would become a status or
            # an error.
            if cached.__class__ is str:
                return cached.encode('utf-8')
            return bytes(cached)
    return _cache_get_miss(url, expiry, timeout, key, given)


def _cache_get_ms_like(value):
    # True for what the plain form's expiry argument looks like: empty, or digits.
    if value.__class__ is not str:
        return True
    return value == '' or value.isdigit()


def _cache_get_wrong_key(given, url, key):
    _cache_get_fail('cache_get: key "%s" is not the key of "%s" (RG.TRIGGERONKEY cache_get <key> <url>: '
                    'the key must be %s{<hex SHA-1 of the URL>}, here "%s")'
                    % (given, _cache_get_shown(url), CACHE_GET_KEY_PREFIX, key))


def _cache_get_lookup(key, url):
    # GET of the URL's key (the miss path; the hit path inlines it).
    try:
        return execute('GET', key)
    except Exception as e:
        _cache_get_foreign(e, key, url)
        raise


def _cache_get_foreign(e, key, url):
    # On a Redis Cluster a shard refuses execute() of a key it does not own ("Operation not permitted":
    # RedisModule_Call's EPERM): the call reached the wrong shard; say how to reach the right one.
    # Returns for any other error, which the caller raises as it is.
    if 'not permitted' in str(e):
        _cache_get_fail('cache_get: the key of "%s" (%s) is on another shard of this Redis Cluster: call '
                        'RG.TRIGGERONKEY cache_get %s <url> through a cluster client, which routes it '
                        'to the shard that owns the key' % (_cache_get_shown(url), key, key))


def _cache_get_limits(expiry, timeout):
    expiry_ms = _cache_get_ms_arg('expiry', expiry, CACHE_GET_EXPIRY_MS, True)
    timeout_ms = min(_cache_get_ms_arg('timeout', timeout, CACHE_GET_TIMEOUT_MS, False), CACHE_GET_TIMEOUT_MS)
    return expiry_ms, timeout_ms


def _cache_get_bytes(cached):
    return cached.encode('utf-8') if isinstance(cached, str) else bytes(cached)


def _cache_get_miss(url, expiry, timeout, key, given=None):
    """cache_get for a URL seen for the first time (key None), or a known URL whose key was just found
    missing or whose download is in flight. given: the key of the keyed form, None for the plain one."""
    n = _cache_get_next_request()
    first_sight = key is None
    if first_sight:
        why = _cache_get_check_url(url)
        if why is not None:
            _cache_get_refuse(n, url, why)
    expiry_ms, timeout_ms = _cache_get_limits(expiry, timeout)
    if first_sight:
        key = _cache_get_key(url)
    if given is not None and given != key:
        _cache_get_wrong_key(given, url, key)
    if first_sight:
        if len(_CACHE_GET_KEYS) >= CACHE_GET_KEYS_MAX:
            _CACHE_GET_KEYS.clear()
        _CACHE_GET_KEYS[url] = key

    # A download of this URL in flight: join it without another Redis call (its key cannot exist yet:
    # an entry is only created, under atomic(), when the key is missing, and is stored when done).
    inflight = _CACHE_GET_STATE['inflight']
    f = _cache_get_wait(inflight.get(key), n, url, timeout_ms)
    if f is not None:
        return f

    if first_sight:
        # Not looked up yet (the first call for this URL since this code was registered, or since the
        # table was emptied): it may be a hit all the same.
        cached = _cache_get_lookup(key, url)
        if cached is not None:
            return _cache_get_bytes(cached)
        # The download may have started while we were asking Redis: join it without taking the lock.
        f = _cache_get_wait(inflight.get(key), n, url, timeout_ms)
        if f is not None:
            return f
    # A miss. A host written as an address (in any spelling) is checked here, without DNS, so that such a
    # refusal starts no download; a name is resolved and checked by the download itself. (Hits above
    # check no address: what is stored was checked when it was downloaded, and a hit connects nowhere.)
    kind, why, _ = _cache_get_addresses(url, True)
    if kind == 'refused':
        _cache_get_refuse(n, url, why)

    leader = False
    with atomic():
        # Under atomic() nothing else runs, in particular no store step: either the key is there now,
        # or the entry of the download that will store it is.
        cached = _cache_get_lookup(key, url)
        if cached is not None:
            return _cache_get_bytes(cached)
        if not isAsyncAllow():
            _cache_get_fail('cache_get: %s is not cached and a download cannot be waited for inside '
                            'MULTI/EXEC or Lua' % url)
        entry = inflight.get(key)
        if entry is not None:
            with entry['lock']:
                if entry['done'] and (entry['outcome'][0] != 'ok'
                                      or time.time() - entry['done_at'] > CACHE_GET_STALE_ENTRY_S):
                    # A finished failure (about to be dropped) or a store that never happened: start
                    # over. Replacing it under its own lock keeps _cache_get_finish from dropping the
                    # new entry.
                    entry = None
        if entry is None:
            entry = _cache_get_new_entry(url, key, expiry_ms, timeout_ms)
            inflight[key] = entry
            leader = True

    if leader:
        log('cache_get: request #%d %s: miss, downloading' % (n, url))
        capped = _cache_get_idle_cap(timeout_ms)
        if capped < timeout_ms:
            log('cache_get: timeout %d ms capped to %d ms: RedisGears ends executions that wait longer than '
                'ExecutionMaxIdleTime' % (timeout_ms, capped), level='verbose')
            timeout_ms = capped
            entry['timeout_ms'] = capped
            entry['deadline'] = entry['started'] + capped / 1000.0
        with entry['lock']:
            f = _cache_get_join(entry, True, timeout_ms)
        # The timer guarantees the deadline even if the download thread is stuck somewhere requests' own
        # timeouts do not cover (name resolution, a body trickling in between checks).
        timer = threading.Timer(timeout_ms / 1000.0 + 0.05, _cache_get_finish,
                                args=(inflight, entry, ('fail', None, None)))
        timer.daemon = True
        entry['timer'] = timer
        timer.start()
        t = threading.Thread(target=_cache_get_run, args=(inflight, entry), name='cache_get download')
        t.daemon = True
        t.start()
        return f

    f = _cache_get_wait(entry, n, url, timeout_ms)
    if f is not None:
        return f
    outcome = entry['outcome']  # set once, before 'done'
    if outcome[0] != 'ok':
        # It failed just now, while this caller was joining: the same error as everyone who waited.
        _cache_get_fail(outcome[1])
    # Downloaded, the leader's store step has not run yet: the same bytes, no second download.
    log('cache_get: request #%d %s: hit (store pending)' % (n, url), level='verbose')
    return outcome[1]


def cache_get_store(x):
    """Next step: stores the leader's download, raises a failed download's error for every waiter."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, bytearray):
        return bytes(x)
    if not isinstance(x, dict) or 'cache_get' not in x:
        return x
    if x['cache_get'] != 'ok':
        if x.get('leader'):
            log(x['error'], level='warning')
        _cache_get_fail(x['error'])
    body = x['body']
    if not x.get('leader'):
        return body
    entry = x['entry']
    inflight = x['inflight']
    key = entry['key']
    px = entry['expiry_ms']
    try:
        with atomic():
            try:
                if px > 0:
                    execute('SET', key, body, 'PX', str(px))
                else:
                    execute('SET', key, body)
            finally:
                if inflight.get(key) is entry:
                    del inflight[key]
        log('cache_get: %s: stored %d bytes (status %d, %d ms, expiry %s)'
            % (entry['url'], len(body), entry['outcome'][2], int((entry['done_at'] - entry['started']) * 1000),
               _cache_get_seconds(px) if px > 0 else 'none'))
    except Exception as e:
        # The download worked; the caller still gets the body. Only the store failed (e.g. OOM).
        log('cache_get: %s: downloaded but not stored: %s' % (entry['url'], str(e).strip()), level='warning')
    return body
