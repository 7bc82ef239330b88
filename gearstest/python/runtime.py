"""The Python API that gear scripts see (gears-spec section 2): GearsBuilder, execute, atomic, ...

Semantics follow RedisGears 1.2's plugins/python/GearsBuilder.py (the Python-side sugar such as
aggregate, count, sort, avg) and plugins/python/redisgears_python.c (the C operations, their
argument errors, execute(), atomic(), gearsFuture(), log()). Error texts are copied from there.
"""
import asyncio
import builtins
import copy
import threading
import types

import engine
import events
import pyerrors
import readers
import serialcheck
from pyerrors import error
from pyerrors import flat_error as GearsFlatError
import rt
from rt import CUR, state, tls

# The readers of the real server; the ones gearstest lacks so far answer with the texts the real
# C code uses for a reader that does not support run/register (redisgears_python.c run() and
# registerCreateArgs()).
_READERS = ('KeysReader', 'KeysOnlyReader', 'StreamReader', 'PythonReader', 'ShardsIDReader',
            'CommandReader')
_RUN_UNSUPPORTED = 'Given reader do not support run or not exists'
_REGISTER_UNSUPPORTED = 'given reader does not exists or does not support register'
# RG_CreateCtx's error for an unknown reader (src/module.c).
_UNKNOWN_READER = 'The given reader does not exists'


class Session(object):
    """One RG.PYEXECUTE: its private globals, shared by all functions the script defines."""

    def __init__(self, sid, desc, reqs):
        self.sid = sid
        self.desc = desc
        self.reqs = reqs
        self.regs = []  # registration ids owned by this session
        self.globals = None


class ExecCtx(object):
    """What the running code belongs to: a script run, a trigger execution or a run() execution."""

    __slots__ = ('kind', 'session', 'token', 'multi', 'fut', 'rid', 'execid', 'errors',
                 'created_exec', 'pending_regs', 'restore_ids', 'replaced', 'reg', 'aborted',
                 'waiting', 'yielded', 'steps', 'reader_fn', 'mode', 'run_future', 'coro', 'in_rpc',
                 'hook', 'cmdctx', 'override', 'replica', 'part', 'te_seq', 'te_src', 'lane', 'tokb')

    def __init__(self, kind, session, token='', multi=False, tokb=None):
        self.kind = kind
        self.session = session
        self.token = token
        # the token as execute() sends it (bytes), once per execution rather than once per call
        self.tokb = tokb if tokb is not None else (token or '').encode('utf-8', 'replace')
        self.multi = multi
        self.fut = None
        self.rid = None
        self.execid = None
        self.errors = []
        self.created_exec = None
        self.pending_regs = None
        self.restore_ids = None
        self.replaced = None
        self.reg = None
        self.aborted = False
        self.waiting = None
        self.coro = None  # the async def coroutine the execution waits for (H1)
        self.in_rpc = 0  # RPCs to Go (execute(), atomic(), …) the execution waits for (H1)
        self.hook = None  # the hooked command's [name, args...] (call_next/get_command)
        self.cmdctx = False  # a KeysReader commands= execution: override_reply() allowed
        self.override = None  # (value,) once override_reply(value) was called
        self.yielded = False
        self.run_future = None
        self.steps = None
        self.reader_fn = None
        self.mode = None
        self.lane = False
        self.part = None  # a partition of a distributed execution: its shard's index (engine.py)
        self.te_seq = 0  # registerTE() calls made so far by a script's top level (time_event)
        self.te_src = ''  # a script's digest: which version of its session a timer belongs to
        self.replica = False  # a script replayed on another cluster shard (worker.do_exec)

    def set_token(self, token):
        """Changes the lock token (a partition of a distributed execution: engine.py); token and
        tokb change only together."""
        self.token = token
        self.tokb = token.encode('utf-8', 'replace')


def _replica_script():
    # Whether the running code is the top level of a script replayed in replica mode: there execute()
    # does nothing and log() is silent (the real server runs the script on one shard only).
    ctx = CUR.get()
    return ctx is not None and ctx.replica and ctx.kind == 'script'


class Registration(object):
    """A CommandReader registration committed in the worker."""

    __slots__ = ('regid', 'session', 'reader', 'desc', 'mode', 'trigger', 'inorder', 'steps',
                 'on_registered', 'slow', 'steals', 'evargs', 'single', 'direct')

    def __init__(self, regid, session, reader, desc, mode, trigger, inorder, steps, on_registered):
        self.regid = regid
        self.session = session
        self.reader = reader
        self.desc = desc
        self.mode = mode
        self.trigger = trigger
        self.inorder = inorder
        self.steps = steps
        self.on_registered = on_registered
        self.slow = False  # executions blocked the reading thread: run them on the pool
        self.steals = 0
        self.evargs = None  # KeysReader/StreamReader: the reader's args (events.py)
        # Only map/filter/foreach steps: a trigger's one record goes through them without a
        # generator (engine.run_single_direct). The plan is a deep copy: it never changes.
        self.single = all(s.kind in engine.ONE_TO_ONE for s in steps)
        self.direct = engine.direct_steps(steps) if self.single else None

    def describe(self):
        """Returns the reg value of the exec answer (PROTOCOL.md)."""
        d = [self.regid, self.reader, self.desc, self.mode, self.trigger,
             1 if self.inorder else 0, engine.describe_steps(self.steps)]
        if self.evargs is not None:
            d.append(self.evargs)
        return d


