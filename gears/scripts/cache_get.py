# cache_get: a read-through cache for HTTP resources that lives next to the data.
#
#   RG.TRIGGER cache_get <url> [expiry_ms] [timeout_ms]   ->  the body bytes
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
# Valid Python 3.7 (RedisGears 1.2 embeds 3.7): no walrus, no positional-only parameters, no f-strings.

import hashlib
import threading
import time
from urllib.parse import urljoin, urlsplit

import requests

# --- cache_get settings: NewCacheGet (cacheget.go) rewrites the lines between these markers ---
CACHE_GET_KEY_PREFIX = 'cache_get:'
CACHE_GET_EXPIRY_MS = 3600000
CACHE_GET_TIMEOUT_MS = 10000
CACHE_GET_MAX_BYTES = 33554432
CACHE_GET_ALLOW_HOSTS = []
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
    return text or e.__class__.__name__


def _cache_get_download(url, deadline):
    """Fetches url; returns ('ok', body, status) or ('fail', message, status). Touches no Redis."""
    what = 'cache_get: GET %s' % url
    current = url
    resp = None
    try:
        for _hop in range(CACHE_GET_MAX_REDIRECTS + 1):
            remaining = deadline - time.time()
            if remaining <= 0:
                raise requests.exceptions.Timeout()
            resp = requests.get(current, stream=True, allow_redirects=False,
                                timeout=(remaining, remaining))
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


def cache_get(url=None, expiry=None, timeout=None):
    """Returns the body of url (bytes), downloading it at most once at a time per URL on this shard.

    expiry: milliseconds the stored body lives (0 = no expiry); default CACHE_GET_EXPIRY_MS.
    timeout: milliseconds a download may take, at most CACHE_GET_TIMEOUT_MS (the default).
    """
    n = _cache_get_next_request()
    why = _cache_get_check_url(url)
    if why is not None:
        log('cache_get: request #%d refused: %s' % (n, why), level='warning')
        shown = url if isinstance(url, str) else ''
        if len(shown) > 200:
            shown = shown[:200] + '...'
        _cache_get_fail('cache_get: refused "%s": %s' % (shown, why))
    expiry_ms = _cache_get_ms_arg('expiry', expiry, CACHE_GET_EXPIRY_MS, True)
    timeout_ms = min(_cache_get_ms_arg('timeout', timeout, CACHE_GET_TIMEOUT_MS, False), CACHE_GET_TIMEOUT_MS)
    key = _cache_get_key(url)

    # A download of this URL in flight: join it without a single Redis call (its key cannot exist yet:
    # an entry is only created, under atomic(), when the key is missing, and is stored when done).
    inflight = _CACHE_GET_STATE['inflight']
    f = _cache_get_wait(inflight.get(key), n, url, timeout_ms)
    if f is not None:
        return f

    # Hits take no lock: one GET, like a client would do. They are not logged: a log line per hit
    # would cost more than the hit itself.
    cached = execute('GET', key)
    if cached is not None:
        return cached.encode('utf-8') if isinstance(cached, str) else bytes(cached)
    # The download may have started while we were asking Redis: join it without taking the lock.
    f = _cache_get_wait(inflight.get(key), n, url, timeout_ms)
    if f is not None:
        return f

    leader = False
    with atomic():
        # Under atomic() nothing else runs, in particular no store step: either the key is there now,
        # or the entry of the download that will store it is.
        cached = execute('GET', key)
        if cached is not None:
            return cached.encode('utf-8') if isinstance(cached, str) else bytes(cached)
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
            log('cache_get: %s' % x['error'], level='warning')
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
