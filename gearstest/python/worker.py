"""gearstest Python worker: runs RG.PYEXECUTE scripts and gear executions for the Go server.

Started as `python3 -u worker.py` by gearstest; speaks the protocol of PROTOCOL.md on stdin/stdout.
One thread at a time holds the reader role: it reads frames and dispatches them. Triggers run
right on that thread (no thread switch on the hot path); while such an execution waits for an RPC
reply, the thread keeps reading ("nested" reading) and dispatches everything else; a trigger read
then runs right there too, on top of the waiting one, when every execution below it is an async one
waiting for an execute() reply outside atomic() (so it holds no lock the new one could need), up to
NEST_MAX deep (deeper ones wait in `deferred` for the stack to unwind); otherwise it goes to the pool.
Frames go out through a combining writer (Worker.write). If an execution
stays in user code longer than STEAL_AFTER (it blocks on I/O, sleeps, computes), a watchdog hands
the reader role to a new thread, so nothing else stalls, and marks the registration slow: its later
executions go straight to a pool of reusable threads that grows without bound. Scripts and
requirement installs always run on the pool.
"""
import ast
import asyncio
import collections
import hashlib
import concurrent.futures
import itertools
import json
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import engine  # noqa: E402
import events  # noqa: E402
import py37  # noqa: E402
import pyerrors  # noqa: E402
import resp  # noqa: E402
import runtime  # noqa: E402
from pyerrors import error, error_text, syntax_error_text  # noqa: E402
import rt  # noqa: E402
from rt import CUR, state, tls  # noqa: E402

IDLE_TEXT = 'Execution max idle reached'

# Trigger flag letters (PROTOCOL.md `trigger`) as ints: `F_LANE in flags` is a memchr, where
# `b'l' in flags` first tries b'l' as an int and raises (and clears) a TypeError each time.
F_LANE, F_MULTI, F_CMDCTX, F_DIST = b'lmcd'

# How long an inline execution may stay in user code before another thread takes over reading.
STEAL_AFTER = float(os.environ.get('GEARS_STEAL_AFTER_MS', '10')) / 1000.0
# How many triggers may run nested on the reading thread (see run_nested); beyond, they wait for it
# to unwind (0: nothing nests, triggers read while an execution waits run after it).
NEST_MAX = int(os.environ.get('GEARS_NEST_MAX', '32'))
# How many frames the reading thread may hold back while it has buffered input (Worker.write). Few:
# a burst of calls that leave together saves Go a wake-up each, but Go answers none of them while the
# worker is still busy with the rest of its buffer, and then the worker waits while Go answers them
# all: the two sides took turns (27% of the 2-core VM idle under 50 async_local clients). In groups
# of 4, Go answers the first calls while the worker runs the next triggers. async_local, 50 clients,
# medians of interleaved runs (4-5 each): 64 -> 27.9k/s, 1 -> 32.9k, 3 -> 39.1k, 4 -> 38.8k, 6 ->
# 37.9k; sync is not affected (its done and the next call leave together either way).
HOLD_MAX = 4
# How many times a sync execution waiting for its execute() reply polls for it (yielding the CPU in
# between) before the reading thread blocks in os.read (resp.Reader.spin); 0 turns it off.
SPIN = int(os.environ.get('GEARS_SPIN', '20'))


class Pool(object):
    """Reusable threads, unbounded: an idle thread takes the next task, else a new one starts."""

    IDLE_EXIT = 60.0

    def __init__(self):
        self._lock = threading.Lock()
        self._idle = []

    def submit(self, fn, *args):
        with self._lock:
            if self._idle:
                slot = self._idle.pop()
                slot[1] = (fn, args)
                slot[0].release()
                return
        slot = [threading.Lock(), (fn, args)]
        slot[0].acquire()
        t = threading.Thread(target=self._run, args=(slot,), name='gears-exec', daemon=True)
        t.start()

    def _run(self, slot):
        while True:
            fn, args = slot[1]
            slot[1] = None
            try:
                fn(*args)
            except BaseException:  # never let a task kill a pool thread silently
                sys.stderr.write('gearstest worker: task failed:\n' + traceback.format_exc())
            with self._lock:
                self._idle.append(slot)
            if not slot[0].acquire(timeout=self.IDLE_EXIT):
                with self._lock:
                    if slot in self._idle:
                        self._idle.remove(slot)
                        return
                slot[0].acquire()


def _s(b):
    if b is None:
        return None
    if isinstance(b, bytes):
        return b.decode('utf-8', 'replace')
    return str(b)


def _arg(b):
    try:
        return b.decode('utf-8')
    except UnicodeDecodeError:
        return bytearray(b)


class _Role(object):
    """The reader role (Worker.role): one per serve() call, so one per thread that ever reads."""

    __slots__ = ('nest_ok', 'nest_depth')

    def __init__(self):
        # Whether a trigger read now may run nested on this thread (see _call; None: no execution
        # waits below the serving loop), and how many run nested on it.
        self.nest_ok = None
        self.nest_depth = 0


# The sync lane's CPU (gearstest/pin_linux.go): while a round runs, the reading thread runs on the CPU
# Go's reader runs on, so that each execute() round trip is a switch between two threads of one run
# queue instead of two wake-ups of threads on idle CPUs. The worker's lane empties between triggers
# of a round whenever it has not read the next one yet, so the thread stays pinned until the lane
# was idle at two watchdog ticks in a row (5-10 ms). _PIN = [the CPU as a set (from `init`'s
# pin_cpu) or None, (native id, mask to restore) of the pinned thread or None, idle ticks].
_PIN = [None, None, 0]


def _pin_round():
    """A round starts on the reading thread: it runs on the lane's CPU until the lane idles."""
    _PIN[2] = 0
    if _PIN[1] is not None:
        return
    try:
        tid = threading.get_native_id()
        prev = os.sched_getaffinity(0)
        os.sched_setaffinity(0, _PIN[0])
    except (OSError, ValueError):
        return  # advice only
    _PIN[1] = (tid, prev)


def _unpin_round():
    """The lane is idle: the thread pinned for it gets its mask back (called by the watchdog)."""
    tid, prev = _PIN[1]
    _PIN[1] = None
    try:
        os.sched_setaffinity(tid, prev)
    except (OSError, ValueError):
        pass  # the thread is gone