# ------------------------------------------------------------------------------------------
# execute / atomic / log / config


def _reply_to_py(v):
    # Reply mapping of replyToPyList(): bulk/status -> str (bytearray if not UTF-8),
    # integer -> int, array -> list, nil -> None.
    if isinstance(v, bytes):
        try:
            return v.decode('utf-8')
        except UnicodeDecodeError:
            return bytearray(v)
    if isinstance(v, list):
        return [_reply_to_py(x) for x in v]
    if isinstance(v, str):
        return str(v)
    return v


def _arg_bytes(a):
    if isinstance(a, (bytes, bytearray)):
        return bytes(a)
    if not isinstance(a, str):
        a = str(a)
    return a.encode('utf-8', 'surrogatepass')


# ------------------------------------------------------------------------------------------
# hazards: what crashes or hangs a real RedisGears 1.2.13 (gears-spec.md 8.1; the list, its texts
# and evidence are in gearstest/hazards.go). Each check here is one detection point.


def hazard(hid, detail=''):
    """Reports hazard hid to Go (which logs and counts it) and returns the exception to raise.

    It is a flat error (its text is the whole execution error, without a traceback), so the caller
    gets an error whose code is HAZARD; user code can still catch it.
    """
    return pyerrors.flat_error(state.worker.hazard(hid, detail))


def _thread_hazard(what, session):
    # K2: execute()/atomic() from a thread the script started (no execution context) takes the Redis
    # lock while holding the GIL on the real server: it hangs the whole server.
    if session is not None:
        what = "%s in session '%s'" % (what, session.sid)
    return hazard('K2', what)


# C2-C4: commands that crash the real server when a gear function runs them (any mode).
_CRASHING_COMMANDS = {'WAIT': 'C2', 'SYNC': 'C3', 'PSYNC': 'C4'}


# Not hazards: commands that need a real connection, which Redis refuses to RedisModule_Call's client
# (flagged CLIENT_DENY_BLOCKING): a clean error on the real server (gears-spec 8.1). The texts are
# Redis 7.0's (monitorCommand, subscribeCommand, psubscribeCommand, ssubscribeCommand), with the
# trailing CRLF execute() errors keep (gears-spec 8); assumed, not recorded from a real server.
_DENY_BLOCKING = {
    'MONITOR': "MONITOR isn't allowed for DENY BLOCKING client\r\n",
    'SUBSCRIBE': "SUBSCRIBE isn't allowed for a DENY BLOCKING client\r\n",
    'PSUBSCRIBE': "PSUBSCRIBE isn't allowed for a DENY BLOCKING client\r\n",
    'SSUBSCRIBE': "SSUBSCRIBE isn't allowed for a DENY BLOCKING client\r\n",
}


# The commands _check_command looks at (upper-cased); execute() skips the check for the others.
_CHECKED_COMMANDS = frozenset(list(_CRASHING_COMMANDS) + list(_DENY_BLOCKING) + ['CLIENT'])


def _check_command(cmd, args):
    """Raises the hazard of execute(cmd, *args) if it has one (or the error of a refused command)."""
    up = cmd.upper()
    hid = _CRASHING_COMMANDS.get(up)
    if hid is not None:
        raise hazard(hid)
    refused = _DENY_BLOCKING.get(up)
    if refused is not None:
        raise error(refused)
    if up == 'CLIENT' and len(args) > 1 and _text(args[1]).upper() == 'KILL':
        sync, caller = _sync_caller()
        if sync and _client_kill_may_hit_caller([_text(a) for a in args[2:]], caller):
            raise hazard('C5', ', '.join(repr(_text(a)) for a in args[2:]))


def _text(a):
    if isinstance(a, (bytes, bytearray)):
        return bytes(a).decode('utf-8', 'replace')
    return str(a)


def _sync_caller():
    """Returns (sync, caller id): whether the running code runs synchronously for a client (a sync
    trigger, the top level of an RG.PYEXECUTE script, its onRegistered) and that client's id, taken
    from the lock token Go gives it (c<CLIENT ID>, PROTOCOL.md), or None."""
    ctx = CUR.get()
    if ctx is None:
        return False, None
    if ctx.kind == 'trigger':
        sync = ctx.reg is not None and ctx.reg.mode == 'sync'
    else:
        # A script or onRegistered with a token runs for the RG.PYEXECUTE client (a restore has
        # none); run() executions run on their own.
        sync = ctx.kind in ('script', 'onregistered') and bool(ctx.token)
    caller = None
    tok = ctx.token or ''
    if tok.startswith('c') and tok[1:].isdigit():
        caller = int(tok[1:])
    return sync, caller


