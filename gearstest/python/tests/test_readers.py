"""Unit tests of readers.py: the run() readers over a fake Redis, and the dict record order."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import pyerrors  # noqa: E402
import readers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakego import FakeGo  # noqa: E402


class FakeRedis(object):
    """A keyspace of typed values; records every command and whether the lock was held for it."""

    def __init__(self, data, scan_batch=2):
        self.data = data  # key (bytes) -> (type, value)
        self.scan_batch = scan_batch
        self.locked = False
        self.log = []

    def lock(self):
        assert not self.locked, 'lock taken twice'
        self.locked = True
        self.log.append('lock')

    def unlock(self):
        assert self.locked, 'unlock without lock'
        self.locked = False
        self.log.append('unlock')

    def call(self, *args):
        self.log.append((args[0], self.locked))
        cmd = args[0].upper()
        k = args[1] if len(args) > 1 else None
        if isinstance(k, str):
            k = k.encode()
        if cmd == 'SCAN':
            keys = sorted(self.data)
            start = int(args[1])
            nxt = start + self.scan_batch
            pat = args[3].encode()
            batch = [x for x in keys[start:nxt] if pat == b'*' or x.startswith(pat.rstrip(b'*'))]
            return [b'0' if nxt >= len(keys) else str(nxt).encode(), batch]
        if cmd == 'TYPE':
            return self.data[k][0] if k in self.data else 'none'
        t, v = self.data.get(k, (None, None))
        if cmd == 'GET':
            return v
        if cmd == 'LRANGE':
            return list(v)
        if cmd == 'HGETALL':
            out = []
            for f, x in v:
                out += [f, x]
            return out
        if cmd == 'XREAD':
            k = args[2].encode()
            t, v = self.data.get(k, (None, None))
            if args[3] == 'bad':
                raise pyerrors.error('ERR Invalid stream ID specified as stream command argument\r\n')
            if k not in self.data:
                return None
            entries = [[i.encode(), fv] for i, fv in v if i > args[3]]
            return [[k, entries]] if entries else None
        raise AssertionError('unexpected command %r' % (args,))


DATA = {
    b's': ('string', b'hello'),
    b'bin': ('string', b'\xff\x00'),
    b'l': ('list', [b'a', b'\xfe']),
    b'h': ('hash', [(b'f1', b'a'), (b'f2', b'b'), (b'f3', b'c')]),
    b'st': ('set', None),
    b'z': ('zset', None),
    b'x': ('stream', [('1-1', [b'a', b'1']), ('1-2', [b'b', b'2', b'b', b'3'])]),
    b'j': ('ReJSON-RL', None),
}


def records(gen):
    return list(gen)


class KeysReaderTest(unittest.TestCase):
    def test_record_shapes_per_type(self):
        r = FakeRedis(DATA)
        got = {rec['key']: rec for rec in records(readers.keys_reader(r, '*', False, True))}
        self.assertEqual(len(got), len(DATA))
        self.assertEqual(repr(got['s']), "{'event': None, 'key': 's', 'type': 'string', 'value': 'hello'}")
        self.assertEqual(got['bin']['value'], bytearray(b'\xff\x00'))
        self.assertEqual(got['l']['value'], ['a', bytearray(b'\xfe')])
        self.assertEqual(repr(got['h']['value']), "{'f2': 'b', 'f3': 'c', 'f1': 'a'}")
        for k, typ in (('st', 'set'), ('z', 'zset'), ('x', 'unknown'), ('j', 'module')):
            self.assertEqual(got[k], {'event': None, 'key': k, 'type': typ, 'value': None}, k)
        self.assertEqual(list(got['z']), ['event', 'key', 'type', 'value'])

    def test_no_scan_reads_the_one_key_even_missing(self):
        r = FakeRedis(DATA)
        self.assertEqual(records(readers.keys_reader(r, 's*', True, True)),
                         [{'event': None, 'key': 's*', 'type': 'empty', 'value': None}])
        self.assertEqual(records(readers.keys_reader(r, 's', True, True))[0]['value'], 'hello')
        self.assertEqual(r.log, ['lock', ('TYPE', True), 'unlock', 'lock', ('TYPE', True), ('GET', True),
                                 'unlock'])

    def test_read_value_false(self):
        r = FakeRedis(DATA)
        got = records(readers.keys_reader(r, 'nokey', True, False))
        self.assertEqual(repr(got), "[{'event': None, 'key': 'nokey'}]")
        self.assertEqual(r.log, ['lock', 'unlock'])  # the key is not even looked at

    def test_scan_batches_read_under_lock_and_popped_from_the_end(self):
        r = FakeRedis(DATA, scan_batch=3)
        gen = readers.keys_reader(r, '*', False, True)
        first = next(gen)
        # the first SCAN step returned bin, h, j (sorted): read under one lock, handed out from the end
        self.assertEqual(first['key'], 'j')
        self.assertFalse(r.locked, 'a record is handed out with the lock held')
        self.assertEqual(r.log[0], 'lock')
        self.assertEqual(r.log[-1], 'unlock')
        self.assertTrue(all(e[1] for e in r.log if isinstance(e, tuple)))
        n = len(r.log)
        self.assertEqual([next(gen)['key'], next(gen)['key']], ['h', 'bin'])
        self.assertEqual(len(r.log), n, 'the rest of a batch costs no call')
        rest = [x['key'] for x in gen]
        self.assertEqual(rest, ['st', 's', 'l', 'z', 'x'])

    def test_pattern_goes_to_scan_match(self):
        r = FakeRedis(DATA)
        got = sorted(x['key'] for x in readers.keys_reader(r, 's*', False, False))
        self.assertEqual(got, ['s', 'st'])
        self.assertIn(('SCAN', True), r.log)


class StreamReaderTest(unittest.TestCase):
    def test_records_from_id_exclusive(self):
        r = FakeRedis(DATA)
        got = records(readers.stream_reader(r, 'x', '0-0'))
        self.assertEqual(repr(got), "[{'key': 'x', 'id': '1-1', 'value': {'a': '1'}}, "
                                    "{'key': 'x', 'id': '1-2', 'value': {'b': '3'}}]")
        self.assertEqual([x['id'] for x in readers.stream_reader(r, 'x', '1-1')], ['1-2'])
        self.assertEqual(records(readers.stream_reader(r, 'nokey', '0-0')), [])

    def test_errors_are_the_execution_error_text(self):
        r = FakeRedis(DATA)
        with self.assertRaises(pyerrors.flat_error) as cm:
            records(readers.stream_reader(r, 'x', 'bad'))
        self.assertEqual(pyerrors.error_text(cm.exception),
                         'ERR Invalid stream ID specified as stream command argument')
        self.assertFalse(r.locked)
        with self.assertRaises(pyerrors.flat_error) as cm:
            records(readers.stream_reader(r, 's', '0-0'))
        self.assertEqual(pyerrors.error_text(cm.exception), readers.WRONGTYPE)
        self.assertFalse(r.locked)


class DictOrderTest(unittest.TestCase):
    def test_record_orders_seen_on_the_real_server(self):
        # gears-spec 2.2: str(record) of a KeysReader record is {'event', 'key', 'type', 'value'}
        self.assertEqual(readers.KEYS_RECORD_ORDER, ('event', 'key', 'type', 'value'))
        self.assertEqual(readers.KEYS_NOVALUE_ORDER, ('event', 'key'))
        self.assertEqual(readers.STREAM_RECORD_ORDER, ('key', 'id', 'value'))

    def test_order_is_neither_insertion_nor_sorted(self):
        names = ['f%d' % i for i in range(10)]
        got = list(readers.gears_dict([(n, i) for i, n in enumerate(names)]))
        self.assertEqual(got, ['f6', 'f7', 'f3', 'f4', 'f1', 'f2', 'f0', 'f5', 'f9', 'f8'])

    def test_values_follow_their_names_and_a_repeat_keeps_the_last(self):
        d = readers.gears_dict([(b'a', 1), (b'b', 2), (b'a', 3)])
        self.assertEqual(d, {'a': 3, 'b': 2})
        gd = readers._GearsDict()
        for k in (b'a', b'b', b'a', b'a'):
            gd.set(k)
        self.assertEqual(sorted(gd.keys()), [b'a', b'b'])  # the old entry was deleted
        self.assertEqual(gd.used, [2, 0])

    def test_many_fields_through_rehashing(self):
        # Every field is kept exactly once across table growth and incremental rehashing.
        for n in (1, 4, 5, 17, 100, 1000):
            pairs = [('k%d' % i, i) for i in range(n)]
            d = readers.gears_dict(pairs)
            self.assertEqual(sorted(d.items()), sorted(pairs), n)


class KeysOnlyReaderTest(unittest.TestCase):
    def setUp(self):
        self.calls = []
        pages = {'0': ['7', ['a', 'b']], '7': ['0', ['c']]}

        def execute(*args):
            self.calls.append(args)
            if args[0] == 'exists':
                return 1 if args[1] == 'a' else 0
            return pages[args[1]]
        self.old, readers.execute = readers.execute, execute

    def tearDown(self):
        readers.execute = self.old

    def test_scan_pages_and_no_scan(self):
        self.assertEqual(list(readers.createKeysOnlyReader('x*', count=5)()), ['a', 'b', 'c'])
        self.assertEqual(self.calls[0], ('scan', '0', 'MATCH', 'x*', 'COUNT', '5'))
        self.assertEqual(list(readers.createKeysOnlyReader('a', noScan=True)()), ['a'])
        self.assertEqual(list(readers.createKeysOnlyReader('b', noScan=True)()), [])
        self.assertEqual(list(readers.createKeysOnlyReader('q', patternGenerator=lambda: ('a', True))()), ['a'])

    def test_unknown_keyword_is_a_type_error(self):
        with self.assertRaises(TypeError) as cm:
            readers.createKeysOnlyReader('*', mode='async')
        self.assertEqual(str(cm.exception), "createKeysOnlyReader() got an unexpected keyword argument 'mode'")


class KeysGo(FakeGo):
    """FakeGo with a string keyspace that SCAN, TYPE, GET, HGETALL and EXISTS read."""

    def command(self, args):
        cmd = args[0].decode().lower()
        if cmd == 'scan':
            return b'v', [b'0', sorted(self.data)]
        if cmd == 'type':
            if args[1] == b'h':
                return b'v', b'hash'
            return b'v', b'string' if args[1] in self.data else b'none'
        if cmd == 'hgetall':
            return b'v', [b'b', b'2', b'a', b'1']
        if cmd == 'exists':
            return b'v', 1 if args[1] in self.data else 0
        return FakeGo.command(self, args)


class WorkerRunTest(unittest.TestCase):
    def setUp(self):
        self.g = KeysGo()
        self.g.data = {b'k1': b'v1', b'k2': b'v2'}

    def tearDown(self):
        self.g.close()

    def run_script(self, script, sid='s1'):
        r = self.g.exec_(script, sid=sid)
        self.assertEqual(r[0], b'ok', r)
        return self.g.wait_exec(r[2].decode())

    def test_gb_run_default_reader(self):
        got = self.run_script("GB().run()")
        self.assertEqual(got, [b'done', [b"{'event': None, 'key': 'k2', 'type': 'string', 'value': 'v2'}",
                                         b"{'event': None, 'key': 'k1', 'type': 'string', 'value': 'v1'}"], []])
        # read under the execution's own token, locked once for the batch
        self.assertEqual(self.g.locks, [b'x' + ('0' * 40 + '-0').encode()])
        self.assertEqual(self.g.unlocks, self.g.locks)
        self.assertTrue(all(c[0] == self.g.locks[0] for c in self.g.calls), self.g.calls)

    def test_hash_value_noscan_and_errors(self):
        got = self.run_script("GB().map(lambda r: r['value']).run('h', noScan=True)")
        self.assertEqual(got, [b'done', [b"{'b': '2', 'a': '1'}"], []])
        for expr, text in (("run(noScan=1)", 'exactMatch value is not boolean'),
                           ("run(readValue=None)", 'readValue value is not boolean'),
                           ("run(readValue=0, mode='sync')", 'unknown execution mode'),
                           ("run(1)", 'regex argument must be a string')):
            r = self.g.exec_("GB().%s" % expr)
            self.assertEqual(r[0], b'err', expr)
            self.assertTrue(r[1].decode().endswith("'gears.error: %s\\n']" % text), (expr, r[1]))
        r = self.g.exec_("GB('StreamReader').run('x', fromId=5)")
        self.assertTrue(r[1].decode().endswith("'gears.error: fromId argument must be a string\\n']"), r[1])

    def test_keys_only_reader(self):
        got = self.run_script("GB('KeysOnlyReader').run()")
        self.assertEqual(got, [b'done', [b'k1', b'k2'], []])
        got = self.run_script("GB('KeysOnlyReader').run('k1', noScan=True)", sid='s2')
        self.assertEqual(got, [b'done', [b'k1'], []])
        r = self.g.exec_("GB('KeysOnlyReader').run(mode='async')", sid='s3')
        self.assertTrue(r[1].decode().endswith(
            "\"TypeError: createKeysOnlyReader() got an unexpected keyword argument 'mode'\\n\"]"), r[1])


if __name__ == '__main__':
    unittest.main()
