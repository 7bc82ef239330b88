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

    __slots__ = ('kind', 'f1', 'f2', 'tostr')

    def __init__(self, kind, f1=None, f2=None):
        self.kind = kind
        self.f1 = f1
        self.f2 = f2
        # The map(lambda x: str(x)) of run()/register()'s convertToStr: for a str record the direct
        # path skips the call (str() of a str is that str).
        self.tostr = False


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


def _reduce(ctx, fn, k, lst):
    # RedisGearsPy_PyCallbackReducer (batchgroupby's reducer): a coroutine is refused; a gearsFuture
    # is not awaited there, it is just the value. Returns (OK, value) or (ERR, text).
    s, v = _invoke(ctx, fn, (k, lst))
    if s is PENDING:
        if type(v) is types.CoroutineType:
            v.close()
            return ERR, 'coroutine are not allow on reduce'
        return OK, v
    return s, v


class _Err(object):
    """An error record on its way up the plan (the C steps pass error records on untouched)."""

    __slots__ = ('text',)

    def __init__(self, text):
        self.text = text


_END = object()  # no more records from this step


class _Source(object):
    """The reader: a list (a trigger's one record) or a Python generator (run()), read lazily."""

    def __init__(self, ctx, records=None, reader_fn=None):
        self.ctx = ctx
        self.it = iter(records) if records is not None else None
        self.reader_fn = reader_fn
        self.done = False

    def next(self):
        if self.done:
            return _END
        if self.it is None:
            # The reader function is called on the first read and what it returns is iterated (None:
            # no record). An exception ends the reader with that error (PythonReader_Next).
            try:
                v = self.reader_fn()
                self.it = iter(()) if v is None else iter(v)
            except BaseException as e:
                self.done = True
                self.ctx.errors.append(error_text(e))
                return _END
        try:
            return next(self.it)
        except StopIteration:
            self.done = True
            return _END
        except BaseException as e:
            self.done = True
            self.ctx.errors.append(error_text(e))
            return _END


def _pull(ctx, step, prev, st):
    """Generator: the next record of step (or _Err, or _END), pulling from prev as the C engine does."""
    kind = step.kind
    fn = step.f1
    while True:
        if kind == 'flatmap' and st['buf']:
            return st['buf'].pop()
        if kind in ('accumulate', 'localgroupby', 'groupby', 'batchgroupby') and st.get('out') is not None:
            return st['out'].pop() if st['out'] else _END
        if kind == 'limit' and st['taken'] >= step.f1 >= 0:
            return _END
        r = yield from _next(ctx, prev)
        if r is _END:
            if kind == 'accumulate':
                st['out'] = [st['acc']] if st['seen'] else []
                continue
            if kind in ('localgroupby', 'groupby'):
                st['out'] = [{'key': k, 'value': v} for k, v in st['groups'].items()][::-1]
                continue
            if kind == 'batchgroupby':
                out = []
                for k, lst in st['groups'].items():
                    s, v = _reduce(ctx, step.f2, k, lst)
                    out.append(_Err(v) if s is ERR else {'key': k, 'value': v})
                st['out'] = out[::-1]
                continue
            return _END
        if isinstance(r, _Err):
            return r
        if kind == 'map':
            s, v = yield from _call(ctx, fn, (r,))
            return _Err(v) if s is ERR else v
        if kind == 'filter':
            s, v = yield from _call(ctx, fn, (r,))
            if s is ERR:
                return _Err(v)
            if v:
                return r
            continue
        if kind == 'flatmap':
            s, v = yield from _call(ctx, fn, (r,))
            if s is ERR:
                return _Err(v)
            if isinstance(v, list):
                # The C step pops from the end of the list record: reverse order (gears-spec 2.3).
                st['buf'] = list(v)
                continue
            return v
        if kind == 'foreach':
            s, v = yield from _call(ctx, fn, (r,))
            return _Err(v) if s is ERR else r
        if kind == 'accumulate':
            s, v = yield from _call(ctx, fn, (st['acc'], r))
            if s is ERR:
                # RedisGearsPy_PyCallbackAccumulate frees the accumulator on error: the next
                # record starts again from None.
                st['acc'], st['seen'] = None, False
                return _Err(v)
            st['acc'], st['seen'] = v, True
            continue
        if kind == 'repartition':
            s, v = _extract(ctx, fn, r)
            return _Err(v) if s is ERR else r  # one shard: every record stays here
        if kind in ('localgroupby', 'groupby'):
            s, k = _extract(ctx, fn, r)
            if s is ERR:
                return _Err(k)
            groups = st['groups']
            s, v = yield from _call(ctx, step.f2, (k, groups.get(k), r))
            if s is ERR:
                # The key's accumulator is freed on error (AccumulateByKey returns NULL).
                groups.pop(k, None)
                return _Err(v)
            groups[k] = v
            continue
        if kind == 'batchgroupby':
            s, k = _extract(ctx, fn, r)
            if s is ERR:
                return _Err(k)
            st['groups'].setdefault(k, []).append(r)
            continue
        if kind == 'limit':
            if st['skipped'] < step.f2:
                st['skipped'] += 1
                continue
            st['taken'] += 1
            return r
        return r  # topy, collect


