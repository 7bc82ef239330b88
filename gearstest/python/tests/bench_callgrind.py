"""Instructions the worker executes per trigger of a one-execute('GET') function, under callgrind.

Run: python3 gearstest/python/tests/bench_callgrind.py [sync|async|async_local]  (needs valgrind)
Runs the worker under callgrind twice through the fake Go peer, with 200 and 1200 triggers, and prints
the difference / 1000: start-up and registration cancel out. Deterministic, unlike CPU time on a
shared machine (not a unit test).
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakego  # noqa: E402


def total(mode, n, out):
    orig = subprocess.Popen

    def popen(cmd, **kw):
        return orig(['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out] + cmd, **kw)
    fakego.subprocess.Popen = popen
    try:
        g = fakego.FakeGo(timeout=300)  # valgrind is slow, more so on a busy machine
    finally:
        fakego.subprocess.Popen = orig
    try:
        r = g.exec_("GB('CommandReader').map(lambda x: execute('GET', x[1]))"
                    ".register(trigger='g', mode='%s')" % mode)
        reg = r[1][0][0]
        g.data[b'k'] = b'v'
        for _ in range(n):
            g.trigger(reg, 'g', 'k')
    finally:
        g.close()
    with open(out) as f:
        return int(re.search(r'^(?:summary|totals): (\d+)', f.read(), re.M).group(1))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else 'sync'
    with tempfile.TemporaryDirectory() as d:
        a = total(mode, 200, os.path.join(d, 'a'))
        b = total(mode, 1200, os.path.join(d, 'b'))
    print('%s: %.1fk instructions per trigger' % (mode, (b - a) / 1000 / 1000))


if __name__ == '__main__':
    main()