def _write_rest(fd, data, n):
    """Writes data after its first n bytes, which a first os.write took (Worker.write, drain: the
    pipe was full). That first write is the callers' own: the usual one takes it all, and a
    memoryview costs more than the write call."""
    view = memoryview(data)[n:]
    while view:
        view = view[os.write(fd, view):]


# Tokens of atomic() blocks outside any execution's token (new_token).
_TOKENS = itertools.count(1)


class Worker(object):
    """The worker process: protocol I/O, registrations, sessions and executions."""

    # Keep the attributes of a Worker under 30: CPython 3.11 shares an instance's dict keys only up
    # to 30, and only then specializes attribute and method access on it (self.write(), self.mu, …
    # cost ~15% more per trigger past it; bench_callgrind.py). Settings go to state (rt.py).
    def __init__(self, inp, out_fd):
        self.inp = inp
        # The worker's own Reader is read directly (resp.read_value dispatches on its type per call).
        self.read_value = inp.read_value if type(inp) is resp.Reader else (lambda: resp.read_value(inp))
        self.out_fd = out_fd
        self.wlock = threading.Lock()
        self.outq = collections.deque()  # frames waiting for the thread that holds wlock (write)
        # Held frames (write): only with the worker's own Reader, whose buffer tells whether the
        # reading thread has more input to handle before it blocks.
        self.hold_ok = type(inp) is resp.Reader
        if self.hold_ok:
            inp.before_block = self.drain
        self.waiters = {}
        self.cids = itertools.count(1)
        # Reader role: self.role is the token of the thread that may read stdin (rt.tls.role).
        # exec_since is when that thread entered user code (None while it reads); exec_reg is the
        # registration it runs. All three are guarded by self.mu.
        self.mu = threading.Lock()
        self.role = None
        self.exec_since = None
        self.exec_reg = None
        self.pool = Pool()
        # Triggers read while the reading thread was nested NEST_MAX deep (see on_trigger).
        self.deferred = collections.deque()
        # Sync lane triggers (flag `l`, PROTOCOL.md): one runs at a time (lane_busy, under mu), the
        # ones read meanwhile wait here, in order, until it sends its done or yield (lane_next).
        self.lane_busy = False
        self.lane_queue = collections.deque()
        self.reg_lock = threading.RLock()
        self.regs = {}
        # What trigger_reg found per regid (bytes, as triggers carry it); filled and emptied under
        # reg_lock, emptied whenever regs or retired change (on_unregister, do_exec's commit; a
        # retired entry dropped past RETIRED_MAX then is no longer found, as without the cache).
        self.regcache = {}
        # Registrations unregistered or replaced (UPGRADE) lately: regid -> (reg, abort_pending). A
        # trigger Go accepted before that and that had not started yet meets its entry: with
        # abort_pending it is aborted without running (see run_trigger), else it runs the old code.
        self.retired = collections.OrderedDict()
        self.triggers = {}
        self.sessions = {}
        self.execs = {}
        self.check37 = True
        self.reqdir = None
        self.max_idle = 5.0
        self.timers = {}  # registerTE timer id -> (callback, session) (time_event)

    # ---------------------------------------------------------------- output / RPC

    def send(self, parts):
        self.write(resp.dumps(parts))

    def write(self, data):
        # Combining writer: a frame is queued; the thread that holds wlock writes everything queued
        # in one os.write. A thread that finds wlock taken returns at once: the holder checks the queue
        # again after releasing it, so nothing is left behind, and frames of one thread keep their
        # order. Threads no longer queue on wlock (each wait there was a GIL hand-off), and a burst
        # (a herd of resumed executions) leaves in a few big writes.
        q = self.outq
        if self.hold_ok and len(q) < HOLD_MAX:
            if tls.role is not None:
                # Held: a frame of the reading thread waits in the queue until that thread is about
                # to block in os.read (the Reader's before_block is drain), HOLD_MAX frames are held,
                # or another thread writes (it drains what is held before its own frame): a burst of
                # triggers' calls, the dones of a stack of nested executions unwinding, a sync lane
                # trigger's done and the next one's call, leave together, in order, in one write, and
                # Go's reader wakes once for them. The reading thread reads again soon after any
                # frame it writes (it runs short handlers and executions that wait by reading); when
                # it sits in user code instead, the watchdog drains what it holds within
                # STEAL_AFTER / 2.
                q.append(data)
                return
        lock = self.wlock
        if not q and lock.acquire(False):
            # Nothing queued and nobody writing (the usual case): written at once, then whatever
            # other threads queued meanwhile goes out below as usual.
            try:
                n = os.write(self.out_fd, data)
                if n < len(data):
                    _write_rest(self.out_fd, data, n)
            finally:
                lock.release()
            if not q:
                return
        else:
            q.append(data)
        self.drain()

    def drain(self):
        """Writes what is queued (unless another thread is writing: it checks the queue again)."""
        q = self.outq
        lock = self.wlock
        while q:
            if not lock.acquire(False):
                return
            try:
                while q:
                    if len(q) == 1:
                        buf = q.popleft()
                    else:
                        chunks = []
                        while q and len(chunks) < 256:
                            chunks.append(q.popleft())
                        buf = b''.join(chunks)
                    n = os.write(self.out_fd, buf)
                    if n < len(buf):
                        _write_rest(self.out_fd, buf, n)
            finally:
                lock.release()

    def call(self, parts, cid_index):
        """Sends an RPC (parts[cid_index] gets a fresh cid) and returns the reply value."""
        cid = b'%d' % next(self.cids)
        parts[cid_index] = cid
        return self.rpc(cid, resp.dumps(parts), parts[0] == b'call', CUR.get())

    def call_execute(self, ctx, token, argc, body):
        """execute() of argc arguments (body: their RESP bulks, the command name first) for ctx under
        lock token (bytes): the `call` RPC, its frame written directly (the hot path of every gear
        function)."""
        cid = b'%d' % next(self.cids)
        frame = b'*%d\r\n$4\r\ncall\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s' % (
            argc + 3, len(cid), cid, len(token), token, body)
        if ctx is None:
            return self._call(cid, frame, True, ctx)
        # As rpc() does (one call less on the hot path).
        ctx.in_rpc += 1
        try:
            return self._call(cid, frame, True, ctx)
        finally:
            ctx.in_rpc -= 1

    def rpc(self, cid, frame, is_call, ctx):
        """Sends frame, an RPC whose cid is cid, and returns the reply value; ctx is the running
        execution (CUR) or None."""
        if ctx is None:
            return self._call(cid, frame, is_call, ctx)
        # Counted for H1: a coroutine waiting for an RPC is not busy in its own code.
        ctx.in_rpc += 1
        try:
            return self._call(cid, frame, is_call, ctx)
        finally:
            ctx.in_rpc -= 1

    def _call(self, cid, frame, is_call, ctx):
        # slot = [lock to release or None, reply kind, reply value]; dispatch fills it.
        role = tls.role
        if role is None:
            # This thread does not read: it waits for the reading thread to fill the slot.
            lk = threading.Lock()
            lk.acquire()
            slot = [lk, None, None]
            self.waiters[cid] = slot
            self.write(frame)
            lk.acquire()
        else:
            # Nested reading: while this thread holds the reader role it reads on until its answer
            # (no lock: it fills the slot itself). A trigger read meanwhile may run right here, on
            # top of this one (see on_trigger), only while every execution on this thread waits for
            # an execute() reply holding no lock.
            slot = [None, None, None]
            self.waiters[cid] = slot
            self.write(frame)
            prev_ok = role.nest_ok
            if is_call and prev_ok is not False:
                role.nest_ok = (ctx is not None and ctx.kind == 'trigger' and not ctx.multi
                                and ctx.reg.mode != 'sync' and not (rt.atomic_users and tls.atomic_token))
            else:
                role.nest_ok = False
            mu = self.mu
            deferred = self.deferred
            # A sync execution holds the global lock: nothing else runs until its reply comes back,
            # ~10-20 us later (Go answers at once). Sleeping in os.read for it costs a wake-up, which
            # on a virtual machine with an idle vCPU is most of that again (perf sched on the 2-core
            # build VM: 12-16 us average wake-up delay), once per execute() on the sync path. So the
            # reading thread first polls for it a little, yielding the CPU to whatever else is
            # runnable there between polls (resp.Reader.spin): +20% sync triggers/s with 50 clients.
            inp = self.inp
            spin = SPIN if (self.hold_ok and ctx is not None and ctx.kind == 'trigger'
                            and ctx.reg.mode == 'sync') else 0
            try:
                while slot[1] is None:
                    mu.acquire()  # (no `with` on the hot path: it costs twice acquire+release)
                    stolen = self.role is not role
                    if not stolen:
                        self.exec_since = None
                    mu.release()
                    if stolen:
                        self.drain_deferred()
                        break
                    if deferred and role.nest_ok and role.nest_depth < NEST_MAX:
                        self.run_deferred(deferred.popleft(), True)
                        continue
                    if spin:
                        inp.spin = spin
                        self.read_one(True)
                        inp.spin = 0
                    else:
                        self.read_one(True)
            finally:
                role.nest_ok = prev_ok
            # Back in user code. No lock needed: the watchdog steals only from a thread whose
            # exec_since is set, and only this thread sets it while it holds the role.
            if self.role is role:
                self.exec_since = time.monotonic()
            if slot[1] is None:
                # The role was stolen before the answer came: the new reader fills the slot. The
                # lock goes in before the check, and dispatch fills the slot before it looks for
                # a lock: either this thread sees the answer or dispatch sees the lock.
                lk = threading.Lock()
                lk.acquire()
                slot[0] = lk
                if slot[1] is None:
                    lk.acquire()
        if slot[1] == b'e':
            raise error(_s(slot[2]) if not isinstance(slot[2], str) else str(slot[2]))
        return slot[2]

    def new_id(self):
        return _s(self.call([b'newid', None], 1))

    def new_token(self):
        return 't%d-%d' % (os.getpid(), next(_TOKENS))

    def warn(self, text):
        sys.stderr.write('gearstest WARNING: %s\n' % text)
        sys.stderr.flush()

    def hazard(self, hid, detail, wait=True):
        """Reports hazard hid (gearstest/hazards.go) to Go and returns its error text; with wait
        False (on the reading thread) it only reports it."""
        if not wait:
            self.send([b'hazard', b'', hid, detail])
            return None
        return _s(self.call([b'hazard', None, hid, detail], 1))

    # ---------------------------------------------------------------- input

    def serve(self):
        """Runs the reader role on this thread; returns when the role was handed to another thread."""
        role = _Role()
        with self.mu:
            self.role = role
            self.exec_since = None
        tls.role = role
        try:
            mu = self.mu
            while True:
                # (no `with` on the hot path: it costs twice an acquire and a release, and nothing
                # here can raise)
                mu.acquire()
                stolen = self.role is not role
                if not stolen:
                    self.exec_since = None
                    self.exec_reg = None
                mu.release()
                if stolen:
                    self.drain_deferred()
                    return
                if self.deferred:
                    self.run_deferred(self.deferred.popleft(), False)
                    continue
                self.read_one(False)
        finally:
            tls.role = None

    def watchdog(self):
        """Hands the reader role to a new thread when its holder is stuck in user code."""
        half = STEAL_AFTER / 2
        while True:
            time.sleep(half)
            if self.outq:
                # Frames the reading thread held (write) while it handles a long burst or sits in
                # user code: they wait at most this long.
                self.drain()
            if _PIN[1] is not None and not self.lane_busy:
                _PIN[2] += 1
                if _PIN[2] >= 2:
                    _unpin_round()
            note = None
            with self.mu:
                since = self.exec_since
                if since is None or time.monotonic() - since < STEAL_AFTER:
                    continue
                reg = self.exec_reg
                if reg is not None:
                    # A loaded machine can also stall a fast function for a moment: only a
                    # registration that got stuck a few times runs on the pool from now on.
                    reg.steals += 1
                    if reg.steals == 3:
                        reg.slow = True
                        note = ('trigger %r blocked the reading thread three times: its executions '
                                'run on the thread pool from now on' % reg.trigger)
                self.exec_since = None
                self.exec_reg = None
                self.role = None  # the stuck thread sees this and stops reading
                t = threading.Thread(target=self.serve, name='gears-reader', daemon=True)
                t.start()
            if note is not None:
                self.warn(note)

    def read_one(self, nested):
        try:
            msg = self.read_value()
        except EOFError:
            _dump_profile()
            if SPARE_DIR is not None:
                # A spare that never served a server: nobody else removes its directory.
                import shutil
                shutil.rmtree(SPARE_DIR, ignore_errors=True)
            os._exit(0)
        except (resp.ProtocolError, ValueError) as e:
            self.warn('skipping a broken message: %s' % e)
            return
        try:
            self.dispatch(msg, nested)
        except Exception:
            self.warn('failed handling a message: %s' % traceback.format_exc())

    def dispatch(self, msg, nested):
        if type(msg) is not list or not msg:
            self.warn('skipping a message that is not an array: %r' % (msg,))
            return
        name = msg[0]  # (a name that is not bytes matches no branch: see the last one)
        if name == b'reply':
            slot = self.waiters.pop(msg[1], None)
            if slot is None:
                self.warn('reply to unknown call %r' % (msg[1],))
                return
            slot[2] = msg[3] if len(msg) > 3 else None
            slot[1] = msg[2]
            if slot[0] is not None:
                slot[0].release()
        elif name == b'trigger':
            self.on_trigger(msg, nested)
        elif name == b'exec':
            self.pool.submit(self.on_exec, msg)
        elif name == b'reqs':
            self.pool.submit(self.on_reqs, msg)
        elif name == b'unregister':
            self.on_unregister(msg)
        elif name == b'timer':
            self.pool.submit(self.on_timer, msg)
        elif name == b'tedrop':
            self.timers.pop(_s(msg[2]), None)
            self.send([b'done', msg[1], [b'ok']])
        elif name == b'dropsession':
            with self.reg_lock:
                self.sessions.pop(_s(msg[2]), None)
            self.send([b'done', msg[1], [b'ok']])
        elif name == b'config':
            self.set_config(_s(msg[1]), _s(msg[2]))
        elif name == b'init':
            self.on_init(msg[1])
        elif name == b'abort':
            ctx = self.execs.get(msg[1])
            if ctx is not None:
                coro = ctx.coro
                if coro is not None and coro.cr_running and not ctx.in_rpc:
                    # H1: its async def function is busy in its own code (not suspended at an
                    # await, not waiting for execute()). The real server replies OK, but a function
                    # that never yields keeps running and blocks the event loop of every other
                    # async def function. Conservative: one that would yield later is reported too.
                    self.hazard('H1', "execution '%s'" % _s(msg[1]), wait=False)
                ctx.aborted = True
                if ctx.waiting is not None:
                    ctx.waiting.wake()
        elif not isinstance(name, bytes):
            self.warn('skipping a message that is not an array: %r' % (msg,))
        else:
            self.warn('skipping unknown message %r' % (name,))

    # ---------------------------------------------------------------- config

    def on_init(self, raw):
        global SPARE_DIR
        SPARE_DIR = None  # handed over: the server owns the directory now
        cfg = json.loads(raw.decode('utf-8'))
        for k, v in (cfg.get('config') or {}).items():
            self.set_config(k, v)
        self.check37 = bool(cfg.get('check37', True))
        self.reqdir = cfg.get('reqdir')
        state.cluster = cfg.get('cluster')
        cpu = cfg.get('pin_cpu', -1)
        _PIN[0] = {cpu} if isinstance(cpu, int) and cpu >= 0 else None

    def set_config(self, name, value):
        state.config[name] = value
        if name == 'ExecutionMaxIdleTime':
            try:
                self.max_idle = max(int(value), 1) / 1000.0
            except (TypeError, ValueError):
                pass
        elif name == 'PythonAttemptTraceback':
            try:
                pyerrors.attempt_traceback[0] = int(value) != 0
            except (TypeError, ValueError):
                pass

    # ---------------------------------------------------------------- registrations

    def trigger_owner(self, trigger):
        return self.triggers.get(trigger)

    def on_unregister(self, msg):
        # `unregister <rid> <regid>... [abortpending]` (PROTOCOL.md).
        abort_pending = b'abortpending' in msg[2:]
        with self.reg_lock:
            self.regcache.clear()
            for regid in msg[2:]:
                if regid == b'abortpending':
                    continue
                reg = self.regs.pop(_s(regid), None)
                if reg is None:
                    continue
                if self.triggers.get(reg.trigger) is reg:
                    del self.triggers[reg.trigger]
                try:
                    reg.session.regs.remove(reg.regid)
                except ValueError:
                    pass
                self.retire(reg, abort_pending)
        self.send([b'done', msg[1], [b'ok']])

    def retire(self, reg, abort_pending):
        """Records a registration that left (RG.UNREGISTER, UPGRADE/REPLACE_WITH); under reg_lock.

        As command_reader.c CommandReader_UnregisterTrigger with abortPending does: executions of it
        that have not started are aborted when they would start (their callers get [], the function
        never runs: gears-spec 8.1 "silent loss"); the started ones (running, or waiting on a
        gearsFuture) cannot be aborted (RG_AbortExecution fails): they go on and the server logs it.
        """
        self.retired[reg.regid] = (reg, abort_pending)
        while len(self.retired) > RETIRED_MAX:
            self.retired.popitem(last=False)
        if not abort_pending:
            return
        for ctx in list(self.execs.values()):
            if ctx.kind == 'trigger' and ctx.reg is reg:
                self.send([b'log', b'warning', 'Failed aborting execution on unregister.'])

    # ---------------------------------------------------------------- time events

    def time_event(self, ctx, period, callback, key):
        """registerTE() once its arguments passed: Go creates the timer (gearstest/timeevents.go).

        A script's top level numbers its calls, so that a restore (which re-runs the script after a
        worker restart) gives each call's callback back to the timer the same call of the same code
        (te_src: an UPGRADE of the session is another) created."""
        if getattr(ctx, 'replica', False):
            return True  # a cluster shard replaying another's script: the timer is the origin's
        ordinal = b''
        if ctx.kind == 'script':
            ctx.te_seq += 1
            ordinal = b'%d' % ctx.te_seq
        restore = ctx.kind == 'script' and ctx.restore_ids is not None
        token = '' if restore else (tls.atomic_token or ctx.token or '')
        res = self.call([b'te', None, token, b'%d' % period, key, ctx.session.sid, ordinal,
                         b'1' if restore else b'0', ctx.te_src if ctx.kind == 'script' else ''], 1)
        if res is None or res == 0:
            return False  # the key exists (or, restoring, no timer of this call is running)
        self.timers[_s(res)] = (callback, ctx.session)
        return True

    def on_timer(self, msg):
        """`timer <rid> <teid> <token>`: calls a time event's callback with no arguments (Go holds
        the global lock for token meanwhile, as Redis' main thread runs TimeEvent_Callback)."""
        rid = msg[1]
        entry = self.timers.get(_s(msg[2]))
        if entry is None:
            self.send([b'done', rid, [b'gone']])
            return
        callback, session = entry
        ctx = runtime.ExecCtx('timer', session, _s(msg[3]))
        tok = CUR.set(ctx)
        try:
            callback()
            answer = [b'ok']
        except BaseException as e:  # SystemExit included: a callback never kills the worker
            answer = [b'err', error_text(e)]
        finally:
            CUR.reset(tok)
        self.send([b'done', rid, answer])

    # ---------------------------------------------------------------- scripts

    def on_exec(self, msg):
        rid = msg[1]
        try:
            answer, after = self.do_exec(msg)
        except BaseException:
            answer, after = [b'err', 'gearstest worker failed: ' + traceback.format_exc()], None
        self.send([b'done', rid, answer])
        if after is not None:
            after()

    def do_exec(self, msg):
        sid = _s(msg[2])
        desc = _s(msg[3])
        src = _s(msg[4])
        mode = _s(msg[5])
        replaced = _s(msg[6])
        specs = [_s(x) for x in (msg[7] or [])]
        regids = [_s(x) for x in msg[8]] if len(msg) > 8 and msg[8] is not None else None
        # The lock token Go holds the global lock for while the script runs and commits (empty: Go
        # holds nothing, e.g. a restore; execute()/atomic() then lock per use).
        lock_token = _s(msg[9]) if len(msg) > 9 and msg[9] is not None else ''
        # Flags: 'r' = replica mode, a cluster shard applying what another shard's RG.PYEXECUTE
        # registered (PROTOCOL.md `exec`).
        replica = len(msg) > 10 and msg[10] is not None and b'r' in msg[10]
        if self.check37:
            try:
                py37.check(ast.parse(src, '<string>', 'exec', feature_version=(3, 7)))
            except SyntaxError as e:
                if e.msg and 'invalid syntax' not in e.msg:
                    self.warn('script is not valid Python 3.7 (line %s): %s' % (e.lineno, e.msg))
                return [b'err', syntax_error_text(e)], None
            except (ValueError, TypeError) as e:
                return [b'err', 'Error type: %s, Value: %s' % (type(e), e)], None
        try:
            code = compile(src, '<string>', 'exec')
        except SyntaxError as e:
            return [b'err', syntax_error_text(e)], None
        except (ValueError, TypeError) as e:
            return [b'err', 'Error type: %s, Value: %s' % (type(e), e)], None
        session = runtime.Session(sid, desc, specs)
        g = runtime.new_globals(session)
        ctx = runtime.ExecCtx('script', session, lock_token)
        ctx.pending_regs = []
        if mode in ('upgrade', 'replace'):
            ctx.replaced = replaced if replaced is not None else sid
        if mode == 'restore' or replica:
            ctx.restore_ids = iter(regids or [])
        ctx.replica = replica
        ctx.te_src = hashlib.sha1(src.encode('utf-8', 'surrogatepass')).hexdigest()
        tok = CUR.set(ctx)
        try:
            exec(code, g)
        except BaseException as e:  # SystemExit included: a script never kills the worker
            text = error_text(e)
            if ctx.created_exec is not None:
                self.send([b'execdone', ctx.created_exec.execid, b'aborted', resp.records_raw([]), []])
            return [b'err', text], None
        finally:
            CUR.reset(tok)
        pending = ctx.pending_regs
        if replica and (not pending or next(ctx.restore_ids, None) is not None):
            # The replay registered less than the origin did (its top level's execute() returned
            # None here): nothing is applied on this shard.
            return [b'err', 'the script registered %d registrations here, fewer than on the shard that '
                    'ran it (gearstest replays it on every shard, where execute() returns None at its '
                    'top level)' % len(pending)], None
        with self.reg_lock:
            for r in pending:
                owner = self.triggers.get(r.trigger) if r.trigger is not None else None
                if owner is not None and owner.session.sid != ctx.replaced:
                    if replica:
                        # The apply's verification on a shard (verifyRegister): Go prefixes
                        # "-ERR shard-<id>: ".
                        return [b'err', 'trigger already registered'], None
                    return [b'err', str(['Traceback (most recent call last):\n',
                                         'gears.error: trigger already registered\n'])], None
            if ctx.replaced is not None:
                old = self.sessions.pop(ctx.replaced, None)
                if old is not None:
                    for regid in list(old.regs):
                        reg = self.regs.pop(regid, None)
                        if reg is not None and self.triggers.get(reg.trigger) is reg:
                            del self.triggers[reg.trigger]
                        if reg is not None:
                            # The upgrade unregisters the old registrations with abortPending
                            # (FlatExecutionPlan_AddRegistrationToUnregister).
                            self.retire(reg, True)
                    old.regs = []
            self.regcache.clear()
            for r in pending:
                self.regs[r.regid] = r
                if r.trigger is not None:
                    self.triggers[r.trigger] = r
                session.regs.append(r.regid)
            if pending:
                self.sessions[sid] = session
        # The real server calls onRegistered while it applies the registration, before
        # RG.PYEXECUTE replies (src/execution_plan.c FlatExecutionPlan_AddToRegisterDict).
        for r in pending:
            if r.on_registered is not None:
                self.call_on_registered(r, lock_token)
        run = ctx.created_exec
        answer = [b'ok', [r.describe() for r in pending], run.execid if run is not None else None]
        if run is None:
            return answer, None
        return answer, lambda: self.pool.submit(self.run_execution, run)

    def call_on_registered(self, reg, lock_token=''):
        # Runs during the apply, while Go still holds the global lock for the script's token.
        ctx = runtime.ExecCtx('onregistered', reg.session, lock_token)
        tok = CUR.set(ctx)
        try:
            reg.on_registered()
        except BaseException as e:
            self.warn("Error occured on RedisGearsPy_OnRegistered, error='%s'" % error_text(e))
        finally:
            CUR.reset(tok)

    # ---------------------------------------------------------------- run()

    def create_run(self, ctx, session, steps, reader_fn, mode='async'):
        if ctx is not None and ctx.kind == 'script' and ctx.restore_ids is not None:
            # Restoring a committed session after a worker restart re-runs its script only to
            # rebuild the registrations; its run() already happened once.
            return runtime.RunFuture()
        execid = _s(self.call([b'newexec', None, engine.describe_steps(steps)], 1))
        rctx = runtime.ExecCtx('run', session, 'x' + execid)
        rctx.execid = execid
        rctx.steps = steps
        rctx.reader_fn = reader_fn
        rctx.mode = mode
        rctx.run_future = runtime.RunFuture()
        if ctx is not None and ctx.kind == 'script':
            ctx.created_exec = rctx
        else:
            self.pool.submit(self.run_execution, rctx)
        return rctx.run_future

    def run_execution(self, rctx):
        self.execs[rctx.execid.encode()] = rctx
        # The reader is read lazily, record by record, inside the plan (engine.run_steps). On a cluster
        # the default mode 'async' runs the plan on every shard (engine.run_distributed).
        if state.cluster and rctx.mode != 'async_local':
            gen = engine.run_distributed(rctx, rctx.steps, state.cluster, reader_fn=rctx.reader_fn)
        else:
            gen = engine.run_steps(rctx, rctx.steps, reader_fn=rctx.reader_fn)
        self.drive(rctx, gen, None, False)

    # ---------------------------------------------------------------- triggers

    def on_trigger(self, msg, nested):
        if F_LANE in msg[5]:
            # A sync lane trigger: Go already sent it while the previous one runs (it holds the
            # global lock for them in turn); it starts once that one is done or waits on a future.
            mu = self.mu
            mu.acquire()
            busy = self.lane_busy
            if busy:
                self.lane_queue.append(msg)
            else:
                self.lane_busy = True
            mu.release()
            if busy:
                return
            if _PIN[0] is not None and tls.role is not None:
                _pin_round()
        self.start_trigger(msg, nested)

    def lane_next(self):
        """The running lane trigger sent its done or yield: the next one read meanwhile starts."""
        mu = self.mu
        while True:
            mu.acquire()
            if not self.lane_queue:
                self.lane_busy = False
                mu.release()
                return
            msg = self.lane_queue.popleft()
            reader = tls.role is self.role
            mu.release()
            reg = self.trigger_reg(msg)
            if reg is None:
                self.send([b'done', msg[1], [b'ok', resp.records_raw([]), ['ERR subcommand not found']]])
                continue
            if reader and not reg.slow:
                # This thread reads: it runs it once back in its reading loop (the stack of the one
                # that just ended unwinds first).
                self.deferred.append((reg, msg))
            else:
                self.pool.submit(self.run_trigger, reg, msg, False)
            return

    def drain_deferred(self):
        """Hands the deferred triggers to the pool: for a thread that just lost the reader role, so
        that none waits for the new reader's next read."""
        while True:
            try:
                reg, msg = self.deferred.popleft()
            except IndexError:
                return
            self.pool.submit(self.run_trigger, reg, msg, False)

    def trigger_reg(self, msg):
        reg = self.regcache.get(msg[2])
        if reg is not None:
            return reg
        with self.reg_lock:
            regid = _s(msg[2])
            reg = self.regs.get(regid)
            if reg is None:
                # Go accepted the trigger just before its registration was unregistered or replaced
                # here: it runs the old registration, or is aborted when it starts (run_trigger).
                old = self.retired.get(regid)
                if old is not None:
                    reg = old[0]
            if reg is not None and len(self.regcache) < 4096:
                self.regcache[msg[2]] = reg
        return reg

    def start_trigger(self, msg, nested):
        reg = self.regcache.get(msg[2]) or self.trigger_reg(msg)
        if reg is None:
            self.send([b'done', msg[1], [b'ok', resp.records_raw([]), ['ERR subcommand not found']]])
            if F_LANE in msg[5]:
                self.lane_next()
            return
        if nested:
            role = tls.role
            if role.nest_ok and not reg.slow and not reg.steals and F_MULTI not in msg[5]:
                if role.nest_depth < NEST_MAX:
                    self.run_nested(reg, msg, role)
                elif reg.mode == 'sync':
                    # A sync trigger holds Go's global lock from before it was sent: deferred, it
                    # would wait for the executions below to unwind while their execute() calls wait
                    # for that lock (a deadlock seen with 50 sync and 50 async clients at once).
                    self.pool.submit(self.run_trigger, reg, msg, False)
                else:
                    # Too deep: run it on this thread once the stack unwinds a little. A pool
                    # thread would cost more: it contends for the GIL with this busy thread.
                    self.deferred.append((reg, msg))
            else:
                self.pool.submit(self.run_trigger, reg, msg, False)
            return
        if reg.slow:
            self.pool.submit(self.run_trigger, reg, msg, False)
            return
        # Into user code. No lock: this thread reads, and the watchdog steals only from a thread
        # whose exec_since is set (exec_reg first: the watchdog reads it once it saw exec_since).
        self.exec_reg = reg
        self.exec_since = time.monotonic()
        self.run_trigger(reg, msg, True)

    def run_deferred(self, item, nested):
        reg, msg = item
        if reg.slow or (nested and reg.steals):
            self.pool.submit(self.run_trigger, reg, msg, False)
        elif nested:
            self.run_nested(reg, msg)
        else:
            # Into user code, without the lock: as in start_trigger.
            self.exec_reg = reg
            self.exec_since = time.monotonic()
            self.run_trigger(reg, msg, True)

    def run_nested(self, reg, msg, role=None):
        # Runs a trigger read while the executions below it on this thread wait for execute()
        # replies (async ones, outside atomic(): they hold no lock the new one could need). It
        # saves handing it to a pool thread and back, which costs more than the execution.
        # Registrations that ever blocked the reader are not nested (they could delay the ones below).
        if role is None:
            role = tls.role
        # Into user code, without the lock: this thread reads (its exec_since is None, so the
        # watchdog cannot steal now), as in start_trigger.
        prev_reg = self.exec_reg
        self.exec_reg = reg
        self.exec_since = time.monotonic()
        role.nest_depth += 1
        try:
            self.run_trigger(reg, msg, True)
        finally:
            role.nest_depth -= 1
            mu = self.mu
            mu.acquire()  # out of user code: atomic with a steal (no `with`: see serve)
            if self.role is role:
                self.exec_since = None
                self.exec_reg = prev_reg
            mu.release()

    def run_trigger(self, reg, msg, inline):
        flags = msg[5]
        tokb = msg[4] or b''
        ctx = runtime.ExecCtx('trigger', reg.session, tokb.decode('utf-8', 'replace'), False, tokb)
        if flags:
            ctx.multi = F_MULTI in flags
            ctx.cmdctx = F_CMDCTX in flags  # a KeysReader commands= event (override_reply)
            ctx.lane = F_LANE in flags  # a sync lane trigger: lane_next once it is done or yields
        ctx.rid = msg[1]
        ctx.execid = msg[3]
        ctx.reg = reg
        # The execution starts here. Until now it was queued (from Go's acceptance: Go's inorder
        # queue, the pipe, the pool, the deferred list); an async one whose registration left with
        # abortPending meanwhile is aborted without running (RG_AbortExecution of an execution that
        # did not start: the caller gets []). A sync one started when Go accepted it.
        lk = self.reg_lock
        lk.acquire()
        try:
            old = self.retired.get(reg.regid) if reg.mode != 'sync' else None
            if old is None or old[0] is not reg or not old[1]:
                self.execs[ctx.execid] = ctx
                old = None
        finally:
            lk.release()
        if old is not None:
            self.send([b'done', ctx.rid, [b'ok', resp.records_raw([]), [], b'aborted']])
            if ctx.lane:
                self.lane_next()
            return
        if reg.evargs is not None:
            # A KeysReader/StreamReader event (flags k/s): the reader reads its records now.
            tok = CUR.set(ctx)
            try:
                records = events.event_records(reg, ctx.token, msg[6:], msg[5])
                if b'h' in msg[5]:
                    ctx.hook = records[0]
            except BaseException as e:
                records = []
                ctx.errors.append(error_text(e))
            finally:
                CUR.reset(tok)
        else:
            # The record: the args as str (bytearray when not valid UTF-8), as _arg makes them.
            try:
                record = list(map(bytes.decode, msg[6:]))
            except UnicodeDecodeError:
                record = [_arg(a) for a in msg[6:]]
            records = [record]
        if flags and F_DIST in flags and state.cluster:
            if reg.evargs is not None:
                # An async KeysReader registration's key event on a cluster: every shard runs the plan,
                # its reader reading the key with noScan (keys_reader.c KeysReader_OnKeyTouched runs
                # the registration in its mode; FlatExecutionPlan_RunOnly makes an async execution
                # distributed). The key is this shard's: the others read an 'empty' record.
                me = state.cluster['index']
                args = msg[6:]
                gen = engine.run_distributed(
                    ctx, reg.steps, state.cluster,
                    part_records=lambda p: records if p == me else [events.absent_key_record(reg, args)])
            else:
                # An async registration's RG.TRIGGER on a cluster: every shard runs it on the record.
                gen = engine.run_distributed(ctx, reg.steps, state.cluster, records=records)
        elif reg.single and len(records) == 1:
            # The hot path: the steps run right here; a generator only once one returns an awaitable.
            tok = CUR.set(ctx)
            try:
                out, gen = engine.run_single_direct(ctx, reg.direct, records[0])
                if gen is None:
                    self.finish(ctx, out, b'aborted' if ctx.aborted else b'done')
                    return
            finally:
                CUR.reset(tok)
        else:
            gen = engine.run_steps(ctx, reg.steps, records)
        self.drive(ctx, gen, None, inline)

    # ---------------------------------------------------------------- executions

    def drive(self, ctx, gen, value, inline):
        """Runs gen (engine.run_steps) to its end, waiting on what it yields."""
        tok = CUR.set(ctx)
        try:
            try:
                pending = gen.send(value)
                while True:
                    if ctx.kind == 'trigger' and not ctx.yielded and ctx.reg.mode == 'sync':
                        # Go releases the global lock this sync execution holds while it waits.
                        ctx.yielded = True
                        self.send([b'yield', ctx.rid])
                        if ctx.lane:
                            ctx.lane = False
                            self.lane_next()
                    if inline:
                        # Free the reading thread: the wait happens on the pool.
                        self.pool.submit(self.resume, ctx, gen, pending)
                        return
                    res = self.wait_pending(ctx, pending)
                    if res is None:
                        self.end_unresolved(ctx, gen)
                        return
                    pending = gen.send(res)
            except StopIteration as si:
                records = si.value or []
            except BaseException as e:
                records = []
                ctx.errors.append(error_text(e))
            self.finish(ctx, records, b'aborted' if ctx.aborted else b'done')
        finally:
            CUR.reset(tok)

    def resume(self, ctx, gen, pending):
        tok = CUR.set(ctx)
        try:
            res = self.wait_pending(ctx, pending)
        finally:
            CUR.reset(tok)
        if res is None:
            self.end_unresolved(ctx, gen)
            return
        self.drive(ctx, gen, res, False)

    def end_unresolved(self, ctx, gen):
        """Ends an execution whose wait ended without a value: aborted, or idle past ExecutionMaxIdleTime."""
        gen.close()
        if ctx.aborted:
            self.finish(ctx, [], b'aborted')
        else:
            ctx.errors.append(IDLE_TEXT)
            self.finish(ctx, [], b'done')

    def wait_pending(self, ctx, pending):
        """Waits for a future or coroutine; returns (OK, v), (ERR, text) or None (idle/abort)."""
        if isinstance(pending, runtime.GearsFuture):
            ctx.waiting = pending
            ok = pending.wait(self.max_idle)
            ctx.waiting = None
            if not ok or ctx.aborted:
                return None
            if pending.failed:
                return engine.ERR, pending.value
            return engine.OK, pending.value
        # a coroutine: run it on the asyncio loop thread, in this execution's context
        async def wrap():
            CUR.set(ctx)
            return await pending
        ctx.coro = pending if asyncio.iscoroutine(pending) else None
        cf = asyncio.run_coroutine_threadsafe(wrap(), runtime.get_loop())
        try:
            return engine.OK, cf.result(self.max_idle)
        except concurrent.futures.TimeoutError:
            cf.cancel()
            return None
        except BaseException as e:
            return engine.ERR, error_text(e)
        finally:
            ctx.coro = None

    def finish(self, ctx, records, status):
        eid = ctx.execid
        self.execs.pop(eid if type(eid) is bytes else eid.encode(), None)
        try:
            raw = resp.records_bytes(records)
        except RecursionError:
            # Nested deeper than the recursive encoder goes: encode without recursion, up to the
            # bound of hazard C6.
            try:
                raw = encode_deep(records)
            except pyerrors.flat_error as e:
                raw = resp.records_raw([])
                ctx.errors.append(str(e))
        except BaseException as e:
            raw = resp.records_raw([])
            ctx.errors.append(error_text(e))
        if ctx.kind == 'trigger':
            if ctx.override is None and not ctx.errors:
                # The common answer, `done <rid> ["ok", records, [], status]`, written directly.
                rid = ctx.rid
                self.write(b'*3\r\n$4\r\ndone\r\n$%d\r\n%s\r\n*4\r\n$2\r\nok\r\n%s*0\r\n$%d\r\n%s\r\n' % (
                    len(rid), rid, raw, len(status), status))
                if ctx.lane:
                    ctx.lane = False
                    self.lane_next()
                return
            answer = [b'ok', resp.Raw(raw), ctx.errors, status]
            if ctx.override is not None:
                # override_reply(v): Go replies v to the command instead of its own reply
                try:
                    answer.append(resp.records_raw([ctx.override[0]]))
                except BaseException as e:
                    ctx.errors.append(error_text(e))
            self.send([b'done', ctx.rid, answer])
            if ctx.lane:
                ctx.lane = False
                self.lane_next()
        else:
            self.send([b'execdone', ctx.execid, status, resp.Raw(raw), ctx.errors])
            if ctx.run_future is not None:
                ctx.run_future.set(records, list(ctx.errors))

    # ---------------------------------------------------------------- requirements

    def on_reqs(self, msg):
        import reqs
        rid = msg[1]
        try:
            force = msg[2] == b'1'
            specs = [_s(x) for x in msg[3:]]
            answer = reqs.ensure(specs, force, self.reqdir, self.warn)
        except BaseException:
            answer = [b'err', 'Could not satisfy requirements (look at redis log file for more information)']
            self.warn('requirements failed: %s' % traceback.format_exc())
        self.send([b'done', rid, answer])


