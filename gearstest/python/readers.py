"""The batch readers of run(): KeysReader, KeysOnlyReader and StreamReader (gears-spec 2.2).

Each reader is a generator the engine pulls one record at a time (engine._Source). The C readers of
the real server read the keyspace under the Redis lock, a batch at a time, and hand the records out
after releasing it; here a batch is read inside one `lock`/`unlock` of the execution's token and
yielded after the unlock, so a step never runs with the lock held by its reader.

Semantics (RedisGears v1.2.13, read, not copied):
* src/readers/keys_reader.c: KeysReader_Next, KeysReader_ReadKey, GetValueRecord, GetTypeRecord,
  KeysReader_ScanAPINextKey (records of one scan step are popped from the end of the batch);
* src/readers/streams_reader.c: StreamReader_ReadRecords (one XREAD STREAMS <key> <fromId>, no
  COUNT: every entry after fromId, oldest first; an XREAD error is the execution's one error);
* plugins/python/GearsBuilder.py: createKeysOnlyReader (a Python generator over SCAN/EXISTS);
* src/utils/dict.c, src/record.c: the order of a dict record's fields (gears_dict below).
"""
import pyerrors

# --------------------------------------------------------------------------------------------
# Field order of dict records.
#
# The C readers build a record as a HashSetRecord (a Gears_dict, src/utils/dict.c: Redis' dict.c
# with chaining, incremental rehashing, 4 initial buckets, doubling at load 1) and the Python
# plugin turns it into a dict by iterating that table (RedisGearsPy_ToPyRecordMapperInternal), so
# the keys come in the table's bucket order. The dict's hash is SipHash-1-2 (Redis' siphash.c,
# resolved from redis-server) keyed with a seed RedisGears never sets: sixteen zero bytes. So the
# order is deterministic, and gears_dict reproduces it by replaying the insertions: a KeysReader
# record comes out {'event', 'key', 'type', 'value'}, the order seen on the real server
# (gears-spec 2.2), a StreamReader record {'key', 'id', 'value'}. A hash value's fields are inserted
# in HGETALL order: on the real server that is the hash's own order (insertion order for small
# hashes); miniredis gives its own, which can change the order of fields that share a bucket.
# Either way it is no order a test should rely on (neither insertion nor sorted order).

_M64 = 0xffffffffffffffff


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash12(data):
    """SipHash-1-2 of data (bytes) with a zero key, as Redis' siphash() computes it."""
    v0 = 0x736f6d6570736575
    v1 = 0x646f72616e646f6d
    v2 = 0x6c7967656e657261
    v3 = 0x7465646279746573

    def rnd(v0, v1, v2, v3):
        v0 = (v0 + v1) & _M64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _M64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _M64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _M64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], 'little')
        v3 ^= m
        v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xff) << 56) | int.from_bytes(data[end:], 'little')
    v3 ^= b
    v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xff
    v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


