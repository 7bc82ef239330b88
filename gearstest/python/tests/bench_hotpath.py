"""Measures the worker's CPU time per trigger (one execute('GET')) through the fake Go peer.

Run: python3 gearstest/python/tests/bench_hotpath.py  (not a unit test; CPU time is load-independent)
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakego import FakeGo  # noqa: E402


def cpu(pid):
    with open('/proc/%d/stat' % pid) as f:
        parts = f.read().rsplit(')', 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf('SC_CLK_TCK')


def main():
    g = FakeGo()
    try:
        r = g.exec_("GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='gs', mode='sync')\n"
                    "GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='ga', mode='async')")
        regs = {'sync': r[1][0][0], 'async': r[1][1][0]}
        g.data[b'k'] = b'v'
        n = 4000
        for mode, reg in regs.items():
            for conc in (1, 20):
                c0 = cpu(g.p.pid)
                t0 = time.time()

                def client(k):
                    for i in range(k):
                        g.trigger(reg, 'g', 'k')
                ts = [threading.Thread(target=client, args=(n // conc,)) for _ in range(conc)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                dt = time.time() - t0
                dc = cpu(g.p.pid) - c0
                print('%-5s conc=%-2d %6.0f/s  worker cpu %5.1f us/trigger' % (mode, conc, n / dt, dc / n * 1e6))
    finally:
        g.close()


if __name__ == '__main__':
    main()