def _client_kill_may_hit_caller(rest, caller):
    """C5: whether CLIENT KILL <rest> may kill the calling client (Redis 7.0 CLIENT KILL syntax).

    Conservative: the caller's address, local address and user are not known here, so those filters
    may match; only an ID other than the caller's or a TYPE the caller cannot have rules it out.
    Arguments the real server refuses (a syntax error kills nobody) are left to it.
    """
    if len(rest) == 1:
        return ':' in rest[0]  # the old form CLIENT KILL ip:port: may be the caller's address
    if not rest or len(rest) % 2:
        return False
    for i in range(0, len(rest), 2):
        f, v = rest[i].lower(), rest[i + 1]
        if f == 'id':
            try:
                n = int(v)
            except ValueError:
                return False
            if caller is not None and n != caller:
                return False
        elif f == 'type':
            if v.lower() in ('master', 'replica', 'slave'):
                return False
        elif f not in ('addr', 'laddr', 'user', 'skipme', 'maxage'):
            return False
    return True


# C7: a recursion limit far above the default lets recursion overflow the C stack of the real
# server (Python 3.7 recurses on the C stack; the crash was seen with 1,000,000). The bound is 10x
# the default 1000: 10,000 levels stay within the 8 MB stacks of Redis' main thread and RedisGears'
# worker threads; limits above it are refused when they are set.
MAX_RECURSION_LIMIT = 10000
_orig_setrecursionlimit = None


def _setrecursionlimit(limit):
    if isinstance(limit, int) and limit > MAX_RECURSION_LIMIT:
        raise hazard('C7', 'sys.setrecursionlimit(%d) above %d' % (limit, MAX_RECURSION_LIMIT))
    return _orig_setrecursionlimit(limit)


def install_guards():
    """Installs the process-wide hazard checks (sys.setrecursionlimit); called once by the worker."""
    global _orig_setrecursionlimit
    import sys
    if _orig_setrecursionlimit is None:
        _orig_setrecursionlimit = sys.setrecursionlimit
        sys.setrecursionlimit = _setrecursionlimit


def make_execute(session):
    def execute(*args):
        if len(args) < 1:
            return []
        cmd = args[0]
        if not isinstance(cmd, str):
            raise error('the given command must be a string')
        ctx = CUR.get()
        if ctx is not None and ctx.replica and ctx.kind == 'script':
            return None  # _replica_script(): execute() does nothing there
        tok = rt.atomic_users and tls.atomic_token
        if not tok:
            if ctx is None:
                raise _thread_hazard('execute()', session)
            tokb = ctx.tokb
        else:
            tokb = tok.encode('utf-8', 'replace')
        body = _PLAIN_COMMANDS.get(cmd) if type(cmd) is str else None
        if body is None:
            up = cmd.upper()
            if up in _CHECKED_COMMANDS:
                _check_command(cmd, args)
            b = cmd.encode('utf-8', 'replace')
            body = b'$%d\r\n%s\r\n' % (len(b), b)
            if type(cmd) is str and up not in _CHECKED_COMMANDS and len(_PLAIN_COMMANDS) < 4096:
                _PLAIN_COMMANDS[cmd] = body
        # The `call` frame's arguments, RESP-encoded (worker.call_execute puts the header on).
        parts = [body]
        for a in args[1:]:
            b = a.encode('utf-8', 'surrogatepass') if type(a) is str else _arg_bytes(a)
            parts.append(b'$%d\r\n%s\r\n' % (len(b), b))
        v = state.worker.call_execute(ctx, tokb, len(args), b''.join(parts))
        if type(v) is bytes:  # _reply_to_py of the usual reply, inline
            try:
                return v.decode('utf-8')
            except UnicodeDecodeError:
                return bytearray(v)
        return _reply_to_py(v)
    return execute


# Command names execute() was called with that _check_command has nothing to say about, with their
# RESP bulk encoding: the next call with one skips the check and the encoding.
_PLAIN_COMMANDS = {}


def make_atomic(session):
    class atomic(object):
        """Context manager that holds the global (Redis) lock (redisgears atomicCtx)."""

        def __enter__(self):
            if getattr(tls, 'atomic_token', None):
                raise error('Already inside an atomic block')
            ctx = CUR.get()
            if ctx is not None and ctx.token:
                tok = ctx.token
            else:
                if ctx is None:
                    raise _thread_hazard('atomic()', session)
                tok = state.worker.new_token()
            state.worker.call([b'lock', None, tok], 1)
            rt.set_atomic_token(tok)
            return self

        def __exit__(self, *exc):
            tok = getattr(tls, 'atomic_token', None)
            if not tok:
                raise error('Not inside an atomic block')
            rt.set_atomic_token(None)
            state.worker.send([b'unlock', tok])
            return False
    return atomic


# createKeysOnlyReader's generator calls the module-level execute() of GearsBuilder.py.
readers.execute = make_execute(None)


def isInAtomicBlock():
    return bool(getattr(tls, 'atomic_token', None))


def flat_error(*args):
    """redisgears.flatError (GearsBuilder.py imports it as flat_error): it RAISES gears.flat_error(msg).

    So `raise flat_error('m')` and a bare `flat_error('m')` (e.g. `lambda x: flat_error('m')`) both
    fail the execution with exactly `m` (gears-spec section 8).
    """
    if len(args) != 1:
        raise error('not enough arguments for time flat error')
    raise GearsFlatError(args[0])


