"""Instructions the worker executes per async_local trigger, replaying recorded traffic under callgrind.

Run: python3 gearstest/python/tests/bench_replay.py  (needs valgrind; not a unit test)

bench_callgrind.py drives the worker one trigger at a time, so every trigger also pays a blocking read
and a write of its own. Here the fake Go peer first records what it sends for N triggers (each trigger
frame followed by the reply to its execute() call); then a fresh worker under callgrind gets its
registration through the fake peer and all of that traffic in one write, as a busy Go would send it:
the worker reads it in large chunks and writes in groups, as under load. The difference between 2200
and 200 triggers, over 2000, cancels start-up and registration. Deterministic (same instructions for
the same worker code and traffic), unlike CPU time on a shared machine.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakego  # noqa: E402

SCRIPT = ("GB('CommandReader').map(lambda x: execute('GET', x[1]))"
          ".register(trigger='g', mode='async_local')")


class _Recorder(fakego.FakeGo):
    """A fake Go peer that keeps what it sends after the registration."""

    def __init__(self, **kw):
        self.log = None
        super().__init__(**kw)

    def send(self, parts):
        if all(type(x) in (bytes, str) for x in parts):
            data = fakego.resp.dumps_compact([x.encode() if type(x) is str else x for x in parts])
        else:
            data = fakego.resp.dumps(parts)
        with self.lock:
            if self.log is not None:
                self.log.append(data)
            self.p.stdin.write(data)
            self.p.stdin.flush()


def record(n):
    """The registration's id and the bytes Go sends for n triggers (with their replies)."""
    g = _Recorder()
    try:
        regid = g.exec_(SCRIPT)[1][0][0]
        g.data[b'k'] = b'v'
        g.log = []
        for i in range(n):
            g.trigger(regid, 'g', 'k', execid='%040d-%d' % (0, i + 10), token='x%d' % i)
        return regid, b''.join(g.log)
    finally:
        g.close()


def replay(regid, traffic, out):
    """Runs a worker under callgrind, registers through the fake peer (the same id as when recorded:
    ids come from the fake's counter), sends traffic in one write (the peer no longer answers: the
    recorded replies are in it) and returns callgrind's total."""
    orig = subprocess.Popen

    def popen(cmd, **kw):
        return orig(['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out] + cmd, **kw)
    fakego.subprocess.Popen = popen
    try:
        g = fakego.FakeGo(timeout=300)
    finally:
        fakego.subprocess.Popen = orig
    try:
        if g.exec_(SCRIPT)[1][0][0] != regid:
            raise AssertionError('the replay registered another id than the recording')
        n = traffic.count(b'trigger')
        g.send = lambda parts: None  # the recorded traffic carries the replies
        with g.lock:
            g.p.stdin.write(traffic)
            g.p.stdin.flush()
        with g.cond:
            if not g.cond.wait_for(lambda: len(g.done) >= n, 600):
                raise AssertionError('%d of %d triggers done; stderr=%s' % (len(g.done), n, ''.join(g.stderr)))
        bad = [v for v in g.done.values() if v[:1] != [b'ok'] or v[2]]
        if bad:
            raise AssertionError('failed triggers: %r' % bad[:3])
    finally:
        g.close()
    with open(out) as f:
        return int(re.search(r'^(?:summary|totals): (\d+)', f.read(), re.M).group(1))


def main():
    with tempfile.TemporaryDirectory() as d:
        a = replay(*record(200), out=os.path.join(d, 'a'))
        b = replay(*record(2200), out=os.path.join(d, 'b'))
    print('async_local: %.1fk instructions per trigger (replayed traffic)' % ((b - a) / 2000 / 1000))


if __name__ == '__main__':
    main()