def _call(ctx, fn, args):
    """Generator: calls a step callback and waits for it when it goes async; returns (OK|ERR, value)."""
    s, v = _invoke(ctx, fn, args)
    if s is PENDING:
        s, v = yield v
    return s, v


def _next(ctx, node):
    if isinstance(node, _Source):
        return node.next()
        yield  # a generator like the steps' (never reached)
    step, prev, st = node
    return (yield from _pull(ctx, step, prev, st))


_ONE_TO_ONE = ONE_TO_ONE = frozenset(('topy', 'collect', 'map', 'filter', 'foreach'))


def direct_steps(steps):
    """The steps run_single_direct takes: the plan without its topy and collect steps (they do
    nothing to one record)."""
    return tuple(s for s in steps if s.kind != 'topy' and s.kind != 'collect')


def run_single_direct(ctx, steps, r):
    """_run_single without a generator while no step returns an awaitable (a trigger of one
    record through map/filter/foreach steps, the hot path); steps come from direct_steps(). Returns
    (records, None) once done, or (None, gen): a generator like run_steps' that yields the pending
    awaitable first and goes on from there (the caller drives it from its start)."""
    i = 0
    for s in steps:
        if s.tostr and type(r) is str:
            i += 1
            continue
        # _invoke(ctx, s.f1, (r,)), inline (the hot path).
        ctx.fut = None
        try:
            v = s.f1(r)
        except BaseException as e:  # a user script can never kill the worker
            ctx.fut = None
            ctx.errors.append(error_text(e))
            return [], None
        f = ctx.fut
        if f is not None:
            ctx.fut = None
            if v is f:
                f.mark_returned()
                return None, _resume_single(ctx, steps, i, r, f)
        elif type(v) is types.CoroutineType:
            return None, _resume_single(ctx, steps, i, r, v)
        kind = s.kind
        if kind == 'map':
            r = v
        elif kind == 'filter' and not v:
            return [], None
        i += 1
    return [r], None


def _resume_single(ctx, steps, i, r, pending):
    # Step i returned pending: the rest of _run_single from there.
    st, v = yield pending
    if st is ERR:
        ctx.errors.append(v)
        return []
    kind = steps[i].kind
    if kind == 'map':
        r = v
    elif kind == 'filter' and not v:
        return []
    return (yield from _run_single(ctx, steps[i + 1:], r))


def _run_single(ctx, steps, r):
    for s in steps:
        kind = s.kind
        if kind == 'topy' or kind == 'collect':
            continue
        st, v = _invoke(ctx, s.f1, (r,))
        if st is PENDING:
            st, v = yield v
        if st is ERR:
            ctx.errors.append(v)
            return []
        if kind == 'map':
            r = v
        elif kind == 'filter' and not v:
            return []
    return [r]