_LEVELS = ('debug', 'verbose', 'notice', 'warning')


def log(*args, **kargs):
    level = kargs.get('level')
    if len(args) < 1 or len(args) > 2:
        raise error('log function must get a log message as input')
    if len(args) == 2 and not _replica_script():
        state.worker.send([b'log', b'warning', 'Specify log level as the first argument to log '
                           'function is depricated, use key argument \'level\' instead'])
        level, msg = args
    else:
        msg = args[0]
    if not isinstance(msg, str):
        raise error('Log message must be a string')
    lvl = 'notice'
    if level is not None:
        if not isinstance(level, str):
            raise error('Log level must be a sting (debug/verbose/notice/warning)')
        if level not in _LEVELS:
            raise error('Log level should be one of the following : debug,verbose,notice,warning')
        lvl = level
    if _replica_script():
        return
    state.worker.send([b'log', lvl, msg])


def configGet(*args):
    if len(args) != 1:
        raise error('get_config function must get a single key input')
    key = args[0]
    if not isinstance(key, str):
        raise error('get_config key must be a string')
    v = state.worker.call([b'configget', None, key], 1)
    if v is None:
        return None
    v = _reply_to_py(v)
    return v if isinstance(v, str) else str(v)


def gearsConfigGet(key, default=None):
    val = configGet(key)
    return val if val is not None else default


def _part_shard():
    # The shard the running code runs on: a distributed execution's partition, else this one.
    cl = state.cluster
    ctx = CUR.get()
    if ctx is not None and ctx.part is not None:
        return cl['shards'][ctx.part]
    return cl


def hashtag():
    # The tag of the first slot of the shard the step runs on (src/cluster.c Cluster_GetMyHashTag);
    # stand-alone: slot 0's, '06S' (src/slots_table.c).
    if state.cluster:
        return _part_shard()['hashtag']
    return '06S'


def isAsyncAllow():
    ctx = CUR.get()
    if ctx is None or ctx.kind == 'script':
        return False
    return not ctx.multi


def registerTE(*args, **kargs):
    # gearsTimeEvent (plugins/python/redisgears_python.c, RedisGears v1.2.13): a METH_VARARGS C
    # function, checked in this order; the timer itself lives in Go (gearstest/timeevents.go).
    if kargs:
        raise TypeError('registerTimeEvent() takes no keyword arguments')
    if len(args) < 2 or len(args) > 3:
        raise error('not enough arguments for time event')
    callback = args[1]
    if not isinstance(callback, types.FunctionType):  # PyFunction_Check: lambdas too, not builtins
        raise error('callback must be a function')
    period = args[0]
    if not isinstance(period, int):  # PyLong_Check (a bool is one)
        raise error('time argument must be a long')
    ctx = CUR.get()
    if ctx is None:
        # ptctx->currSession is NULL in a thread the script started.
        raise error('can not create time event on a python created thread')
    if not -2 ** 63 <= period < 2 ** 63:
        raise OverflowError('Python int too large to convert to C long')
    # A keyName that is not a str is ignored (PyUnicode_Check): the timer has no key.
    key = args[2] if len(args) == 3 and isinstance(args[2], str) else None
    return state.worker.time_event(ctx, int(period), callback, key)


def call_next(*args):
    ctx = CUR.get()
    if ctx is None or ctx.hook is None:
        raise error('Can not get CommandHook ctx')
    # The hooked command itself, with the arguments given (gearstest runs one hook per command:
    # the last registered; execute() from a function is never hooked).
    return make_execute(ctx.session)(ctx.hook[0], *args)


def get_command(*args):
    ctx = CUR.get()
    if ctx is None or ctx.hook is None:
        raise error('Can not get CommandHook ctx')
    return list(ctx.hook)


def override_reply(*args):
    # overrideReply (redisgears_python.c): only in an execution of a KeysReader registration with
    # commands= that a client command started; the value replaces the command's reply (encoded as a
    # record, gears-spec 2.6), once.
    ctx = CUR.get()
    if ctx is None or not ctx.cmdctx:
        raise error('Can not get command ctx')
    if len(args) != 1:
        raise error('Override reply must get a single argument')
    if ctx.override is not None:
        raise error('Can only override reply once')
    ctx.override = (args[0],)


# ------------------------------------------------------------------------------------------
# gearsFuture


class GearsFuture(object):
    """redisgears.Future: lets another thread continue the execution that returned it."""

    __slots__ = ('_ev', '_used', '_returned', 'value', 'failed', 'ctype')

    def __init__(self):
        # A held lock is the unset event: release() sets it. Cheaper than threading.Event (a
        # Condition in Python), which counts when a herd of waiters is resumed at once.
        self._ev = threading.Lock()
        self._ev.acquire()
        self._used = False
        self._returned = False
        self.value = None
        self.failed = False

    def continueRun(self, *args):
        if len(args) != 1:
            raise error('Continue function expect an object')
        if self._used:
            raise error('Can not continue with the same future twice')
        if not self._returned:
            raise error('Can not handle future untill it returned from the callback')
        self._used = True
        self.value = args[0]
        self._set()

    def continueFailed(self, *args):
        if len(args) != 1:
            raise error('Continue function expect an object')
        if self._used:
            raise error('Can not continue with the same future twice')
        self._used = True
        self.value = str(args[0])
        self.failed = True
        self._set()

    def mark_returned(self):
        self._returned = True

    def _set(self):
        try:
            self._ev.release()
        except RuntimeError:  # already set (an abort's wake() raced a continueRun)
            pass

    def wait(self, timeout):
        if not self._ev.acquire(True, timeout):
            return False
        self._set()  # stays set
        return True

    def wake(self):
        self._set()