# C6: a reply nested ~100,000 deep crashes the real server (stack overflow while it writes the
# reply). The bound is ten times lower: the C stack a level takes differs between builds and threads
# (executions run on RedisGears' own threads), and no realistic reply comes near it.
MAX_REPLY_DEPTH = 10000


def encode_deep(records):
    """resp.records_raw without recursion; raises the C6 hazard for a record nested deeper than
    MAX_REPLY_DEPTH (a list inside the records is depth 1)."""
    out = [b'*%d\r\n' % len(records)]
    stack = [iter(records)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                if len(stack) > MAX_REPLY_DEPTH:
                    raise runtime.hazard('C6', 'a reply nested more than %d deep' % MAX_REPLY_DEPTH)
                out.append(b'*%d\r\n' % len(v))
                stack.append(iter(v))
                break
            resp.encode_record(v, out)
        else:
            stack.pop()
    return resp.Raw(b''.join(out))


# How many unregistered/replaced registrations the worker remembers for triggers still on their way.
RETIRED_MAX = 1024


# `worker.py --spare <dir>`: a spare started ahead of any server (gearstest/warm.go). It says `ready`
# once warm; if its stdin ends before `init` (the Go process exited without using it), it removes
# <dir>, the directory Go made for it.
SPARE_DIR = None


# GEARS_PROFILE=<file>: profile every thread with cProfile and write the merged pstats to <file>
# when stdin ends (for measurements only; it slows the worker down).
_PROFILES = []


def _enable_profile():
    import cProfile

    def start(*_):
        sys.setprofile(None)
        pr = cProfile.Profile()
        _PROFILES.append(pr)
        pr.enable()
    threading.setprofile(start)
    start()


def _dump_profile():
    path = os.environ.get('GEARS_PROFILE')
    if not path or not _PROFILES:
        return
    import pstats
    for pr in _PROFILES:
        pr.disable()
    st = pstats.Stats(_PROFILES[0])
    for pr in _PROFILES[1:]:
        st.add(pr)
    st.dump_stats(path)


def main():
    global SPARE_DIR
    spare = len(sys.argv) == 3 and sys.argv[1] == '--spare'
    if spare:
        SPARE_DIR = sys.argv[2]
        del sys.argv[1:]  # user code sees the same argv as in a worker started for its server
    if os.environ.get('GEARS_PROFILE'):
        _enable_profile()
    # Keep the real stdin/stdout for the protocol only; user prints and child processes (pip)
    # get stderr and /dev/null instead, so they can never corrupt a frame.
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # A short GIL switch interval lets the reading thread hand replies to waiting pool threads
    # quickly while others compute (GEARS_SWITCH_INTERVAL overrides it, for measurements).
    sys.setswitchinterval(float(os.environ.get('GEARS_SWITCH_INTERVAL', '0.0005')))
    inp = resp.Reader(in_fd)
    w = Worker(inp, out_fd)
    state.worker = w
    runtime.install_guards()
    threading.Thread(target=w.watchdog, name='gears-watchdog', daemon=True).start()
    if spare:
        w.send([b'ready'])
    w.serve()
    # The reader role moved to another thread (this one got stuck in user code once); the
    # process lives until stdin ends (read_one exits then).
    threading.Event().wait()


if __name__ == '__main__':
    main()
