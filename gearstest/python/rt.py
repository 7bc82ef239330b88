"""Process-wide state shared by the worker's modules (kept tiny to avoid import cycles)."""
import contextvars
import threading

# The execution (or script run) the running code belongs to; None in threads the script started.
CUR = contextvars.ContextVar('gears_current', default=None)



class _ThreadState(threading.local):
    """Per-thread state; the class attributes are what every thread starts with (reading one that
    was never set costs no AttributeError, which getattr(tls, name, None) paid on every execute())."""

    atomic_token = None  # inside an atomic() block: its lock token (set it with set_atomic_token)
    role = None  # the reader role while this thread holds it (worker.py's _Role)


tls = _ThreadState()

# How many threads have an atomic_token (set_atomic_token). While none has, the hot path skips
# reading it: `atomic_users and tls.atomic_token` (a thread-local read costs ~600 instructions).
atomic_users = 0
_atomic_mu = threading.Lock()


def set_atomic_token(tok):
    """Sets this thread's atomic() token (None when it leaves the block), counting atomic_users."""
    global atomic_users
    with _atomic_mu:
        if bool(tls.atomic_token) != bool(tok):
            atomic_users += 1 if tok else -1
        tls.atomic_token = tok


class _Holder(object):
    worker = None  # the Worker (set by worker.py)
    config = {}  # RG config values (str keys, values as Go sent them)
    # a shard of a gearstest cluster: {'myid': node id, 'hashtag': tag of its first slot, 'index': its
    # index, 'shards': [{'myid', 'hashtag', 'first', 'last'} of every shard, in slot order]}
    cluster = None


state = _Holder()
