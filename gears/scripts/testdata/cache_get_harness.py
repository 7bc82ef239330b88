"""Unit tests of cache_get.py's flow with RedisGears' runtime faked in-process.

Run: python3 gears/scripts/testdata/cache_get_harness.py   (cacheget_test.go runs it too)

The fakes model what matters to cache_get: execute() on a dict store, atomic() as one global lock,
gearsFuture() resolved from any thread, flat_error(), log(), isAsyncAllow(). A trigger call runs the
registration's two steps as RedisGears does: cache_get, then (on the value or the future's value)
cache_get_store. The origin is a real HTTP server on 127.0.0.1. End-to-end behaviour on a
RedisGears-compatible server is covered by cacheget_test.go.
"""

import ast
import hashlib
import http.server
import importlib.util
import ipaddress
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'cache_get.py')


def read_script():
    with open(SCRIPT) as f:
        return f.read()


# The settings under which the flow tests reach their origin on 127.0.0.1.
LOCAL = {'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1']}


class FlatError(Exception):
    pass


class Future(object):
    def __init__(self):
        self.ev = threading.Event()
        self.value = None
        self.returned = False  # set once the step has returned it, as RedisGears does

    def continueRun(self, v):
        if not self.returned:
            raise Exception('Can not handle future untill it returned from the callback')
        if self.ev.is_set():
            raise Exception('future already resolved')
        self.value = v
        self.ev.set()

    def continueFailed(self, e):
        raise AssertionError('cache_get must resolve with continueRun only, got continueFailed(%r)' % (e,))


class Runtime(object):
    """One fake RedisGears shard running one cache_get registration."""

    def __init__(self, settings=None):
        self.store = {}  # key -> (bytes, expires_at or None)
        self.lock = threading.RLock()
        self.local = threading.local()
        self.logs = []
        self.commands = []
        self.calls = []  # (caller, COMMAND, *args) of every execute(); caller numbers trigger() calls
        self.callers = 0
        self.thread_violations = []
        self.async_allowed = True
        self.return_delay = 0
        self.config = {}  # configGet(): RedisGears 1.2 answers only extra (user-defined) settings
        self.rg_config = {'ExecutionMaxIdleTime': 5000}  # RG.CONFIGGET
        src = read_script()
        if settings:
            # Replaces the given settings' lines; the others keep the script's defaults.
            start = src.index('# --- cache_get settings')
            end = src.index('# --- end of cache_get settings ---')
            lines = src[start:end].split('\n')
            for k, v in settings.items():
                i = [j for j, line in enumerate(lines) if line.startswith(k + ' = ')]
                assert len(i) == 1, 'no setting %s' % k
                lines[i[0]] = '%s = %r' % (k, v)
            src = src[:start] + '\n'.join(lines) + src[end:]
        self.g = {
            'execute': self.execute, 'atomic': self.atomic, 'log': self.log, 'gearsFuture': self.future,
            'flat_error': FlatError, 'isAsyncAllow': lambda: self.async_allowed, '__name__': 'not_main',
            'configGet': lambda k: self.config.get(k),
        }
        exec(compile(src, 'cache_get.py', 'exec'), self.g)

    # -- the runtime API -------------------------------------------------------------------------
    def in_step(self):
        return getattr(self.local, 'step', False)

    def check_thread(self, what):
        if not self.in_step():
            # A real RedisGears 1.2 deadlocks when a thread the script started touches Redis.
            self.thread_violations.append(what)

    def execute(self, cmd, *args):
        self.check_thread('execute')
        with self.lock:
            self.commands.append((cmd.upper(),) + args)
            self.calls.append((getattr(self.local, 'caller', None), cmd.upper()) + args)
            cmd = cmd.upper()
            if cmd == 'GET':
                v = self.store.get(args[0])
                if v is None:
                    return None
                if v[1] is not None and time.time() >= v[1]:
                    del self.store[args[0]]
                    return None
                try:
                    return v[0].decode('utf-8')
                except UnicodeDecodeError:
                    return bytearray(v[0])
            if cmd == 'RG.CONFIGGET':
                return [int(self.rg_config[a]) for a in args]
            if cmd == 'SET':
                val = args[1]
                if isinstance(val, str):
                    val = val.encode('utf-8')
                exp = None
                if len(args) >= 4 and args[2].upper() == 'PX':
                    exp = time.time() + int(args[3]) / 1000.0
                self.store[args[0]] = (bytes(val), exp)
                return 'OK'
            raise Exception('fake execute: unsupported %s' % cmd)

    def atomic(self):
        self.check_thread('atomic')
        rt = self

        class Ctx(object):
            def __enter__(self):
                rt.lock.acquire()

            def __exit__(self, *a):
                rt.lock.release()
        return Ctx()

    def log(self, msg, level='notice'):
        self.check_thread('log')
        self.logs.append((level, msg))

    def future(self):
        if not self.in_step():
            raise Exception('Future object can only be created inside certain execution steps')
        return Future()


    # -- a trigger -------------------------------------------------------------------------------
    def trigger(self, *args):
        """RG.TRIGGER cache_get *args: returns bytes or raises FlatError with the reply's error text."""
        with self.lock:
            self.callers += 1
            self.local.caller = self.callers
        self.local.step = True
        try:
            v = self.g['cache_get'](*args)
        finally:
            self.local.step = False
        if isinstance(v, Future):
            if self.return_delay:
                time.sleep(self.return_delay)  # the step is slow to hand its future back
            v.returned = True
            if not v.ev.wait(30):
                raise AssertionError('a waiter hung')
            v = v.value
        self.local.step = True
        try:
            return self.g['cache_get_store'](v)
        finally:
            self.local.step = False


