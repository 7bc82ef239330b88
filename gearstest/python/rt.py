"""Process-wide state shared by the worker's modules (kept tiny to avoid import cycles)."""
import contextvars
import threading

# The execution (or script run) the running code belongs to; None in threads the script started.
CUR = contextvars.ContextVar('gears_current', default=None)

# Per-thread flags: inside an atomic() block, and its lock token.
tls = threading.local()


class _Holder(object):
    worker = None  # the Worker (set by worker.py)
    config = {}  # RG config values (str keys, values as Go sent them)
    # a shard of a gearstest cluster: {'myid': node id, 'hashtag': tag of its first slot, 'index': its
    # index, 'shards': [{'myid', 'hashtag', 'first', 'last'} of every shard, in slot order]}
    cluster = None


state = _Holder()
