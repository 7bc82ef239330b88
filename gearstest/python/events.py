"""KeysReader and StreamReader registrations: register() arguments and the records of their events.

The argument checks follow registerCreateKeysArgs/registerCreateStreamArgs of RedisGears 1.2.13
(plugins/python/redisgears_python.c), texts included. The arguments travel to Go in the form
RG.DUMPREGISTRATIONS shows them (gears-spec.md §1.3); Go matches the events and sends `trigger`
messages with flag `k` (a key event: event, key) or `s` (a stream batch: key, first id, last id).
"""

import readers
from pyerrors import error
import rt
from rt import state, tls

# registerStrKeyTypeToInt: the key types register(keyTypes=) accepts.
_KEY_TYPES = ('empty', 'string', 'list', 'hash', 'set', 'zset', 'module', 'stream')


def _str_list(value, not_iterable, not_string, check=None):
    if value is None:
        return None
    try:
        it = iter(value)
    except TypeError:
        it = None
    if it is None:
        raise error(not_iterable)
    out = []
    for v in it:
        if not isinstance(v, str):
            raise error(not_string)
        if check is not None:
            check(v)
        out.append(v)
    return out


def _check_key_type(t):
    if t not in _KEY_TYPES:
        raise error('unknown key type')


def keys_register_args(kargs, prefix):
    """registerCreateKeysArgs: the KeysReader's args, as RG.DUMPREGISTRATIONS shows them, then
    readValue (which it does not show)."""
    event_types = _str_list(kargs.get('eventTypes'), 'given eventTypes is not iterable',
                            'given event type is not string')
    key_types = _str_list(kargs.get('keyTypes'), 'given keyTypes is not iterable',
                          'given key type is not string', _check_key_type)
    read_value = True
    rv = kargs.get('readValue')
    if rv is not None or 'readValue' in kargs:
        if not isinstance(rv, bool):
            raise error('readValue is not boolean')
        read_value = rv
    commands = _str_list(kargs.get('commands'), 'given commands is not iterable',
                         'given command type is not string')
    if commands is not None and not commands:
        commands = None  # an empty list is no list (registerCreateKeysArgs)
    for c in commands or ():
        verify_hook(c)
    return ['regex', prefix, 'eventTypes', event_types, 'keyTypes', key_types,
            'hookCommands', commands, 'readValue', 1 if read_value else 0]


# Command flags of Redis 6.2 (src/server.c redisCommandTable, the server RedisGears 1.2.13 ships with):
# the commands flagged no-script, and those with movable keys (a getkeys_proc).
_NOSCRIPT = frozenset('''auth hello blpop brpop brpoplpush blmove bzpopmin bzpopmax save bgsave
    bgrewriteaof shutdown multi exec discard watch unwatch sync psync replconf subscribe unsubscribe
    psubscribe punsubscribe eval evalsha script monitor client slaveof replicaof debug config module
    wait failover reset acl latency role'''.split())
_MOVABLEKEYS = frozenset('''zunionstore zinterstore zdiffstore zunion zinter zdiff eval evalsha sort
    migrate georadius georadiusbymember xread xreadgroup memory'''.split())


def verify_hook(cmd):
    """KeysReader_VerifyRegister -> CommandHook_VerifyHook (command_hook.c) for a KeysReader's
    commands=: its prefix is always given (default '*'), so a command with movable keys is refused."""
    name = cmd.lower()
    if name in _NOSCRIPT:
        raise error('Can not hook a command which are not allowed inside a script')
    if name in _MOVABLEKEYS:
        raise error('Can not hook a command with moveable keys by key prefix')


def _number(kargs, name, default, text):
    v = kargs.get(name)
    if v is None and name not in kargs:
        return default
    # PyNumber_Check accepts int, float and bool; PyNumber_AsSsize_t truncates a float.
    if isinstance(v, bool) or isinstance(v, (int, float)):
        return int(v)
    raise error(text)


def stream_register_args(kargs, prefix, mode):
    """registerCreateStreamArgs: the StreamReader's args as RG.DUMPREGISTRATIONS shows them."""
    batch = _number(kargs, 'batch', 1, 'batch argument must be a number')
    duration = _number(kargs, 'duration', 0, 'duration argument must be a number')
    policy = 'continue'
    if 'onFailedPolicy' in kargs:
        p = kargs['onFailedPolicy']
        if not isinstance(p, str):
            raise error('onFailedPolicy must be a string (Continue/Abort/Retry)')
        if p.lower() not in ('continue', 'abort', 'retry'):
            raise error('onFailedPolicy must be Continue/Abort/Retry')
        policy = p.lower()
        if mode == 'sync' and policy != 'continue':
            raise error('ExecutionMode sync can only be combined with OnFailedPolicy Continue')
    retry = _number(kargs, 'onFailedRetryInterval', 1, 'retryInterval argument must be a number')
    trim = True
    if 'trimStream' in kargs:
        t = kargs['trimStream']
        if not isinstance(t, bool):
            raise error('pyTrimmStream argument must be a boolean')
        trim = t
    return ['batchSize', batch, 'durationMS', duration, 'stream', prefix,
            'trimStream', 1 if trim else 0, 'onFailedPolicy', policy, 'retryInterval', retry]


class _Redis(object):
    """Redis access under an execution's token (the reader's own reads trigger nothing)."""

    __slots__ = ('token', 'prev')

    def __init__(self, token):
        self.token = token
        self.prev = None

    def call(self, *args):
        parts = [b'call', None, self.token, args[0]]
        parts.extend(a if isinstance(a, bytes) else str(a).encode('utf-8') for a in args[1:])
        return state.worker.call(parts, 1)

    def lock(self):
        state.worker.call([b'lock', None, self.token], 1)
        # As atomic() does: while this thread holds the lock, the worker's reader must not run another
        # trigger on top of it (that one would wait for the lock this one holds).
        self.prev = tls.atomic_token
        rt.set_atomic_token(self.token)

    def unlock(self):
        rt.set_atomic_token(self.prev)
        state.worker.send([b'unlock', self.token])


def absent_key_record(reg, args):
    """The record a KeysReader key event (args: event, key) gives on a shard that lacks the key: the
    noScan read of a missing key (type 'empty', value None; only key and event without readValue)."""
    event = args[0].decode('utf-8', 'replace')
    return readers.read_key(lambda *a: b'none', args[1], reg.evargs[9] != 0, event)


def event_records(reg, token, args, flags):
    """The records of one event execution of reg: a KeysReader key event (flag k: event, key) or a
    StreamReader batch (flag s: key, first id, last id)."""
    if b'h' in flags:
        # a hooked command: the record is the command as the client sent it
        return [[readers.to_py(a) for a in args]]
    r = _Redis(token)
    if b'k' in flags:
        event = args[0].decode('utf-8', 'replace')
        key = args[1]
        read_value = reg.evargs[9] != 0
        # The record is read when the execution starts (KeysReader_ReadKey), under the lock.
        r.lock()
        try:
            return [readers.read_key(r.call, key, read_value, event)]
        finally:
            r.unlock()
    key, first, last = args[0], args[1], args[2]
    name = readers.to_py(key)
    r.lock()
    try:
        entries = r.call('XRANGE', key, first, last)
    finally:
        r.unlock()
    out = []
    for entry in entries or []:
        fields = entry[1]
        value = readers.gears_dict(readers._pairs(fields)) if isinstance(fields, list) else {}
        rec = {'id': readers.to_py(entry[0]), 'value': value, 'key': name}
        out.append({k: rec[k] for k in readers.STREAM_RECORD_ORDER})
    return out