class Origin(object):
    """A local HTTP origin with a counter, a concurrency gauge and per-path behaviour."""

    def __init__(self, tls=None):
        self.count = 0
        self.hosts = []  # the Host header of every request
        self.sni = []  # the TLS server name of every handshake (tls only)
        self.active = 0
        self.max_active = 0
        self.mu = threading.Lock()
        self.latency = 0.05
        self.status = 200
        self.body = b'hello'
        self.trickle = False
        self.gate = None  # a threading.Event: when set, requests wait for it instead of latency
        origin = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *a):
                pass

            def do_GET(self):
                with origin.mu:
                    origin.count += 1
                    origin.hosts.append(self.headers.get('Host'))
                    origin.active += 1
                    origin.max_active = max(origin.max_active, origin.active)
                try:
                    if origin.gate is not None:
                        origin.gate.wait(60)
                    else:
                        time.sleep(origin.latency)
                    if self.path.startswith('/redirect'):
                        self.send_response(302)
                        self.send_header('Location', self.path[len('/redirect'):])
                        self.send_header('Content-Length', '0')
                        self.end_headers()
                        return
                    body = origin.body if origin.status == 200 else b'nope'
                    self.send_response(origin.status)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    if origin.trickle:
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(0.05)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with origin.mu:
                        origin.active -= 1

        self.srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.srv.daemon_threads = True
        self.base = 'http://127.0.0.1:%d' % self.srv.server_address[1]
        self.port = self.srv.server_address[1]
        if tls is not None:
            # tls: (certfile, keyfile). The handshake runs on the handler thread, not in accept().
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])

            def sni(sock, name, _ctx):
                with origin.mu:
                    origin.sni.append(name)
            ctx.sni_callback = sni
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True, do_handshake_on_connect=False)
            self.base = 'https://127.0.0.1:%d' % self.port
        self.thread = threading.Thread(target=self.srv.serve_forever)
        self.thread.daemon = True
        self.thread.start()

    def close(self):
        if self.gate is not None:
            self.gate.set()
        self.srv.shutdown()
        self.srv.server_close()


def run_all(fn, n, before_join=None):
    out = [None] * n
    threads = []
    for i in range(n):
        def body(i=i):
            try:
                out[i] = ('ok', fn(i))
            except FlatError as e:
                out[i] = ('err', str(e))
        t = threading.Thread(target=body)
        threads.append(t)
        t.start()
    if before_join is not None:
        before_join()
    for t in threads:
        t.join(30)
    return out


def run_in_thread(fn):
    """Runs fn on a thread of its own; returns a function that waits for fn's result (or raises)."""
    out = {}

    def body():
        try:
            out['ok'] = fn()
        except BaseException as e:  # handed to the waiting test
            out['err'] = e
    t = threading.Thread(target=body)
    t.start()

    def result():
        t.join(30)
        if t.is_alive():
            raise AssertionError('the call hung')
        if 'err' in out:
            raise out['err']
        return out['ok']
    return result


def wait_for(cond, what):
    deadline = time.time() + 20
    while not cond():
        if time.time() > deadline:
            raise AssertionError('never happened: ' + what)
        time.sleep(0.005)