GearsFuture.__name__ = 'Future'
GearsFuture.__qualname__ = 'Future'
GearsFuture.__module__ = 'redisgears'


def gearsFuture(*args):
    if args:
        raise error('Future gets no arguments')
    ctx = CUR.get()
    if ctx is None or ctx.kind == 'script':
        raise error('Future object can only be created inside certain execution steps')
    if ctx.fut is not None:
        raise error('Can not create async record twice on the same step')
    if ctx.multi:
        raise error('Creating async record is not allowed')
    f = GearsFuture()
    ctx.fut = f
    return f


# asyncio support (createFuture/setFutureResults/setFutureException/runCoroutine) on one loop
# thread, as GearsBuilder.py does.
_loop = None
_loop_lock = threading.Lock()


def get_loop():
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            t = threading.Thread(target=_loop.run_forever, name='gears-asyncio', daemon=True)
            t.start()
        return _loop


def createFuture():
    loop = get_loop()
    return loop.create_future()


def setFutureResults(f, res):
    loop = get_loop()

    def _set():
        if not f.done():
            f.set_result(res)
    loop.call_soon_threadsafe(_set)


def setFutureException(f, exception):
    loop = get_loop()
    if not isinstance(exception, Exception):
        exception = Exception(str(exception))

    def _set():
        if not f.done():
            f.set_exception(exception)
    loop.call_soon_threadsafe(_set)


def runCoroutine(cr, f=None, delay=0, s=None):
    ctx = CUR.get()

    async def run_internal():
        if ctx is not None:
            CUR.set(ctx)
        try:
            if delay:
                await asyncio.sleep(delay)
            res = await cr
        except Exception as e:
            try:
                if f is not None:
                    f.continueFailed(e)
            except Exception as e1:
                log(str(e1))
            return
        if f is not None:
            f.continueRun(res)
    asyncio.run_coroutine_threadsafe(run_internal(), get_loop())


# ------------------------------------------------------------------------------------------
# GearsBuilder


def _is_function(f):
    return isinstance(f, types.FunctionType)


