"""Micro-benchmark: the Python time of one cache_get hit, with RedisGears' runtime faked.

Run: python3 gears/scripts/testdata/cache_get_hitbench.py [--profile] [--n N] [--allow-hosts] [--script FILE]

--script times another version of cache_get.py, e.g. the one before issue 11:
  git show 81bfe77:gears/scripts/cache_get.py > /tmp/before.py

A hit is timed as the fake runtime of cache_get_harness.py runs a trigger: the registration's first step
(cache_get) and its next one (cache_get_store). The floor is a step that does nothing but one
execute('GET') through the same fake, so "own" is what cache_get adds to the GET inside it. --profile
prints cProfile's view of the hits instead. Python only: the real server adds its own per-step cost
(GIL, record handling), which BenchmarkCacheGetHitRatios measures end to end.
"""

import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cache_get_harness as h  # noqa: E402


def main():
    args = sys.argv[1:]
    n = int(args[args.index('--n') + 1]) if '--n' in args else 200000
    if '--script' in args:
        h.SCRIPT = args[args.index('--script') + 1]
    settings = dict(h.LOCAL)
    if '--allow-hosts' in args:
        settings['CACHE_GET_ALLOW_HOSTS'] = ['127.0.0.1', '*.example.com', 'cdn.example.org']
    rt = h.Runtime(settings)
    url = 'http://127.0.0.1:8080/thumbs/0123456789/abcdef.png?size=128'
    key = rt.g['_cache_get_key'](url)
    rt.store[key] = (b'0123456789abcdef' * 640, None)  # a 10 KiB body, already cached
    assert rt.trigger(url) == rt.store[key][0]
    rt.commands = []

    def floor_step(k):
        v = rt.execute('GET', k)
        return v

    def floor():
        rt.local.step = True
        try:
            return floor_step(key)
        finally:
            rt.local.step = False

    def hit():
        return rt.trigger(url)

    if '--profile' in args:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            hit()
        pr.disable()
        pstats.Stats(pr).sort_stats('tottime').print_stats(15)
        return

    def per_call(fn):
        best = None
        for _ in range(5):
            rt.commands = []
            t0 = time.perf_counter()
            for _ in range(n // 5):
                fn()
            d = (time.perf_counter() - t0) / (n // 5)
            best = d if best is None else min(best, d)
        return best * 1e6

    f = per_call(floor)
    t = per_call(hit)
    print('python %s, %d calls, best of 5' % (sys.version.split()[0], n))
    print('floor (one execute GET step): %.2f µs' % f)
    print('cache_get hit (both steps):   %.2f µs' % t)
    print('cache_get own time per hit:   %.2f µs' % (t - f))


if __name__ == '__main__':
    main()