class CacheGetTest(unittest.TestCase):
    def setUp(self):
        self.origin = Origin()
        # The origin is on 127.0.0.1: allowed by name, as a deployment would (AddressTest checks the
        # defaults).
        self.rt = Runtime(LOCAL)

    def tearDown(self):
        self.origin.close()
        self.assertEqual(self.rt.thread_violations, [], 'a thread the script started touched Redis')

    def test_python37_syntax(self):
        ast.parse(read_script(), feature_version=(3, 7))

    @unittest.skipUnless(importlib.util.find_spec('cloudpickle'), 'cloudpickle is not installed')
    def test_functions_pickle(self):
        # register() pickles the callbacks by value with the globals they reference.
        # The runtime's functions are C functions of the redisgears module on a real server, pickled by
        # reference: an importable stand-in module plays that part here.
        import cloudpickle
        mod = types.ModuleType('cache_get_fake_redisgears')
        exec('def execute(*a): pass\ndef atomic(): pass\ndef log(*a, **k): pass\n'
             'def gearsFuture(): pass\nclass flat_error(Exception): pass\ndef isAsyncAllow(): return True\ndef configGet(k): pass\n', mod.__dict__)
        sys.modules[mod.__name__] = mod
        g = dict(mod.__dict__)
        g['__name__'] = 'not_main'
        del g['__builtins__']
        exec(compile(read_script(), 'cache_get.py', 'exec'), g)
        for name in ('cache_get', 'cache_get_store'):
            data = cloudpickle.dumps(g[name])
            self.assertTrue(callable(pickle.loads(data)))

    def test_miss_then_hit(self):
        url = self.origin.base + '/a.png'
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 1)
        keys = list(self.rt.store)
        self.assertEqual(len(keys), 1)
        self.assertTrue(keys[0].startswith('cache_get:{') and keys[0].endswith('}'), keys[0])
        self.assertEqual(self.rt.g['_CACHE_GET_STATE']['inflight'], {})
        msgs = [m for _, m in self.rt.logs]
        self.assertTrue(any('request #1' in m and 'miss, downloading' in m for m in msgs), msgs)
        self.assertTrue(any('stored 5 bytes (status 200' in m for m in msgs), msgs)
        self.assertFalse(any('request #2' in m for m in msgs), 'hits are not logged: %r' % msgs)

    def waiters(self):
        return sum(len(e['waiters']) for e in list(self.rt.g['_CACHE_GET_STATE']['inflight'].values()))

    def test_concurrent_one_download(self):
        self.origin.gate = threading.Event()
        url = self.origin.base + '/one.png'

        def all_waiting():
            # All 100 callers hold a future of the one download before the origin answers.
            wait_for(lambda: self.waiters() == 100, '100 waiters')
            self.origin.gate.set()
        out = run_all(lambda i: self.rt.trigger(url), 100, all_waiting)
        self.assertEqual(out, [('ok', b'hello')] * 100)
        self.assertEqual(self.origin.count, 1)
        sets = [c for c in self.rt.commands if c[0] == 'SET']
        self.assertEqual(len(sets), 1)
        waits = [m for _, m in self.rt.logs if 'waiting for the download in flight' in m]
        self.assertEqual(len(waits), 99, 'every caller but the leader joined the download in flight')

    def test_joining_caller_makes_no_redis_call(self):
        # README: "A caller that finds the download in flight makes no Redis call": not one execute(),
        # in either step, for a caller that arrives while the download runs.
        self.origin.gate = threading.Event()
        url = self.origin.base + '/joined.png'
        leader = run_in_thread(lambda: self.rt.trigger(url))
        wait_for(lambda: self.origin.count == 1 and self.waiters() == 1, 'the download in flight')
        leader_calls = list(self.rt.calls)
        self.assertEqual([c[1] for c in leader_calls], ['GET', 'GET', 'RG.CONFIGGET'],
                         'the leader: a GET, a GET under atomic(), the idle cap')

        def all_joined():
            wait_for(lambda: self.waiters() == 1 + 50, '50 callers joined')
            self.origin.gate.set()
        out = run_all(lambda i: self.rt.trigger(url), 50, all_joined)
        self.assertEqual(out, [('ok', b'hello')] * 50)
        self.assertEqual(leader(), b'hello')
        self.assertEqual(self.origin.count, 1)
        leader_id = leader_calls[0][0]
        self.assertEqual([c for c in self.rt.calls if c[0] != leader_id], [], 'calls of joining callers')
        self.assertEqual([c[1] for c in self.rt.calls], ['GET', 'GET', 'RG.CONFIGGET', 'SET'],
                         'the leader alone stored the body')

    def test_many_urls_in_parallel(self):
        self.origin.gate = threading.Event()

        def all_downloading():
            wait_for(lambda: self.origin.active == 30, '30 downloads at once')
            self.origin.gate.set()
        out = run_all(lambda i: self.rt.trigger('%s/img%d.png' % (self.origin.base, i)), 30, all_downloading)
        self.assertEqual(out, [('ok', b'hello')] * 30)
        self.assertEqual(self.origin.count, 30)
        self.assertEqual(self.origin.max_active, 30)

    def test_failure_status_every_waiter_same_error_then_retry(self):
        self.origin.status = 404
        self.origin.gate = threading.Event()
        url = self.origin.base + '/missing.png'

        def all_waiting():
            wait_for(lambda: self.waiters() == 20, '20 waiters')
            self.origin.gate.set()
        out = run_all(lambda i: self.rt.trigger(url), 20, all_waiting)
        want = ('err', 'cache_get: GET %s: status 404' % url)
        self.assertEqual(out, [want] * 20)
        self.assertEqual(self.origin.count, 1)
        self.assertEqual(self.rt.store, {})
        self.origin.status = 200
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 2)

    def test_connection_refused(self):
        url = self.origin.base + '/x'
        self.origin.close()
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url)
        self.assertIn('cache_get: GET %s: connection failed: ' % url, str(cm.exception))
        self.assertIn('Connection refused', str(cm.exception))
        self.origin = Origin()  # for tearDown

    def test_outcome_before_the_step_returned(self):
        # The download fails at once, before the step has handed its future back: the outcome must
        # still reach the caller rather than be lost.
        url = self.origin.base + '/x'
        self.origin.close()
        self.rt.return_delay = 0.2
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url)
        self.assertIn('Connection refused', str(cm.exception))
        self.origin = Origin()

    def test_leader_execution_gone(self):
        # The leader's execution was aborted while downloading: nobody stores, so the entry must go and
        # the next caller downloads again.
        self.origin.gate = threading.Event()
        url = self.origin.base + '/aborted'
        self.rt.local.step = True
        try:
            f = self.rt.g['cache_get'](url)
        finally:
            self.rt.local.step = False
        f.returned = True
        f.ev.set()  # resolved elsewhere (aborted): continueRun now raises
        self.origin.gate.set()
        wait_for(lambda: self.rt.g['_CACHE_GET_STATE']['inflight'] == {}, 'the entry dropped')
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 2)

    def test_timeout(self):
        # The origin never answers on its own: only the timeout can end these calls.
        self.origin.gate = threading.Event()
        url = self.origin.base + '/slow'
        out = run_all(lambda i: self.rt.trigger(url, '', '300'), 5)
        self.assertEqual(out, [('err', 'cache_get: GET %s: timed out after 0.3s' % url)] * 5)
        self.assertEqual(self.rt.store, {})
        self.assertEqual(self.origin.count, 1)

    def test_timeout_capped_by_execution_max_idle(self):
        # A wait longer than ExecutionMaxIdleTime would end in "Execution max idle reached".
        self.rt.rg_config['ExecutionMaxIdleTime'] = 500
        self.origin.gate = threading.Event()
        url = self.origin.base + '/idle'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url)
        self.assertEqual(str(cm.exception), 'cache_get: GET %s: timed out after 0.35s' % url)
        self.assertTrue(any('capped to 350 ms' in m for _, m in self.rt.logs), self.rt.logs)

    def test_timeout_cap_read_through_rg_configget(self):
        # The built-in setting comes from RG.CONFIGGET (configGet() knows only extra settings).
        self.rt.local.step = True  # as inside cache_get's step
        self.addCleanup(setattr, self.rt.local, 'step', False)
        self.rt.config['ExecutionMaxIdleTime'] = '1000'  # an extra setting of that name is ignored
        self.assertEqual(self.rt.g['_cache_get_idle_cap'](10000), 4400)
        self.rt.rg_config['ExecutionMaxIdleTime'] = 1000
        self.assertEqual(self.rt.g['_cache_get_idle_cap'](10000), 800)
        self.rt.rg_config['ExecutionMaxIdleTime'] = 5000
        self.rt.rg_config.clear()  # RG.CONFIGGET fails: RedisGears' default
        self.assertEqual(self.rt.g['_cache_get_idle_cap'](10000), 4400)
        self.assertEqual(self.rt.g['_cache_get_idle_cap'](300), 300)

    def test_waiter_with_shorter_timeout(self):
        self.origin.gate = threading.Event()
        url = self.origin.base + '/slowish'
        res = {}

        def leader():
            res['leader'] = self.rt.trigger(url)
        t = threading.Thread(target=leader)
        t.start()
        wait_for(lambda: self.origin.count == 1, 'the download started')
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url, '', '200')
        self.assertEqual(str(cm.exception), 'cache_get: GET %s: timed out after 0.2s' % url)
        self.origin.gate.set()
        t.join(10)
        self.assertEqual(res['leader'], b'hello')
        self.assertEqual(self.origin.count, 1)

    def test_trickle_past_deadline(self):
        self.origin.latency = 0
        self.origin.trickle = True
        self.origin.body = b'x' * 100  # 5 s at 50 ms a byte
        url = self.origin.base + '/trickle'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url, '', '400')
        self.assertEqual(str(cm.exception), 'cache_get: GET %s: timed out after 0.4s' % url)

    def test_oversized(self):
        self.rt = Runtime({'CACHE_GET_MAX_BYTES': 10, 'CACHE_GET_KEY_PREFIX': 'cg:',
                           'CACHE_GET_EXPIRY_MS': 0, 'CACHE_GET_TIMEOUT_MS': 5000,
                           'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1']})
        self.origin.body = b'y' * 11
        url = self.origin.base + '/big'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url)
        self.assertEqual(str(cm.exception),
                         'cache_get: GET %s: body of 11 bytes is larger than the limit of 10 bytes' % url)
        self.origin.body = b'y' * 10
        self.assertEqual(self.rt.trigger(url), b'y' * 10)
        self.assertEqual(list(self.rt.store)[0][:4], 'cg:{')
        self.assertIsNone(list(self.rt.store.values())[0][1], 'expiry 0 means no expiry')

    def test_expiry(self):
        url = self.origin.base + '/exp'
        self.assertEqual(self.rt.trigger(url, '200'), b'hello')
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 1)
        key = list(self.rt.store)[0]
        self.assertAlmostEqual(self.rt.store[key][1] - time.time(), 0.2, delta=0.2)
        time.sleep(0.3)
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 2)

    def test_binary_roundtrip(self):
        self.origin.body = bytes(range(256)) * 4
        url = self.origin.base + '/bin'
        self.assertEqual(self.rt.trigger(url), bytes(range(256)) * 4)
        self.assertEqual(self.rt.trigger(url), bytes(range(256)) * 4)
        self.origin.body = 'h\u00e9llo'.encode('utf-8')  # valid UTF-8 comes back from GET as str
        url2 = self.origin.base + '/utf8'
        self.rt.trigger(url2)
        self.assertEqual(self.rt.trigger(url2), 'h\u00e9llo'.encode('utf-8'))

    # -- the hit path (issue 11): only what a hit needs ------------------------------------------
    def test_hit_is_one_get(self):
        url = self.origin.base + '/fast.png'
        self.assertEqual(self.rt.trigger(url), b'hello')
        key = self.rt.g['_cache_get_key'](url)
        counter = self.rt.g['_CACHE_GET_STATE']['counter'][0]
        self.rt.calls, logs = [], len(self.rt.logs)
        for _ in range(3):
            self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual([c[1:] for c in self.rt.calls], [('GET', key)] * 3, 'a hit is one GET, nothing else')
        self.assertEqual(len(self.rt.logs), logs, 'hits are not logged')
        self.assertEqual(self.rt.g['_CACHE_GET_STATE']['counter'][0], counter, 'hits take no request number')
        self.assertEqual(self.rt.g['_CACHE_GET_KEYS'], {url: key})
        self.assertEqual(self.origin.count, 1)

    def test_hit_checks_its_arguments(self):
        # A bad expiry or timeout fails a hit exactly as it fails a miss.
        url = self.origin.base + '/args.png'
        self.assertEqual(self.rt.trigger(url), b'hello')
        for args, msg in (
                (('x',), 'cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "x"'),
                (('-1',), 'cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "-1"'),
                (('', '0'), 'cache_get: timeout must be a whole number of milliseconds above 0, got "0"')):
            with self.assertRaises(FlatError) as cm:
                self.rt.trigger(url, *args)
            self.assertEqual(str(cm.exception), msg)
            with self.assertRaises(FlatError) as cm:
                self.rt.trigger(self.origin.base + '/never-fetched', *args)
            self.assertEqual(str(cm.exception), msg)
        self.assertEqual(self.rt.trigger(url, '5', '7'), b'hello')
        self.assertEqual(self.origin.count, 1)

    def test_narrowed_allowlist_refuses_stored_bodies(self):
        # New settings are new code: the next registration starts from fresh globals, so a stored body
        # of a URL that is no longer allowed is refused, not served.
        url = self.origin.base + '/old.png'
        self.assertEqual(self.rt.trigger(url), b'hello')
        narrowed = Runtime({'CACHE_GET_ALLOW_HOSTS': ['images.example.com']})
        narrowed.store = self.rt.store
        with self.assertRaises(FlatError) as cm:
            narrowed.trigger(url)
        self.assertEqual(str(cm.exception), 'cache_get: refused "%s": host "127.0.0.1" is not in the allowlist' % url)
        self.assertEqual(narrowed.calls, [], 'refused before any Redis call')
        self.assertEqual(self.rt.trigger(url), b'hello', 'the old settings still serve it')

    def test_known_urls_are_bounded(self):
        self.rt.g['CACHE_GET_KEYS_MAX'] = 3
        self.rt.store[self.rt.g['_cache_get_key'](self.origin.base + '/k')] = (b'stored', None)
        for i in range(7):
            self.assertEqual(self.rt.trigger(self.origin.base + '/k', str(i)), b'stored')
            self.assertEqual(self.rt.trigger(self.origin.base + '/k?%d' % i), b'hello')
            self.assertLessEqual(len(self.rt.g['_CACHE_GET_KEYS']), 3)
        self.assertEqual(self.origin.count, 7)

    def test_rejected_urls_touch_no_key(self):
        self.rt = Runtime({'CACHE_GET_MAX_BYTES': 100, 'CACHE_GET_KEY_PREFIX': 'cache_get:',
                           'CACHE_GET_EXPIRY_MS': 0, 'CACHE_GET_TIMEOUT_MS': 5000,
                           'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1', '*.example.com']})
        cases = {
            'file:///etc/passwd': 'scheme "file" is not allowed (only http and https)',
            'ftp://127.0.0.1/x': 'scheme "ftp" is not allowed (only http and https)',
            'http://evil.test/x': 'host "evil.test" is not in the allowlist',
            'mykey': 'not a URL',
            'http://127.0.0.1/a b': 'URL contains whitespace or control characters',
            'http:///nohost': 'not a URL',
        }
        for url, why in cases.items():
            with self.assertRaises(FlatError) as cm:
                self.rt.trigger(url)
            self.assertEqual(str(cm.exception), 'cache_get: refused "%s": %s' % (url, why))
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger()
        self.assertEqual(str(cm.exception), 'cache_get: refused "": not a URL')
        self.assertEqual(self.rt.commands, [])
        self.assertEqual(self.origin.count, 0)
        self.assertTrue(self.rt.g['_cache_get_host_allowed']('img.example.com'))
        self.assertFalse(self.rt.g['_cache_get_host_allowed']('example.com.evil'))

    def test_redirect_checked(self):
        self.rt = Runtime({'CACHE_GET_MAX_BYTES': 100, 'CACHE_GET_KEY_PREFIX': 'cache_get:',
                           'CACHE_GET_EXPIRY_MS': 0, 'CACHE_GET_TIMEOUT_MS': 5000,
                           'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1']})
        self.origin.latency = 0
        ok = self.origin.base + '/redirect/final'
        self.assertEqual(self.rt.trigger(ok), b'hello')
        bad = self.origin.base + '/redirecthttp://other.test/x'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(bad)
        self.assertEqual(str(cm.exception), 'cache_get: GET %s: redirect to http://other.test/x refused: '
                                            'host "other.test" is not in the allowlist' % bad)

    def test_at_most_five_redirects(self):
        # README, Safety: "redirects are checked hop by hop, at most 5". The origin answers
        # /redirect<path> with a redirect to <path>.
        self.origin.latency = 0
        five = self.origin.base + '/redirect' * 5 + '/final'
        self.assertEqual(self.rt.trigger(five), b'hello')
        self.assertEqual(self.origin.count, 6, '5 redirects followed, then the body')
        six = self.origin.base + '/redirect' * 6 + '/final'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(six)
        self.assertEqual(str(cm.exception), 'cache_get: GET %s: more than 5 redirects' % six)
        self.assertEqual(self.origin.count, 12, 'the sixth redirect is not followed')
        self.assertEqual(len(self.rt.store), 1)

    def test_bad_arguments(self):
        url = self.origin.base + '/a'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url, 'soon')
        self.assertEqual(str(cm.exception),
                         'cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "soon"')
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url, '', '0')
        self.assertEqual(str(cm.exception),
                         'cache_get: timeout must be a whole number of milliseconds above 0, got "0"')
        self.assertEqual(self.origin.count, 0)

    # -- the keyed form (RG.TRIGGERONKEY cache_get <key> <url>, issue 10) ---------------------------
    def test_keyed_form(self):
        url = self.origin.base + '/keyed.png'
        key = self.rt.g['_cache_get_key'](url)
        self.assertEqual(key, 'cache_get:{%s}' % hashlib.sha1(url.encode('utf-8')).hexdigest())
        self.assertEqual(self.rt.trigger(key, url), b'hello')
        self.assertEqual(self.rt.trigger(key, url, '5', '7'), b'hello', 'a hit, expiry and timeout shifted by one')
        self.assertEqual(self.rt.trigger(url), b'hello', 'the plain form finds the same body')
        self.assertEqual(self.origin.count, 1)
        self.assertEqual(list(self.rt.store), [key])
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(key, url, 'soon')
        self.assertEqual(str(cm.exception),
                         'cache_get: expiry must be a whole number of milliseconds (0 = no expiry), got "soon"')

    def test_keyed_form_checks_the_key(self):
        url, other = self.origin.base + '/mine.png', self.origin.base + '/theirs.png'
        wrong = self.rt.g['_cache_get_key'](other)
        msg = ('cache_get: key "%s" is not the key of "%s" (RG.TRIGGERONKEY cache_get <key> <url>: the key must '
               'be cache_get:{<hex SHA-1 of the URL>}, here "%s")' % (wrong, url, self.rt.g['_cache_get_key'](url)))
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(wrong, url)
        self.assertEqual(str(cm.exception), msg)
        self.assertEqual(self.rt.calls, [], 'refused before any Redis call')
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.rt.calls = []
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(wrong, url)  # a URL known to the hit path
        self.assertEqual(str(cm.exception), msg)
        self.assertEqual(self.rt.calls, [], 'refused before any Redis call')
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger('cache_get:{nothex}', url)
        self.assertIn('cache_get: key "cache_get:{nothex}" is not the key of', str(cm.exception))
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(self.rt.g['_cache_get_key'](url), url, '1', '2', '3')
        self.assertEqual(str(cm.exception), 'cache_get: too many arguments (RG.TRIGGER cache_get <url> '
                                            '[expiry_ms] [timeout_ms], or RG.TRIGGERONKEY cache_get <key> <url> '
                                            '[expiry_ms] [timeout_ms])')
        self.assertEqual(self.origin.count, 1)
        self.assertEqual(len(self.rt.store), 1)

    def test_foreign_shard_says_how_to_route(self):
        # On a Redis Cluster, RedisGears refuses execute() of a key another shard owns.
        url = self.origin.base + '/elsewhere.png'
        key = self.rt.g['_cache_get_key'](url)
        real = self.rt.execute

        def execute(cmd, *args):
            if cmd.upper() == 'GET':
                raise Exception('Operation not permitted')
            return real(cmd, *args)
        self.rt.g['execute'] = execute
        for _ in range(2):  # first sight, then a known URL (the hit path)
            with self.assertRaises(FlatError) as cm:
                self.rt.trigger(url)
            self.assertEqual(str(cm.exception), 'cache_get: the key of "%s" (%s) is on another shard of this Redis '
                                                'Cluster: call RG.TRIGGERONKEY cache_get %s <url> through a cluster '
                                                'client, which routes it to the shard that owns the key' % (url, key, key))
        self.assertEqual(self.origin.count, 0)

    def test_multi_exec_miss(self):
        self.rt.async_allowed = False
        url = self.origin.base + '/m'
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url)
        self.assertIn('cannot be waited for inside MULTI/EXEC or Lua', str(cm.exception))
        self.assertEqual(self.origin.count, 0)


