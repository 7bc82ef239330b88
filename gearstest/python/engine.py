"""Runs an execution plan's steps over records (gears-spec 2.3; src/execution_plan.c semantics).

run_steps() is a generator: it yields a pending object (a gearsFuture or a coroutine) when a step
callback goes async, and the driver (worker.py) sends back (OK, value) or (ERR, text) once it is
resolved, possibly from another thread. The generator returns the final records.
"""
import types

from pyerrors import error_text

OK = 0
ERR = 1
PENDING = 2

# C-level step names as RG.GETEXECUTION shows them (docs/commands.md example).
_DESCRIBE = {
    'topy': [['map', 'RedisGearsPy_ToPyRecordMapper', None]],
    'map': [['map', 'RedisGearsPy_PyCallbackMapper', 1]],
    'filter': [['filter', 'RedisGearsPy_PyCallbackFilter', 1]],
    'flatmap': [['flatmap', 'RedisGearsPy_PyCallbackFlatMapper', 1]],
    'foreach': [['foreach', 'RedisGearsPy_PyCallbackForEach', 1]],
    'accumulate': [['accumulate', 'RedisGearsPy_PyCallbackAccumulate', 1]],
    'repartition': [['repartition', 'RedisGearsPy_PyCallbackExtractor', 1]],
    'localgroupby': [['extractkey', 'RedisGearsPy_PyCallbackExtractor', 1],
                     ['accumulatebykey', 'RedisGearsPy_PyCallbackAccumulateByKey', 2],
                     ['map', 'RedisGearsPy_ToPyRecordMapper', None]],
    'groupby': [['extractkey', 'RedisGearsPy_PyCallbackExtractor', 1],
                ['repartition', 'repartition', None],
                ['accumulatebykey', 'RedisGearsPy_PyCallbackAccumulateByKey', 2],
                ['map', 'RedisGearsPy_ToPyRecordMapper', None]],
    'batchgroupby': [['extractkey', 'RedisGearsPy_PyCallbackExtractor', 1],
                     ['repartition', 'repartition', None],
                     ['group', 'group', None],
                     ['reduce', 'RedisGearsPy_PyCallbackReducer', 2],
                     ['map', 'RedisGearsPy_ToPyRecordMapper', None]],
    'collect': [['collect', 'collect', None]],
    'limit': [['limit', 'limit', None]],
}


class Step(object):
    """One operation of a plan: kind plus up to two callbacks/arguments."""

    __slots__ = ('kind', 'f1', 'f2')

    def __init__(self, kind, f1=None, f2=None):
        self.kind = kind
        self.f1 = f1
        self.f2 = f2


def describe_steps(steps):
    """Returns [[type, name, arg], ...] as RG.GETEXECUTION lists them: last step first.

    The real server keeps a plan's steps in a list it prepends to (docs/commands.md shows
    GB().run() as collect, map(str), map(RedisGearsPy_ToPyRecordMapper)).
    """
    out = []
    for s in steps:
        for t, name, which in _DESCRIBE[s.kind]:
            arg = ''
            if which == 1 and s.f1 is not None:
                arg = repr(s.f1)
            elif which == 2 and s.f2 is not None:
                arg = repr(s.f2)
            out.append([t, name, arg])
    out.reverse()
    return out


def callbacks(steps):
    """Returns the Python callbacks a plan holds (the ones the real server serializes)."""
    out = []
    for s in steps:
        if s.kind in ('limit',):
            continue
        for f in (s.f1, s.f2):
            if isinstance(f, types.FunctionType):
                out.append(f)
    return out


def _invoke(ctx, fn, args):
    # Calls a step callback; returns (OK, value), (ERR, text) or (PENDING, awaitable).
    ctx.fut = None
    try:
        v = fn(*args)
    except BaseException as e:  # a user script can never kill the worker
        ctx.fut = None
        return ERR, error_text(e)
    f = ctx.fut
    if f is not None:
        ctx.fut = None
        if v is f:
            f.mark_returned()
            return PENDING, f
        return OK, v
    if type(v) is types.CoroutineType:
        return PENDING, v
    return OK, v