class _GearsDict(object):
    """Replays Gears_dict insertions to learn its iteration order (keys only, no values)."""

    __slots__ = ('t', 'used', 'rehashidx', 'hashes')

    def __init__(self):
        self.t = [None, None]  # bucket lists; each bucket a list of keys, chain head first
        self.used = [0, 0]
        self.rehashidx = -1
        self.hashes = {}

    def _h(self, k):
        h = self.hashes.get(k)
        if h is None:
            h = self.hashes[k] = siphash12(k)
        return h

    def _rehash_step(self):
        # dictRehash(d, 1): move one non-empty bucket, visiting at most 10 empty ones.
        empty = 10
        t0, t1 = self.t
        if self.used[0]:
            while not t0[self.rehashidx]:
                self.rehashidx += 1
                empty -= 1
                if empty == 0:
                    return
            mask = len(t1) - 1
            for k in t0[self.rehashidx]:
                t1[self._h(k) & mask].insert(0, k)
                self.used[0] -= 1
                self.used[1] += 1
            t0[self.rehashidx] = []
            self.rehashidx += 1
        if self.used[0] == 0:
            self.t = [self.t[1], None]
            self.used = [self.used[1], 0]
            self.rehashidx = -1

    def _expand(self, size):
        real = 4
        while real < size:
            real *= 2
        if self.t[0] is not None and real == len(self.t[0]):
            return
        table = [[] for _ in range(real)]
        if self.t[0] is None:
            self.t[0] = table
        else:
            self.t[1] = table
            self.rehashidx = 0

    def _find(self, k):
        if self.used[0] + self.used[1] == 0:
            return None
        if self.rehashidx != -1:
            self._rehash_step()
        h = self._h(k)
        for i in (0, 1):
            tab = self.t[i]
            b = tab[h & (len(tab) - 1)]
            if k in b:
                return b
            if self.rehashidx == -1:
                break
        return None

    def set(self, k):
        """RG_HashSetRecordSet: find, delete an old entry, add."""
        b = self._find(k)
        if b is not None:
            # Gears_dictDelete: a rehash step first (the dict is not empty), then unlink.
            if self.rehashidx != -1:
                self._rehash_step()
            h = self._h(k)
            for i in (0, 1):
                tab = self.t[i]
                if tab is None:
                    continue
                b = tab[h & (len(tab) - 1)]
                if k in b:
                    b.remove(k)
                    self.used[i] -= 1
                    break
        # Gears_dictAddRaw
        if self.rehashidx != -1:
            self._rehash_step()
        if self.rehashidx == -1:
            if self.t[0] is None:
                self._expand(4)
            elif self.used[0] >= len(self.t[0]):
                self._expand(self.used[0] * 2)
        i = 1 if self.rehashidx != -1 else 0
        tab = self.t[i]
        tab[self._h(k) & (len(tab) - 1)].insert(0, k)
        self.used[i] += 1

    def keys(self):
        out = []
        for i in (0, 1):
            tab = self.t[i]
            if tab is None:
                break
            for b in tab:
                out.extend(b)
            if self.rehashidx == -1:
                break
        return out


def _field_name(b):
    # Field names are C strings on the real server (PyUnicode_FromString). A name that is not
    # valid UTF-8 fails there; here it is decoded with replacement characters (an assumption).
    if isinstance(b, str):
        return b
    return bytes(b).decode('utf-8', 'replace')


def gears_dict(pairs):
    """Returns a dict of (name, value) pairs in the order a HashSetRecord of them iterates.

    Names are str or bytes; a repeated name keeps its last value (and its last position)."""
    gd = _GearsDict()
    vals = {}
    for name, v in pairs:
        name = _field_name(name)
        gd.set(name.encode('utf-8', 'surrogatepass'))
        vals[name] = v
    return {k.decode('utf-8', 'surrogatepass'): vals[k.decode('utf-8', 'surrogatepass')]
            for k in gd.keys()}


# The record fields of the C readers in their real order (gears_dict of the insertion order
# KeysReader_ReadKey / StreamReader_ReadRecords use: key, value, type, event / id, value, key).
KEYS_RECORD_ORDER = tuple(gears_dict([('key', 0), ('value', 0), ('type', 0), ('event', 0)]))
KEYS_NOVALUE_ORDER = tuple(gears_dict([('key', 0), ('event', 0)]))
STREAM_RECORD_ORDER = tuple(gears_dict([('id', 0), ('value', 0), ('key', 0)]))


# --------------------------------------------------------------------------------------------
# Values


def to_py(v):
    """A string record as Python sees it: str when valid UTF-8, else bytearray."""
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode('utf-8')
        except UnicodeDecodeError:
            return bytearray(v)
    if v is None:
        return None
    return str(v)