class Resolver(object):
    """A resolver stub in place of cache_get's _cache_get_addrinfo: names map to fixed addresses, and
    every lookup is recorded. Numeric hosts go to the real getaddrinfo (no DNS); any other name fails, so
    that no test depends on, or sends a query to, real DNS."""

    def __init__(self, rt, names):
        self.names = names  # name -> [address, ...] or a function returning that list
        self.lookups = []
        self.real = rt.g['_cache_get_addrinfo']
        rt.g['_cache_get_addrinfo'] = self.addrinfo

    def addrinfo(self, host, port, numeric):
        if host in self.names:
            if numeric:
                raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')
            self.lookups.append(host)
            addrs = self.names[host]
            if callable(addrs):
                addrs = addrs()
            return [(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                     '', (a, port, 0, 0) if ':' in a else (a, port)) for a in addrs]
        try:
            return self.real(host, port, True)
        except socket.gaierror:
            if numeric:
                raise
            raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')


LOOPBACK = 'loopback 127.0.0.0/8'


class AddressTest(unittest.TestCase):
    """The rule that keeps cache_get out of the server's network (issue 13). Traffic only ever goes to
    loopback origins; every other private range is tested at the classification level."""

    def setUp(self):
        self.origin = Origin()
        self.origin.latency = 0
        self.rt = Runtime()  # the defaults: no allowlist, private networks refused

    def tearDown(self):
        self.origin.close()
        self.assertEqual(self.rt.thread_violations, [], 'a thread the script started touched Redis')

    def refused(self, url, *args):
        with self.assertRaises(FlatError) as cm:
            self.rt.trigger(url, *args)
        return str(cm.exception)

    def test_classification(self):
        # Every range of the table, its edges, and public neighbours. Only the function is called: no
        # traffic goes to any of these addresses.
        cases = {
            '0.0.0.0': 'unspecified 0.0.0.0/8', '0.255.255.255': 'unspecified 0.0.0.0/8',
            '10.0.0.1': 'private 10.0.0.0/8', '10.255.255.255': 'private 10.0.0.0/8',
            '11.0.0.1': None, '9.255.255.255': None,
            '100.64.0.0': 'shared 100.64.0.0/10', '100.127.255.255': 'shared 100.64.0.0/10',
            '100.63.255.255': None, '100.128.0.0': None,
            '127.0.0.1': LOOPBACK, '127.255.255.254': LOOPBACK, '128.0.0.1': None,
            '169.254.169.254': 'link-local 169.254.0.0/16', '169.254.0.1': 'link-local 169.254.0.0/16',
            '169.255.0.1': None,
            '172.16.0.1': 'private 172.16.0.0/12', '172.31.255.255': 'private 172.16.0.0/12',
            '172.15.255.255': None, '172.32.0.0': None,
            '192.0.0.8': 'IETF protocol assignments 192.0.0.0/24', '192.0.2.1': 'documentation 192.0.2.0/24',
            '192.168.0.1': 'private 192.168.0.0/16', '192.168.255.255': 'private 192.168.0.0/16',
            '192.169.0.1': None,
            '198.18.0.1': 'benchmarking 198.18.0.0/15', '198.51.100.7': 'documentation 198.51.100.0/24',
            '203.0.113.9': 'documentation 203.0.113.0/24',
            '224.0.0.1': 'multicast 224.0.0.0/4', '239.255.255.250': 'multicast 224.0.0.0/4',
            '240.0.0.1': 'reserved 240.0.0.0/4', '255.255.255.254': 'reserved 240.0.0.0/4',
            '255.255.255.255': 'broadcast 255.255.255.255/32',
            '8.8.8.8': None, '1.1.1.1': None, '93.184.216.34': None, '223.255.255.255': None,
            '::': 'unspecified ::/128', '::1': 'loopback ::1/128',
            '::127.0.0.1': 'IPv4-compatible ::/96', '::8.8.8.8': 'IPv4-compatible ::/96',
            'fe80::1': 'link-local fe80::/10', 'febf:ffff::1': 'link-local fe80::/10',
            'fec0::1': 'site-local fec0::/10',
            'fc00::1': 'unique-local fc00::/7', 'fd12:3456::1': 'unique-local fc00::/7',
            'ff02::1': 'multicast ff00::/8', 'ff0e::fb': 'multicast ff00::/8',
            '100::1': 'discard-only 100::/64', '2001:db8::1': 'documentation 2001:db8::/32',
            '64:ff9b:1::a': 'local NAT64 64:ff9b:1::/48',
            '::ffff:127.0.0.1': 'IPv4-mapped ' + LOOPBACK, '::ffff:10.1.2.3': 'IPv4-mapped private 10.0.0.0/8',
            '::ffff:169.254.169.254': 'IPv4-mapped link-local 169.254.0.0/16',
            '::ffff:0.0.0.0': 'IPv4-mapped unspecified 0.0.0.0/8', '::ffff:8.8.8.8': None,
            '64:ff9b::7f00:1': 'NAT64 ' + LOOPBACK, '64:ff9b::808:808': None,
            '2002:c0a8:101::1': '6to4 private 192.168.0.0/16', '2002:808:808::1': None,
            '2606:4700:4700::1111': None, '2001:4860:4860::8888': None,
        }
        f = self.rt.g['_cache_get_not_public']
        for a, want in cases.items():
            self.assertEqual(f(ipaddress.ip_address(a)), want, a)

    def test_every_spelling_of_loopback_is_refused(self):
        # Numeric hosts are refused in cache_get's own step, without DNS: no download thread, no
        # connection, no key, a warning in the log.
        port = self.origin.port
        cases = {
            '127.0.0.1': 'address 127.0.0.1 is not public (%s)' % LOOPBACK,
            '127.0.0.2': 'address 127.0.0.2 is not public (%s)' % LOOPBACK,
            '2130706433': 'host "2130706433" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '0x7f000001': 'host "0x7f000001" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '0177.0.0.1': 'host "0177.0.0.1" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '127.1': 'host "127.1" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '127.000.000.001': 'host "127.000.000.001" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '0x7f.1': 'host "0x7f.1" resolves to 127.0.0.1, which is not public (%s)' % LOOPBACK,
            '0.0.0.0': 'address 0.0.0.0 is not public (unspecified 0.0.0.0/8)',
            '0': 'host "0" resolves to 0.0.0.0, which is not public (unspecified 0.0.0.0/8)',
            '[::1]': 'address ::1 is not public (loopback ::1/128)',
            '[::]': 'address :: is not public (unspecified ::/128)',
            '[0:0:0:0:0:0:0:1]': 'host "0:0:0:0:0:0:0:1" resolves to ::1, which is not public (loopback ::1/128)',
            '[::ffff:127.0.0.1]': 'address ::ffff:127.0.0.1 is not public (IPv4-mapped %s)' % LOOPBACK,
            '[::ffff:7f00:1]': 'host "::ffff:7f00:1" resolves to ::ffff:127.0.0.1, which is not public '
                               '(IPv4-mapped %s)' % LOOPBACK,
        }
        for host, why in cases.items():
            url = 'http://%s:%d/secret' % (host, port)
            self.assertEqual(self.refused(url), 'cache_get: refused "%s": %s' % (url, why))
            self.assertEqual(self.rt.logs[-1], ('warning', 'cache_get: request #%d refused: %s'
                                                % (self.rt.g['_CACHE_GET_STATE']['counter'][0], why)))
        self.assertEqual(self.origin.count, 0)
        self.assertEqual(self.rt.store, {})
        self.assertEqual([c[0] for c in self.rt.commands if c[0] != 'GET'], [], 'a refusal only looks')
        self.assertEqual(self.rt.g['_CACHE_GET_STATE']['inflight'], {}, 'no download started')

    def test_name_resolving_to_loopback_is_refused(self):
        # DNS answers 127.0.0.1 for a name: refused by the download, before any connection.
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['*.example.test']})  # a wildcard does not opt in
        resolver = Resolver(self.rt, {'cache.example.test': ['127.0.0.1'],
                                      'mixed.example.test': ['93.184.216.34', '127.0.0.1'],
                                      'six.example.test': ['::1']})
        for name, addr, net in (('cache.example.test', '127.0.0.1', LOOPBACK),
                                ('mixed.example.test', '127.0.0.1', LOOPBACK),  # every address counts
                                ('six.example.test', '::1', 'loopback ::1/128')):
            url = 'http://%s:%d/x' % (name, self.origin.port)
            why = 'host "%s" resolves to %s, which is not public (%s)' % (name, addr, net)
            self.assertEqual(self.refused(url), 'cache_get: refused "%s": %s' % (url, why))
            self.assertEqual(self.rt.logs[-1], ('warning', 'cache_get: refused "%s": %s' % (url, why)))
        self.assertEqual(resolver.lookups, ['cache.example.test', 'mixed.example.test', 'six.example.test'])
        self.assertEqual(self.origin.count, 0)
        self.assertEqual(self.rt.store, {})
        self.assertEqual(self.rt.g['_CACHE_GET_STATE']['inflight'], {})
        # The refusal is not cached: the next call asks DNS again.
        self.refused('http://cache.example.test:%d/x' % self.origin.port)
        self.assertEqual(len(resolver.lookups), 4)

    def test_localhost_is_refused(self):
        url = 'http://localhost:%d/x' % self.origin.port
        msg = self.refused(url)
        self.assertRegex(msg, r'^cache_get: refused "%s": host "localhost" resolves to (127\.0\.0\.1|::1), '
                              r'which is not public \(loopback (127\.0\.0\.0/8|::1/128)\)$' % url)
        self.assertEqual(self.origin.count, 0)

    def test_literal_allowlist_entry_connects_to_the_checked_address(self):
        # images.internal exists only in the stub: the download can only succeed by connecting to the
        # address the stub gave, once, with the name in the Host header (no second lookup for DNS
        # rebinding to answer differently).
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['images.internal', '127.0.0.1']})
        answers = [['127.0.0.1'], ['10.255.255.1']]  # a second lookup would get another answer
        resolver = Resolver(self.rt, {'images.internal': lambda: answers.pop(0)})
        url = 'http://images.internal:%d/a.png' % self.origin.port
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(resolver.lookups, ['images.internal'])
        self.assertEqual(self.origin.hosts, ['images.internal:%d' % self.origin.port])
        # An IP named literally works the same.
        self.assertEqual(self.rt.trigger(self.origin.base + '/b.png'), b'hello')
        self.assertEqual(self.origin.hosts[-1], '127.0.0.1:%d' % self.origin.port)
        self.assertEqual(self.origin.count, 2)

    def test_next_checked_address_when_one_refuses(self):
        # Nothing listens on 127.0.0.2 at the origin's port (it is bound to 127.0.0.1): the download
        # goes on to the next checked address, as a client would.
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['two.internal']})
        Resolver(self.rt, {'two.internal': ['127.0.0.2', '127.0.0.1']})
        url = 'http://two.internal:%d/x' % self.origin.port
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(self.origin.count, 1)

    def test_redirect_hop_checked_by_address(self):
        # The origin (named literally) redirects to a name the wildcard allows, which resolves to
        # loopback: refused at that hop, before connecting.
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1', '*.example.test']})
        resolver = Resolver(self.rt, {'loop.example.test': ['127.0.0.1']})
        target = 'http://loop.example.test:%d/final' % self.origin.port
        url = self.origin.base + '/redirect' + target
        self.assertEqual(self.refused(url), 'cache_get: GET %s: redirect to %s refused: host "loop.example.test" '
                                            'resolves to 127.0.0.1, which is not public (%s)' % (url, target, LOOPBACK))
        self.assertEqual(self.origin.count, 1, 'only the redirect was fetched')
        self.assertEqual(resolver.lookups, ['loop.example.test'])
        # A hop to another spelling of the very same loopback address is refused too: only the wildcard
        # matches it, and a wildcard does not opt in.
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['127.0.0.1', '*.0.0.1']})
        target = 'http://0x7f.0.0.1:%d/final' % self.origin.port
        url = self.origin.base + '/redirect' + target
        self.assertEqual(self.refused(url), 'cache_get: GET %s: redirect to %s refused: host "0x7f.0.0.1" '
                                            'resolves to 127.0.0.1, which is not public (%s)' % (url, target, LOOPBACK))
        self.assertEqual(self.origin.count, 2)
        self.assertEqual(self.rt.store, {})

    def test_private_networks_option(self):
        self.rt = Runtime({'CACHE_GET_ALLOW_PRIVATE_NETWORKS': True})
        self.assertEqual(self.rt.trigger(self.origin.base + '/a'), b'hello')
        self.assertEqual(self.rt.trigger('http://2130706433:%d/b' % self.origin.port), b'hello')
        self.assertEqual(self.rt.trigger('http://localhost:%d/c' % self.origin.port), b'hello')
        self.assertEqual(self.origin.count, 3)

    def test_hit_checks_nothing(self):
        # What is stored was checked when downloaded: a hit neither resolves nor classifies.
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['cdn.example.test']})
        resolver = Resolver(self.rt, {'cdn.example.test': ['127.0.0.1']})
        url = 'http://cdn.example.test:%d/a' % self.origin.port
        self.assertEqual(self.rt.trigger(url), b'hello')
        calls = []
        self.rt.g['_cache_get_addresses'] = lambda *a: calls.append(a)
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(calls, [])
        self.assertEqual(resolver.lookups, ['cdn.example.test'])

    @unittest.skipUnless(shutil.which('openssl'), 'no openssl to make a test certificate')
    def test_https_to_the_checked_address_keeps_sni_and_certificate_check(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        cert, key = os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=secure.example.test', '-addext', 'subjectAltName=DNS:secure.example.test',
                        '-keyout', key, '-out', cert], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        tls = Origin(tls=(cert, key))
        self.addCleanup(tls.close)
        tls.latency = 0
        self.rt = Runtime({'CACHE_GET_ALLOW_HOSTS': ['secure.example.test', 'wrong.example.test']})
        Resolver(self.rt, {'secure.example.test': ['127.0.0.1'], 'wrong.example.test': ['127.0.0.1']})
        old = os.environ.get('REQUESTS_CA_BUNDLE')
        os.environ['REQUESTS_CA_BUNDLE'] = cert  # trust the test certificate, as a deployment trusts its CA

        def restore():
            if old is None:
                os.environ.pop('REQUESTS_CA_BUNDLE', None)
            else:
                os.environ['REQUESTS_CA_BUNDLE'] = old
        self.addCleanup(restore)
        url = 'https://secure.example.test:%d/a' % tls.port
        self.assertEqual(self.rt.trigger(url), b'hello')
        self.assertEqual(tls.sni, ['secure.example.test'])
        self.assertEqual(tls.hosts, ['secure.example.test:%d' % tls.port])
        # The certificate is still checked against the name asked for, not the address connected to.
        url = 'https://wrong.example.test:%d/a' % tls.port
        msg = self.refused(url)
        self.assertTrue(msg.startswith('cache_get: GET %s: connection failed: ' % url), msg)
        self.assertIn("hostname 'wrong.example.test' doesn't match 'secure.example.test'", msg)
        self.assertNotIn('127.0.0.1', msg, 'the error is about the URL, not the address connected to')
        self.assertEqual(tls.count, 1)


if __name__ == '__main__':
    unittest.main()