def run_steps(ctx, steps, records=None, reader_fn=None):
    """Generator: runs the plan over the reader's records; yields pending awaitables; returns the records.

    Records are pulled through the steps one at a time, as the C engine does (ExecutionPlan_Execute
    asks the last step for its next record, which asks the step before it, down to the reader): a
    record goes all the way up before the next one is read, and accumulate/groupby steps read their
    whole input before they give anything. An error record goes up to the execution's errors; after
    it, the reader gives no more records (gears-spec section 8: in a run(), a step that raised for one
    record ends the execution there, the records already produced are returned with the error). What
    was already read finishes its way up (the other records a flatmap made of it, the accumulators).
    """
    if records is not None and len(records) == 1:
        for s in steps:
            if s.kind not in _ONE_TO_ONE:
                break
        else:
            # A trigger's one record through map/filter/foreach steps: the same as the pull below,
            # without its generator per step and record (the hot path).
            return (yield from _run_single(ctx, steps, records[0]))
    src = _Source(ctx, records, reader_fn)
    node = src
    for s in steps:
        if s.kind in ('topy', 'collect'):
            continue
        st = {'buf': None}
        if s.kind == 'accumulate':
            st.update(acc=None, seen=False, out=None)
        elif s.kind in ('localgroupby', 'groupby', 'batchgroupby'):
            st.update(groups={}, out=None)
        elif s.kind == 'limit':
            st.update(skipped=0, taken=0)
        node = (s, node, st)
    out = []
    errors = ctx.errors
    while True:
        r = yield from _next(ctx, node)
        if r is _END:
            break
        if isinstance(r, _Err):
            errors.append(r.text)
            src.done = True
            continue
        out.append(r)
    return out


# ------------------------------------------------------------------------------------------------
# Distributed executions: a gearstest cluster (gearstest/cluster_exec.go).
#
# On a real cluster a non-local execution runs its plan on every shard and the records move between
# shards at the boundary steps (src/execution_plan.c, v1.2.13): collect() sends every record to the
# initiator (ExecutionPlan_CollectNextRecord); repartition(f) sends each to the shard that owns the
# key f(r) (ExecutionPlan_RepartitionNextRecord; an error record stays where it is); groupby and
# batchgroupby extract the key, repartition by it, then accumulate/group on the shard that owns it.
# Whatever a shard other than the initiator holds at the end stays there: the reply has the records
# and errors that reached the initiator (run(collect=False) answers the initiator's own records).
#
# Here the worker of the shard where the execution started runs it once per shard "partition", stage
# by stage (every partition up to a boundary, then the records move, then the next stage). ctx.part is
# the partition's shard index and ctx.token the execution's token + '@<index>', which Go routes to
# that shard (execute(), atomic(), the readers); hashtag() and ShardsIDReader answer that shard's.

_BOUNDARIES = frozenset(('collect', 'repartition', 'groupby', 'batchgroupby'))


def _crc16_table():
    t = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t.append(c & 0xffff)
    return t


_CRC16 = _crc16_table()


def key_slot(key):
    """The hash slot of key (str or bytes): CRC16-XMODEM of the key or its {hash tag}, mod 16384."""
    if isinstance(key, str):
        key = key.encode('utf-8', 'surrogatepass')
    o = key.find(b'{')
    if o >= 0:
        c = key.find(b'}', o + 1)
        if c > o + 1:
            key = key[o + 1:c]
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xffff) ^ _CRC16[((crc >> 8) ^ b) & 0xff]
    return crc & 16383


def _stages(steps):
    # [(steps up to a boundary, the boundary step or None)]
    out, chain = [], []
    for s in steps:
        if s.kind in _BOUNDARIES:
            out.append((chain, s))
            chain = []
        else:
            chain.append(s)
    out.append((chain, None))
    return out


def _copy_record(r):
    # Each shard gets its own copy of a trigger's record (the real one deserializes it).
    return list(r) if isinstance(r, list) else r