def _extract(ctx, fn, r):
    # RedisGearsPy_PyCallbackExtractor: a str key as is, anything else through repr(); a coroutine is
    # refused; a gearsFuture is not awaited there (its repr is the key).
    ctx.fut = None
    try:
        k = fn(r)
    except BaseException as e:
        ctx.fut = None
        return ERR, error_text(e)
    ctx.fut = None
    if type(k) is types.CoroutineType:
        k.close()
        return ERR, 'coroutine are not allow on extractor'
    return OK, k if isinstance(k, str) else repr(k)


def run_steps(ctx, steps, records):
    """Generator: runs steps over records; yields pending awaitables; returns the records."""
    errors = ctx.errors
    for s in steps:
        kind = s.kind
        if kind == 'topy' or kind == 'collect':
            continue
        fn = s.f1
        if kind == 'map':
            out = []
            for r in records:
                st, v = _invoke(ctx, fn, (r,))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    errors.append(v)
                    continue
                out.append(v)
            records = out
        elif kind == 'filter':
            out = []
            for r in records:
                st, v = _invoke(ctx, fn, (r,))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    errors.append(v)
                    continue
                if v:
                    out.append(r)
            records = out
        elif kind == 'flatmap':
            out = []
            for r in records:
                st, v = _invoke(ctx, fn, (r,))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    errors.append(v)
                    continue
                if isinstance(v, list):
                    # The C step pops from the end of the list record: reverse order (gears-spec 2.3).
                    out.extend(reversed(v))
                else:
                    out.append(v)
            records = out
        elif kind == 'foreach':
            out = []
            for r in records:
                st, v = _invoke(ctx, fn, (r,))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    errors.append(v)
                    continue
                out.append(r)
            records = out
        elif kind == 'accumulate':
            acc = None
            seen = False
            for r in records:
                st, v = _invoke(ctx, fn, (acc, r))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    # RedisGearsPy_PyCallbackAccumulate frees the accumulator on error: the next
                    # record starts again from None.
                    errors.append(v)
                    acc = None
                    seen = False
                    continue
                acc = v
                seen = True
            # No record in, no record out (count() over nothing: gears-spec section 8).
            records = [acc] if seen else []
        elif kind == 'repartition':
            out = []
            for r in records:
                st, v = _extract(ctx, fn, (r))
                if st is ERR:
                    errors.append(v)
                    continue
                out.append(r)  # one shard: every record stays here
            records = out
        elif kind == 'localgroupby' or kind == 'groupby':
            groups = {}
            red = s.f2
            for r in records:
                st, k = _extract(ctx, fn, r)
                if st is ERR:
                    errors.append(k)
                    continue
                st, v = _invoke(ctx, red, (k, groups.get(k), r))
                if st is PENDING:
                    st, v = yield v
                if st is ERR:
                    # The key's accumulator is freed on error (AccumulateByKey returns NULL).
                    errors.append(v)
                    groups.pop(k, None)
                    continue
                groups[k] = v
            records = [{'key': k, 'value': v} for k, v in groups.items()]
        elif kind == 'batchgroupby':
            groups = {}
            for r in records:
                st, k = _extract(ctx, fn, r)
                if st is ERR:
                    errors.append(k)
                    continue
                groups.setdefault(k, []).append(r)
            out = []
            for k, lst in groups.items():
                st, v = _invoke(ctx, s.f2, (k, lst))
                if st is PENDING:
                    # RedisGearsPy_PyCallbackReducer refuses coroutines; a future is just a value.
                    if type(v) is types.CoroutineType:
                        v.close()
                        st, v = ERR, 'coroutine are not allow on reduce'
                    else:
                        st = OK
                if st is ERR:
                    errors.append(v)
                    continue
                out.append({'key': k, 'value': v})
            records = out
        elif kind == 'limit':
            n, off = s.f1, s.f2
            records = records[off:off + n] if n >= 0 else records[off:]
    return records


def read_python_reader(ctx, reader_fn):
    """Runs a PythonReader generator function; returns its records (errors go to ctx.errors)."""
    out = []
    try:
        it = reader_fn()
        if it is None:
            return out
        for r in it:
            out.append(r)
    except BaseException as e:
        ctx.errors.append(error_text(e))
    return out


__all__ = ['Step', 'run_steps', 'describe_steps', 'callbacks', 'read_python_reader', 'OK', 'ERR',
           'PENDING']