class GearsBuilder(object):
    """GB(reader='KeysReader', defaultArg='*', desc=None): builds an execution plan."""

    def __init__(self, reader='KeysReader', defaultArg='*', desc=None):
        ctx = CUR.get()
        if ctx is None:
            raise error('Can not create a gearsCtx on a python created thread')
        if not isinstance(reader, str):
            raise error('reader argument must be a string')
        if desc is not None and not isinstance(desc, str):
            raise error('desc argument must be a string')
        self.realReader = reader
        if reader in ('ShardsIDReader', 'KeysOnlyReader'):
            reader = 'PythonReader'
        if ctx.restore_ids is None:
            # Every GB() is a flat execution plan and takes an id (gears-spec section 0), even one
            # whose reader turns out not to exist (FlatExecutionPlan_New comes first in RG_CreateCtx).
            state.worker.new_id()
        if reader not in _READERS:
            raise error(_UNKNOWN_READER)
        self.reader = reader
        self.defaultArg = defaultArg
        self.desc = desc
        self._session = ctx.session
        self._steps = [engine.Step('topy')]

    # --- C operations (redisgears_python.c), with their argument errors -------------------

    def _one_fn(self, op, args):
        if len(args) != 1:
            raise error('wrong number of args to %s function' % op)
        if not _is_function(args[0]):
            raise error('%s argument must be a function' % op)
        return args[0]

    def map(self, *args):
        self._steps.append(engine.Step('map', self._one_fn('map', args)))
        return self

    def filter(self, *args):
        self._steps.append(engine.Step('filter', self._one_fn('filter', args)))
        return self

    def flatmap(self, *args):
        self._steps.append(engine.Step('flatmap', self._one_fn('flatmap', args)))
        return self

    def foreach(self, *args):
        self._steps.append(engine.Step('foreach', self._one_fn('foreach', args)))
        return self

    def accumulate(self, *args):
        self._steps.append(engine.Step('accumulate', self._one_fn('accumulate', args)))
        return self

    def repartition(self, *args):
        self._steps.append(engine.Step('repartition', self._one_fn('repartition', args)))
        return self

    def _two_fns(self, errname, args):
        if len(args) != 2:
            raise error('wrong number of args to %s function' % errname)
        if not _is_function(args[0]):
            raise error('%s extractor argument must be a function' % errname)
        if not _is_function(args[1]):
            raise error('%s reducer argument must be a function' % errname)
        return args

    def localgroupby(self, *args):
        ex, red = self._two_fns('groupby', args)
        self._steps.append(engine.Step('localgroupby', ex, red))
        return self

    def groupby(self, *args):
        ex, red = self._two_fns('groupby', args)
        self._steps.append(engine.Step('groupby', ex, red))
        return self

    def batchgroupby(self, *args):
        if len(args) != 2:
            raise error('wrong number of args to batchgroupby function')
        if not _is_function(args[0]):
            raise error('batchgroupby extractor argument must be a function')
        # The C code checks the extractor twice and never the reducer; a non-function reducer
        # fails when called.
        self._steps.append(engine.Step('batchgroupby', args[0], args[1]))
        return self

    def collect(self, *args):
        if args:
            raise error('wrong number of args to collect function')
        self._steps.append(engine.Step('collect'))
        return self

    def limit(self, *args):
        if len(args) < 1 or len(args) > 2:
            raise error('wrong number of args to limit function')
        if not isinstance(args[0], int):
            raise error('limit argument must be a number')
        offset = 0
        if len(args) > 1:
            if not isinstance(args[1], int):
                raise error('limit argument must be a number')
            offset = args[1]
        self._steps.append(engine.Step('limit', args[0], offset))
        return self

    # --- Python sugar (GearsBuilder.py) ---------------------------------------------------

    def aggregate(self, zero, seqOp, combOp):
        self.accumulate(lambda a, r: seqOp(a if a else copy.deepcopy(zero), r))
        self.collect()
        self.accumulate(lambda a, r: combOp(a if a else copy.deepcopy(zero), r))
        return self

    def aggregateby(self, extractor, zero, seqOp, combOp):
        self.localgroupby(lambda x: extractor(x),
                          lambda k, a, r: seqOp(k, a if a else copy.deepcopy(zero), r))
        self.groupby(lambda r: r['key'],
                     lambda k, a, r: combOp(k, a if a else copy.deepcopy(zero), r['value']))
        return self

    def count(self):
        self.accumulate(lambda a, r: 1 + (a if a else 0))
        self.collect()
        self.accumulate(lambda a, r: r + (a if a else 0))
        return self

    def countby(self, extractor=lambda x: x):
        self.aggregateby(extractor, 0, lambda k, a, r: 1 + a, lambda k, a, r: r + a)
        return self

    def sort(self, reverse=True):
        self.aggregate([], lambda a, r: a + [r], lambda a, r: a + r)
        self.map(lambda r: sorted(r, reverse=reverse))
        self.flatmap(lambda r: r)
        return self

    def distinct(self):
        return self.aggregate(set(), lambda a, r: a | set([r]), lambda a, r: a | r).flatmap(
            lambda x: list(x))

    def avg(self, extractor=lambda x: float(x)):
        return self.map(extractor).aggregate(
            (0, 0), lambda a, r: (a[0] + r, a[1] + 1),
            lambda a, r: (a[0] + r[0], a[1] + r[1])).map(lambda x: x[0] / x[1])

    # --- actions ----------------------------------------------------------------------------

    def run(self, arg=None, convertToStr=True, collect=True, **kargs):
        if convertToStr:
            self.map(lambda x: str(x))
            self._steps[-1].tostr = True
        if collect:
            self.collect()
        arg = arg if arg else self.defaultArg
        if self.realReader == 'ShardsIDReader':
            arg = _shard_reader
        elif self.realReader == 'KeysOnlyReader':
            # A PythonReader over SCAN (GearsBuilder.py): run()'s keyword arguments go to
            # createKeysOnlyReader as they are, so one it lacks (mode= too) is a TypeError.
            arg = readers.createKeysOnlyReader(arg, **kargs)
        return self._c_run(arg, kargs)

    def _c_run(self, arg, kargs):
        ctx = CUR.get()
        if ctx is not None and ctx.kind == 'script' and ctx.created_exec is not None:
            raise error('Can not run more then 1 executions in a single script')
        arg_err = None
        if self.reader == 'PythonReader':
            if not _is_function(arg):
                raise error('pyreader argument must be a function')
            reader_fn = arg
        else:
            if not isinstance(arg, str):
                raise error('regex argument must be a string')
            if self.reader == 'KeysReader':
                reader_fn, arg_err = _keys_reader_fn(arg, kargs)
            elif self.reader == 'StreamReader':
                reader_fn, arg_err = _stream_reader_fn(arg, kargs)
            else:
                raise error(_RUN_UNSUPPORTED)
        # run() takes only async and async_local (redisgears_python.c run(): checked after the
        # reader's argument was built; a bad mode wins over a bad reader argument).
        pymode = kargs.get('mode')
        if pymode is not None:
            if not isinstance(pymode, str):
                raise error('execution mode must be a string')
            if pymode not in ('async', 'async_local'):
                raise error('unknown execution mode')
        if arg_err is not None:
            raise error(arg_err)
        steps = list(self._steps)
        return state.worker.create_run(ctx, self._session, steps, reader_fn, pymode or 'async')

    def register(self, prefix='*', convertToStr=True, collect=True, **kargs):
        if convertToStr:
            self.map(lambda x: str(x))
            self._steps[-1].tostr = True
        if collect:
            self.collect()
        kargs['prefix'] = prefix
        if 'regex' in kargs:
            log('Using regex argument with register is deprecated and missleading, use prefix instead.',
                level='warning')
            kargs['prefix'] = kargs['regex']
        return self._c_register(kargs)

    def _c_register(self, kargs):
        ctx = CUR.get()
        mode = 'async'
        pymode = kargs.get('mode')
        if pymode is not None:
            if not isinstance(pymode, str):
                raise error('execution mode must be a string')
            if pymode not in ('async', 'sync', 'async_local'):
                raise error('unknown execution mode')
            mode = pymode
        on_registered = kargs.get('onRegistered')
        if on_registered is not None and not _is_function(on_registered):
            raise error('OnRegistered argument must be a function')
        evargs = None
        trigger, inorder = None, False
        if self.reader != 'CommandReader':
            prefix = kargs.get('prefix')
            if prefix is not None and not isinstance(prefix, str):
                raise error('regex argument must be a string')
            if self.reader == 'KeysReader':
                evargs = events.keys_register_args(kargs, prefix if prefix is not None else '*')
            elif self.reader == 'StreamReader':
                evargs = events.stream_register_args(kargs, prefix if prefix is not None else '*', mode)
            else:
                raise error(_REGISTER_UNSUPPORTED)
        else:
            trigger, inorder = _command_args(kargs)
            if isinstance(trigger, _Hook):
                if mode != 'sync':
                    raise error('Can not override a none sync registration')
                evargs = ['hook', trigger.command, 'keyprefix', trigger.keyprefix]
                trigger = None
        if ctx is None or ctx.kind != 'script':
            raise error('register() outside RG.PYEXECUTE is not supported by gearstest')
        if trigger is not None:
            # Verification (command_reader.c): the trigger must be unique among live registrations,
            # except those of the session being replaced, and within this script.
            for r in ctx.pending_regs:
                if r.trigger == trigger:
                    raise error('trigger already registered in this session')
            owner = state.worker.trigger_owner(trigger)
            # A replica's conflicts are reported by the apply (worker.do_exec), as a shard's error.
            if owner is not None and owner.session.sid != ctx.replaced and not ctx.replica:
                raise error('trigger already registered')
        steps = list(self._steps)
        fns = engine.callbacks(steps)
        if on_registered is not None:
            fns.append(on_registered)
        for fn in fns:
            try:
                serialcheck.check(fn)
            except serialcheck.SerializationError as se:
                cause = se.args[0]
                text = str(['Traceback (most recent call last):\n',
                            '%s: %s\n' % (type(cause).__name__, serialcheck.message37(cause))])
                raise error('Error occured when serialized a python callback, callback=%s error=%s'
                            % (getattr(fn, '__name__', str(fn)), text))
        if ctx.restore_ids is not None:
            try:
                regid = next(ctx.restore_ids)
            except StopIteration:
                raise error('Failed register execution')
        else:
            # register() deep-copies the plan: a new id (RG_PrepareForRegister). Go takes the one
            # more id the real server's apply step uses, once per RG.PYEXECUTE (gears-spec 8).
            regid = state.worker.new_id()
        reg = Registration(regid, self._session, self.reader, self.desc, mode, trigger,
                           inorder, steps, on_registered)
        reg.evargs = evargs
        ctx.pending_regs.append(reg)
        return regid


