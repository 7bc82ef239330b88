"""Tests of engine.run_distributed: a plan run once per shard partition, records moving at boundaries."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakego  # noqa: E402,F401  (puts the worker's directory on sys.path)

import engine  # noqa: E402
import runtime  # noqa: E402
from engine import Step  # noqa: E402

# Three shards split as redis-cli --cluster create does.
CLUSTER = {'index': 1, 'shards': [{'myid': 'a', 'hashtag': '06S', 'first': 0, 'last': 5460},
                                  {'myid': 'b', 'hashtag': 'x', 'first': 5461, 'last': 10922},
                                  {'myid': 'c', 'hashtag': 'y', 'first': 10923, 'last': 16383}]}


class Ctx(object):
    def __init__(self):
        self.errors = []
        self.fut = None
        self.token = 'x1'
        self.tokb = b'x1'
        self.part = None

    set_token = runtime.ExecCtx.set_token


def owner(key):
    s = engine.key_slot(key)
    return 0 if s <= 5460 else 1 if s <= 10922 else 2


def run(ctx, steps, **kw):
    gen = engine.run_distributed(ctx, [Step('topy')] + steps, CLUSTER, **kw)
    try:
        gen.send(None)
    except StopIteration as si:
        return si.value
    raise AssertionError('the plan went async')


class DistributedTest(unittest.TestCase):
    def test_key_slot(self):
        # CLUSTER KEYSLOT answers (Redis' crc16 and hash tags)
        self.assertEqual(12182, engine.key_slot('foo'))
        self.assertEqual(12182, engine.key_slot(b'x{foo}y'))
        self.assertEqual(engine.key_slot('{}foo'), engine.key_slot('{}foo'))
        self.assertNotEqual(engine.key_slot('{}foo'), engine.key_slot('foo'))
        self.assertEqual(0, engine.key_slot(''))
        self.assertEqual(15495, engine.key_slot('a'))

    def test_reader_per_partition_and_collect(self):
        ctx = Ctx()
        data = {0: ['a0', 'a1'], 1: ['b0'], 2: ['c0', 'c1', 'c2']}
        seen = []

        def reader():
            seen.append((ctx.part, ctx.token, ctx.tokb))  # tokb: what execute() sends
            return iter(data[ctx.part])
        out = run(ctx, [Step('map', lambda r: r + '@%d' % ctx.part), Step('collect')], reader_fn=reader)
        self.assertEqual(sorted(['a0@0', 'a1@0', 'b0@1', 'c0@2', 'c1@2', 'c2@2']), sorted(out))
        self.assertEqual([(0, 'x1@0', b'x1@0'), (1, 'x1@1', b'x1@1'), (2, 'x1@2', b'x1@2')], seen)
        self.assertEqual(('x1', b'x1', None), (ctx.token, ctx.tokb, ctx.part))
        # Without collect the initiator (shard 1) answers its own records only.
        c2 = Ctx()
        self.assertEqual(['b0'], run(c2, [], reader_fn=lambda: iter(data[c2.part])))

    def test_count_and_limit(self):
        ctx = Ctx()
        one = lambda: iter([ctx.part])  # noqa: E731
        count = [Step('accumulate', lambda a, r: 1 + (a or 0)), Step('collect'),
                 Step('accumulate', lambda a, r: r + (a or 0))]
        self.assertEqual([3], run(ctx, count, reader_fn=one))
        self.assertEqual([3], run(ctx, [Step('limit', 1, 0), Step('collect')] + count[:1] + [Step('collect')] + count[2:],
                                  reader_fn=lambda: iter([1, 2])))
        self.assertEqual([1], run(ctx, [Step('collect'), Step('limit', 1, 0)] + count, reader_fn=one))
        # a trigger's record: every shard gets a copy
        self.assertEqual([['t', 'x']] * 3, run(ctx, [Step('collect')], records=[['t', 'x']]))

    def test_repartition_and_groupby(self):
        ctx = Ctx()
        keys = ['k%d' % i for i in range(20)]
        data = {0: keys[:7], 1: keys[7:12], 2: keys[12:]}
        out = run(ctx, [Step('repartition', lambda r: r), Step('map', lambda r: (r, ctx.part)), Step('collect')],
                  reader_fn=lambda: iter(data[ctx.part]))
        self.assertEqual(sorted((k, owner(k)) for k in keys), sorted(out))
        # groupby: each key accumulated on its owner shard
        words = {0: ['x', 'y', 'x'], 1: ['x'], 2: ['y', 'z']}
        out = run(ctx, [Step('groupby', lambda r: r, lambda k, a, r: (a or 0) + 1),
                        Step('map', lambda r: (r['key'], r['value'], ctx.part)), Step('collect')],
                  reader_fn=lambda: iter(words[ctx.part]))
        self.assertEqual(sorted([('x', 3, owner('x')), ('y', 2, owner('y')), ('z', 1, owner('z'))]), sorted(out))
        out = run(ctx, [Step('batchgroupby', lambda r: r, lambda k, lst: len(lst)), Step('collect')],
                  reader_fn=lambda: iter(words[ctx.part]))
        self.assertEqual([{'key': 'x', 'value': 3}, {'key': 'y', 'value': 2}, {'key': 'z', 'value': 1}],
                         sorted(out, key=lambda r: r['key']))

    def test_errors_follow_the_records(self):
        ctx = Ctx()

        def boom(r):
            raise ValueError('shard %d' % ctx.part)
        # before collect: every shard's error reaches the initiator
        self.assertEqual([], run(ctx, [Step('map', boom), Step('collect')], reader_fn=lambda: iter([1])))
        self.assertEqual(3, len(ctx.errors))
        for i in range(3):
            self.assertEqual(1, sum('ValueError: shard %d' % i in e for e in ctx.errors), ctx.errors)
        # without collect only the initiator's
        ctx = Ctx()
        run(ctx, [Step('map', boom)], reader_fn=lambda: iter([1]))
        self.assertEqual(1, len(ctx.errors))
        self.assertIn('shard 1', ctx.errors[0])


    def test_batchgroupby_reducer_refuses_coroutines(self):
        # RedisGearsPy_PyCallbackReducer: an async def reducer is an error record, on a cluster as on
        # one server; the other keys' reductions go on.
        async def reducer(k, lst):
            return len(lst)

        def reduce_some(k, lst):
            return reducer(k, lst) if k == 'x' else len(lst)
        words = {0: ['x', 'y'], 1: ['x'], 2: ['y']}
        ctx = Ctx()
        out = run(ctx, [Step('batchgroupby', lambda r: r, reduce_some), Step('collect')],
                  reader_fn=lambda: iter(words[ctx.part]))
        self.assertEqual([{'key': 'y', 'value': 2}], out)
        self.assertEqual(['coroutine are not allow on reduce'], ctx.errors)
        ctx = Ctx()
        gen = engine.run_steps(ctx, [Step('topy'), Step('batchgroupby', lambda r: r, reduce_some)],
                               reader_fn=lambda: iter(['x', 'y', 'x']))
        try:
            gen.send(None)
            raise AssertionError('the plan went async')
        except StopIteration as si:
            self.assertEqual([{'key': 'y', 'value': 1}], si.value)
        self.assertEqual(['coroutine are not allow on reduce'], ctx.errors)


if __name__ == '__main__':
    unittest.main()
