"""Process-wide state shared by the worker's modules (kept tiny to avoid import cycles)."""
import contextvars
import threading

# The execution (or script run) the running code belongs to; None in threads the script started.
CUR = contextvars.ContextVar('gears_current', default=None)



class _ThreadState(threading.local):
    """Per-thread state; the class attributes are what every thread starts with (reading one that
    was never set costs no AttributeError, which getattr(tls, name, None) paid on every execute())."""

    atomic_token = None  # inside an atomic() block: its lock token
    role = None  # the reader role token while this thread holds it (worker.py)
    nest_ok = None  # worker.py: whether a trigger read now may run nested on this thread
    nest_depth = 0  # worker.py: triggers running nested on this thread


tls = _ThreadState()


class _Holder(object):
    worker = None  # the Worker (set by worker.py)
    config = {}  # RG config values (str keys, values as Go sent them)
    # a shard of a gearstest cluster: {'myid': node id, 'hashtag': tag of its first slot, 'index': its
    # index, 'shards': [{'myid', 'hashtag', 'first', 'last'} of every shard, in slot order]}
    cluster = None


state = _Holder()