class _ReaderRedis(object):
    """The Redis access of a C reader: commands and the lock, under the running execution's token."""

    __slots__ = ('token',)

    def __init__(self):
        ctx = CUR.get()
        self.token = ctx.token if ctx is not None else ''

    def call(self, *args):
        # `rcall`: the C readers open keys directly (RedisModule_OpenKey), without RM_Call's cluster
        # check, so a shard reads what it has (a missing key is 'empty') and never fails with
        # 'Operation not permitted'.
        parts = [b'rcall', None, self.token, args[0]]
        parts.extend(_arg_bytes(a) for a in args[1:])
        return state.worker.call(parts, 1)

    def lock(self):
        state.worker.call([b'lock', None, self.token], 1)

    def unlock(self):
        state.worker.send([b'unlock', self.token])


def _keys_reader_fn(pattern, kargs):
    # runCreateKeysReaderArgs() of redisgears_python.c: (reader function, argument error or None).
    # A given None is not absent (PyDict_GetItemString finds it, PyBool_Check refuses it).
    no_scan = kargs.get('noScan', False)
    if not isinstance(no_scan, bool):
        return None, 'exactMatch value is not boolean'
    read_value = kargs.get('readValue', True)
    if not isinstance(read_value, bool):
        return None, 'readValue value is not boolean'
    return (lambda: readers.keys_reader(_ReaderRedis(), pattern, no_scan, read_value)), None


def _stream_reader_fn(key, kargs):
    # runCreateStreamReaderArgs() of redisgears_python.c: fromId defaults to '0-0' (exclusive).
    from_id = kargs.get('fromId', '0-0')
    if not isinstance(from_id, str):
        return None, 'fromId argument must be a string'
    return (lambda: readers.stream_reader(_ReaderRedis(), key, from_id)), None