def _pairs(flat):
    return [(flat[i], to_py(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


# TYPE's answer -> the record's 'type' (GetTypeRecord: a stream is 'unknown', any module type is
# 'module'; a missing key has no handle: 'empty').
_TYPES = {'string': 'string', 'list': 'list', 'hash': 'hash', 'set': 'set', 'zset': 'zset',
          'stream': 'unknown'}


def read_key(call, key, read_value, event=None):
    """KeysReader_ReadKey: the record of one key (call runs a Redis command under the held lock)."""
    name = to_py(key)
    if not read_value:
        rec = {'key': name, 'event': event}
        return {k: rec[k] for k in KEYS_NOVALUE_ORDER}
    t = to_py(call('TYPE', key))
    if t == 'none':
        typ, value = 'empty', None
    else:
        typ = _TYPES.get(t, 'module')
        value = None
        if typ == 'string':
            value = to_py(call('GET', key))
        elif typ == 'list':
            value = [to_py(x) for x in call('LRANGE', key, '0', '-1')]
        elif typ == 'hash':
            value = gears_dict(_pairs(call('HGETALL', key)))
    rec = {'key': name, 'value': value, 'type': typ, 'event': event}
    return {k: rec[k] for k in KEYS_RECORD_ORDER}


# SCAN's COUNT per step. The real server uses RedisModule_Scan (one dict bucket per step); the keys a
# step finds are read under one lock and handed out from the end of the batch.
SCAN_COUNT = 1000


def keys_reader(redis, pattern, no_scan, read_value):
    """Generator: the records of KeysReader.run(pattern, noScan=, readValue=).

    redis has call(*args) -> raw reply (raises gears.error on an error reply), lock() and unlock().
    With noScan the pattern is the one key read (a record even when the key does not exist:
    type 'empty'); otherwise SCAN ... MATCH pattern, batch by batch.
    """
    if no_scan:
        redis.lock()
        try:
            rec = read_key(redis.call, pattern, read_value)
        finally:
            redis.unlock()
        yield rec
        return
    cursor = '0'
    while True:
        redis.lock()
        try:
            reply = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', str(SCAN_COUNT))
            cursor = to_py(reply[0])
            batch = [read_key(redis.call, k, read_value) for k in reply[1]]
        finally:
            redis.unlock()
        while batch:
            yield batch.pop()
        if cursor == '0':
            return


WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'


def stream_reader(redis, key, from_id):
    """Generator: the records of StreamReader.run(key, fromId=): XREAD STREAMS key fromId.

    Every entry after from_id (exclusive), oldest first; a missing key gives none. An error reply of
    XREAD (a bad id, a key of another type) is the execution's error, with the reply's text.
    """
    redis.lock()
    try:
        try:
            # Redis answers XREAD on a key of another type with WRONGTYPE; miniredis answers nil,
            # so the type is checked here first.
            t = to_py(redis.call('TYPE', key))
            if t not in ('none', 'stream'):
                raise pyerrors.error(WRONGTYPE)
            reply = redis.call('XREAD', 'STREAMS', key, from_id)
        except pyerrors.error as e:
            # The reader copies the reply's text by its length: without the trailing \r\n that
            # execute() errors keep (they read it as a C string, gears-spec 8; Go adds it to every
            # `call` error).
            text = str(e.args[0]) if e.args else str(e)
            if text.endswith('\r\n'):
                text = text[:-2]
            raise pyerrors.flat_error(text)
    finally:
        redis.unlock()
    if not reply:
        return
    for entry in reply[0][1]:
        eid = to_py(entry[0])
        fields = entry[1]
        value = gears_dict(_pairs(fields)) if isinstance(fields, list) else {}
        rec = {'id': eid, 'value': value, 'key': key}
        yield {k: rec[k] for k in STREAM_RECORD_ORDER}


# execute() as scripts see it (runtime.py sets it: the module-level one of the real GearsBuilder.py).
execute = None


def createKeysOnlyReader(pattern='*', count=1000, noScan=False, patternGenerator=None):
    """GearsBuilder.py's createKeysOnlyReader: the PythonReader function of KeysOnlyReader.run().

    GearsBuilder.run() calls it with run()'s keyword arguments as they are: any other one (mode=…
    too) is a TypeError, as on the real server. The generator calls execute() like user code does (a
    lock per call, none across a batch)."""

    def keysOnlyReader():
        nonlocal pattern
        nonlocal count
        nonlocal noScan
        if patternGenerator is not None:
            pattern, noScan = patternGenerator()
        if noScan:
            try:
                if execute('exists', pattern) == 1:
                    yield pattern
            except Exception:
                return
        else:
            count = str(count)
            cursor, keys = execute('scan', '0', 'MATCH', str(pattern), 'COUNT', count)
            while cursor != '0':
                for k in keys:
                    yield k
                cursor, keys = execute('scan', cursor, 'MATCH', str(pattern), 'COUNT', count)
            for k in keys:
                yield k
    return keysOnlyReader