def run_distributed(ctx, steps, cluster, records=None, reader_fn=None, part_records=None):
    """Generator: runs the plan on every shard of cluster, as run_steps does on one; returns the records.

    cluster is the worker's cluster view ({'index': this shard, 'shards': [{'myid', 'hashtag',
    'first', 'last'}, …]}). records (a trigger's record, which every shard gets), part_records (a
    function of the shard index: the records that shard's reader gives) or reader_fn (run()'s reader,
    read on every shard) feed the first stage of each partition."""
    shards = cluster['shards']
    n = len(shards)
    me = cluster['index']
    lasts = [sh['last'] for sh in shards]
    base = ctx.token

    def enter(p):
        ctx.part = p
        ctx.set_token('%s@%d' % (base, p))

    recs = None
    errs = [[] for _ in range(n)]  # error texts held by each partition
    outs = [[] for _ in range(n)]
    try:
        for chain, boundary in _stages(steps):
            outs = [None] * n
            for p in range(n):
                enter(p)
                if recs is not None:
                    inp, rd = recs[p], None
                elif part_records is not None:
                    inp, rd = part_records(p), None
                elif records is not None:
                    inp, rd = [_copy_record(r) for r in records], None
                else:
                    inp, rd = None, reader_fn
                outs[p] = yield from _run_part(ctx, chain, inp, rd, errs[p])
            if boundary is None:
                break
            recs = yield from _move(ctx, boundary, outs, errs, me, lasts, enter)
    finally:
        ctx.part = None
        ctx.set_token(base)
    ctx.errors.extend(errs[me])
    return outs[me]


def _run_part(ctx, chain, inp, reader_fn, errs):
    """Generator: one partition's steps up to a boundary; the errors they make go to errs."""
    if inp is not None and not any(s.kind != 'topy' for s in chain):
        return inp
        yield  # a generator like the steps' (never reached)
    saved = ctx.errors
    ctx.errors = errs
    try:
        out = yield from run_steps(ctx, chain, inp, reader_fn)
    finally:
        ctx.errors = saved
    return out


def _owner(key, lasts):
    slot = key_slot(key)
    for i, last in enumerate(lasts):
        if slot <= last:
            return i
    return len(lasts) - 1


def _move(ctx, step, outs, errs, me, lasts, enter):
    """Generator: moves the partitions' records across a boundary step; returns each one's new input."""
    n = len(outs)
    if step.kind == 'collect':
        got = list(outs[me])
        for p in range(n):
            if p != me:
                got.extend(outs[p])
                errs[me].extend(errs[p])
                del errs[p][:]
        new = [[] for _ in range(n)]
        new[me] = got
        return new
    # repartition, groupby, batchgroupby: the key of each record is extracted on its shard.
    moved = [[] for _ in range(n)]
    for p in range(n):
        enter(p)
        for r in outs[p]:
            s, k = _extract(ctx, step.f1, r)
            if s is ERR:
                errs[p].append(k)  # an error record stays where it is
                continue
            moved[_owner(k, lasts)].append((k, r))
    if step.kind == 'repartition':
        return [[r for _, r in m] for m in moved]
    new = [[] for _ in range(n)]
    for t in range(n):
        enter(t)
        if step.kind == 'groupby':
            groups = {}
            for k, r in moved[t]:
                s, v = yield from _call(ctx, step.f2, (k, groups.get(k), r))
                if s is ERR:
                    groups.pop(k, None)
                    errs[t].append(v)
                    continue
                groups[k] = v
            new[t] = [{'key': k, 'value': v} for k, v in groups.items()][::-1]
        else:
            groups = {}
            for k, r in moved[t]:
                groups.setdefault(k, []).append(r)
            out = []
            for k, lst in groups.items():
                s, v = _reduce(ctx, step.f2, k, lst)
                if s is ERR:
                    errs[t].append(v)
                else:
                    out.append({'key': k, 'value': v})
            new[t] = out[::-1]
    return new


__all__ = ['Step', 'run_steps', 'run_distributed', 'key_slot', 'describe_steps', 'callbacks', 'OK', 'ERR',
           'PENDING']