def _command_args(kargs):
    # registerCreateCommandArgs() of redisgears_python.c, same order of checks.
    trigger = kargs.get('trigger')
    if trigger is not None and not isinstance(trigger, str):
        raise error('trigger argument is not string')
    inorder = False
    pyin = kargs.get('inorder')
    if pyin is not None:
        if not isinstance(pyin, bool):
            raise error('inorder argument is be boolean')
        inorder = pyin
    keyprefix = kargs.get('keyprefix')
    if keyprefix is not None and not isinstance(keyprefix, str):
        raise error('keyprefix argument is not string')
    hook = kargs.get('hook')
    if hook is not None and not isinstance(hook, str):
        raise error('hook argument is not string')
    if trigger is not None:
        if keyprefix is not None or hook is not None:
            raise error('trigger argument can not be given with keyprefix or hook')
        return trigger, inorder
    if hook is None:
        raise error('no trigger or hook argument was given')
    # hook= (+ keyprefix=): the command filter of command_reader.c. A hook is not a trigger:
    # RG.TRIGGER does not reach it; Go runs it in place of the hooked command (events.go).
    return _Hook(hook, keyprefix), inorder


class _Hook(object):
    __slots__ = ('command', 'keyprefix')

    def __init__(self, command, keyprefix):
        self.command = command
        self.keyprefix = keyprefix


def _shard_reader():
    # shardReaderCallback(): stand-alone (RG.INFOCLUSTER answers 'no cluster mode') -> '1'; a shard of
    # a cluster -> its node id.
    yield _part_shard()['myid'] if state.cluster else '1'


class RunFuture(object):
    """What run() returns: awaitable in a coroutine, resolving to [results, errors]."""

    def __init__(self):
        self._lock = threading.Lock()
        self._result = None
        self._waiters = []

    def set(self, records, errors):
        """Called when the execution ends (any thread)."""
        with self._lock:
            self._result = [records, errors]
            waiters, self._waiters = self._waiters, []
        loop = get_loop()
        for f in waiters:
            loop.call_soon_threadsafe(_resolve, f, self._result)

    def __await__(self):
        loop = get_loop()
        f = loop.create_future()
        with self._lock:
            if self._result is not None:
                f.set_result(self._result)
            else:
                self._waiters.append(f)
        return (yield from f.__await__())


def _resolve(f, value):
    if not f.done():
        f.set_result(value)


# ------------------------------------------------------------------------------------------
# session globals


def _deprecated(old, new, target):
    def method(*args, **kargs):
        log('%s is deprecated, use %s instead' % (old, new), level='warning')
        return target(*args, **kargs)
    method.__name__ = old
    return method


_BASE = None


def _base_globals():
    global _BASE
    if _BASE is None:
        redisgears_mod = _redisgears_module()
        g = {
            '__name__': 'not_main',
            '__builtins__': builtins,
            '__doc__': None,
            'GearsBuilder': GearsBuilder,
            'GB': GearsBuilder,
            'hashtag': hashtag,
            'log': log,
            'configGet': configGet,
            'gearsConfigGet': gearsConfigGet,
            'registerTE': registerTE,
            'gearsFuture': gearsFuture,
            'call_next': call_next,
            'get_command': get_command,
            'override_reply': override_reply,
            'isAsyncAllow': isAsyncAllow,
            'isInAtomicBlock': isInAtomicBlock,
            'flat_error': flat_error,
            'createFuture': createFuture,
            'setFutureResults': setFutureResults,
            'setFutureException': setFutureException,
            'runCoroutine': runCoroutine,
            'asyncio': asyncio,
            'copy': copy,
            # GearsBuilder.py imports these at module level, so scripts see them too.
            'Future': asyncio.Future,
            'Thread': threading.Thread,
            'redisgears': redisgears_mod,
            'rg': redisgears_mod,
            'Log': _deprecated('Log', 'log', log),
            'ConfigGet': _deprecated('ConfigGet', 'configGet', configGet),
            'GearsConfigGet': _deprecated('GearsConfigGet', 'gearsConfigGet', gearsConfigGet),
        }
        _BASE = g
    return _BASE


def _redisgears_module():
    # The C module's names that scripts reach as redisgears.X (or rg.X).
    import sys
    m = types.ModuleType('redisgears')
    m.executeCommand = make_execute(None)
    m.atomicCtx = make_atomic(None)
    m.getMyHashTag = hashtag
    m.log = log
    m.config_get = configGet
    m.gearsFutureCtx = gearsFuture
    m.isInAtomicBlock = isInAtomicBlock
    m.registerTimeEvent = registerTE
    m.callNext = call_next
    m.getCommand = get_command
    m.overrideReply = override_reply
    m.error = error
    m.flatError = flat_error
    m.GearsFlatError = GearsFlatError
    m.GearsBuilder = GearsBuilder
    sys.modules.setdefault('redisgears', m)
    return m


def new_globals(session):
    """Returns a fresh copy of the base globals for a session (PyDict_Copy(pyGlobals))."""
    g = dict(_base_globals())
    ex = make_execute(session)
    g['execute'] = ex
    g['atomic'] = make_atomic(session)
    session.globals = g
    return g


__all__ = ['Session', 'ExecCtx', 'Registration', 'new_globals', 'GearsFuture', 'RunFuture',
           'error', 'flat_error']
