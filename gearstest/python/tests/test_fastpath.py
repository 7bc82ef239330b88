"""Tests of the worker's fast paths: the buffered frame reader and triggers nested on the reading thread."""
import io
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakego import FakeGo  # noqa: E402

import resp  # noqa: E402  (fakego put the worker's directory on sys.path)


def _frames(r):
    k = r.random()
    if k < 0.4:
        return resp.dumps(r.choice([b'abc', b'', b'x' * r.randint(0, 150000), None, 5, -3,
                                    resp.Status('OK'), resp.Error('e'), [b'a', [b'b', 3, None]]]))
    if k < 0.6:
        return resp.dumps([b'trigger', b'1', [b'a', None, 7], b'yy', b'r' * r.randint(10, 120)])
    if k < 0.8:
        return resp.dumps_compact(_bulks(r))
    if k < 0.85:
        # broken compact frames: a header that is not lengths separated by single spaces (the
        # frame's header line is skipped), or one that ends the stream inside its bytes
        return r.choice([b'!3 x\n', b'!\n', b'!3  4\n', b'!-1\n', b'!+3\n', b'!3\r\n', b'!1_0\n',
                         b'! 3\n', b'!3 \n', b'!\t3\n', b'!' + b'9' * 5000 + b'\n'])
    # broken values: the stream reader consumes up to the offending line, then goes on
    return r.choice([b'?garbage\r\n', b'*2\r\n$1\r\na\r\n?x\r\n', b'$abc\r\n', b'\n', b'x\n',
                     b'*3\r\n:1\r\n:zz\r\n:3\r\n', b'*1\r\n$2\r\nab\n',
                     # bulks inside arrays (parsed inline): a length line without CR, a bad or
                     # too long length, nil, an empty bulk
                     b'*2\r\n$1\n', b'*2\r\n$1\r\na\r\n$x\r\n', b'*1\r\n$9999999999999\r\n',
                     b'*3\r\n$-1\r\n$0\r\n\r\n$1\r\nz\r\n', b'*1\r\n$1\rx\r\n', b'*2\r\n$+1\r\na\r\n$1_0\r\n',
                     # two-digit lengths (read off their bytes too): CR without LF, a zero first
                     b'*1\r\n$12\rxabcdefghijk\r\n', b'*2\r\n$05\r\nabcde\r\n$1a\r\n'])


def _bulks(r):
    # A message of bulk strings with the awkward bytes: empty, spaces, CR/LF, RESP and compact
    # frame starts, long ones across the reader's chunks.
    pool = [b'', b' ', b'a b', b'\r\n', b'\n', b'!', b'!3 4\n', b'*1\r\n$1\r\na\r\n', b'$-1\r\n',
            b'\xff\x00', b'trigger', b'0' * 42, b'y' * r.randint(0, 150000)]
    return [r.choice(pool) for _ in range(r.randint(1, 12))]


def _read_all(read):
    out = []
    while True:
        try:
            v = read()
        except EOFError:
            return out
        except (resp.ProtocolError, ValueError):
            out.append(('broken',))
            continue
        out.append(('value', type(v).__name__, v))


def _read_all_through_pipe(data, r):
    """_read_all of a resp.Reader over a pipe into which a thread writes data in chunks of random
    sizes (1 to 70000 bytes, from r)."""
    rfd, wfd = os.pipe()

    def write():
        p = 0
        while p < len(data):
            n = r.randint(1, 70000)
            os.write(wfd, data[p:p + n])
            p += n
        os.close(wfd)
    t = threading.Thread(target=write)
    t.start()
    try:
        rd = resp.Reader(rfd)
        return _read_all(lambda: resp.read_value(rd))
    finally:
        t.join()
        os.close(rfd)


class ReaderTest(unittest.TestCase):
    def test_reader_matches_stream_reader(self):
        # The fd reader must yield exactly what the line-based reader yields on the same bytes,
        # whatever the pipe's chunking, broken values included.
        for seed in range(60):
            r = random.Random(seed)
            data = b''.join(_frames(r) for _ in range(25))
            want = _read_all(lambda f=io.BytesIO(data): resp.read_value(f))
            self.assertEqual(_read_all_through_pipe(data, r), want, 'seed %d' % seed)

    def test_compact_frame_reads_as_the_resp_array(self):
        # A compact frame reads exactly as the RESP array of the same bulks does (PROTOCOL.md
        # "Framing"), through the fd reader whatever the chunking, and through the stream reader.
        for seed in range(40):
            r = random.Random(seed)
            msgs = [_bulks(r) for _ in range(20)]
            for enc in (resp.dumps, resp.dumps_compact):
                data = b''.join(enc(m) for m in msgs)
                want = [('value', 'list', m) for m in msgs]
                self.assertEqual(_read_all(lambda f=io.BytesIO(data): resp.read_value(f)), want,
                                 'seed %d %s' % (seed, enc.__name__))
                self.assertEqual(_read_all_through_pipe(data, r), want, 'seed %d %s' % (seed, enc.__name__))

    def test_compact_frame_exact(self):
        self.assertEqual(resp.dumps_compact([b'trigger', b'12', b'', b'a b', b'\r\n']),
                         b'!7 2 0 3 2\ntrigger12a b\r\n')
        rfd, wfd = os.pipe()
        try:
            # a broken header is skipped (its line), the frames after it read as usual
            os.write(wfd, b'!5 2 1 1\nreply12vx' + b'!3 x\n' + b'!2 0\nok' + b'!\n' + b'*1\r\n$1\r\nz\r\n')
            os.close(wfd)
            wfd = None
            rd = resp.Reader(rfd)
            self.assertEqual(_read_all(rd.read_value), [('value', 'list', [b'reply', b'12', b'v', b'x']),
                                                        ('broken',), ('value', 'list', [b'ok', b'']),
                                                        ('broken',), ('value', 'list', [b'z'])])
        finally:
            if wfd is not None:
                os.close(wfd)
            os.close(rfd)

    def test_reader_calls_before_block_only_when_it_must_read(self):
        rfd, wfd = os.pipe()
        calls = []
        try:
            os.write(wfd, resp.dumps([b'a']) + resp.dumps([b'b']))
            rd = resp.Reader(rfd, lambda: calls.append(1))
            self.assertEqual(rd.read_value(), [b'a'])
            self.assertEqual(len(calls), 1)
            self.assertEqual(rd.read_value(), [b'b'])  # buffered: no read, no hook
            self.assertEqual(len(calls), 1)
        finally:
            os.close(wfd)
            os.close(rfd)


class NestedTriggerTest(unittest.TestCase):
    def setUp(self):
        self.g = FakeGo()
        self.addCleanup(self.g.close)

    def burst(self, regs, n):
        # All trigger frames in one write: while the first execution waits for its execute() reply the
        # reading thread finds the others buffered (nested runs, then deferred ones past the depth cap).
        rids, frames = [], []
        for i in range(n):
            rid = self.g.rid()
            rids.append(rid)
            frames.append(resp.dumps([b'trigger', rid, regs[i % len(regs)], b'e%d' % i, b'', b'', b't',
                                      b'k%d' % i]))
        self.g.send_raw(b''.join(frames))
        return [self.g.wait_trigger(rid) for rid in rids]

    def test_burst_of_async_triggers_each_gets_its_own_reply(self):
        r = self.g.exec_("GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='t', mode='async')")
        reg = r[1][0][0]
        for i in range(100):
            self.g.data[b'k%d' % i] = b'v%d' % i
        got = self.burst([reg], 100)
        self.assertEqual(got, [[b'ok', [b'v%d' % i], []] for i in range(100)])

    def test_burst_mixing_sync_atomic_and_future_registrations(self):
        r = self.g.exec_(
            "def inatomic(x):\n"
            "    with atomic():\n"
            "        return execute('GET', x[1])\n"
            "def resolve(f, v):\n"
            "    import time\n"
            "    while True:\n"
            "        try:\n"
            "            f.continueRun(v)\n"
            "            return\n"
            "        except Exception:\n"
            "            time.sleep(0.001)  # not returned from the callback yet\n"
            "def fut(x):\n"
            "    f = gearsFuture()\n"
            "    v = execute('GET', x[1])\n"
            "    import threading\n"
            "    threading.Thread(target=resolve, args=(f, v)).start()\n"
            "    return f\n"
            "GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='a', mode='async')\n"
            "GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='s', mode='sync')\n"
            "GB('CommandReader').map(inatomic).register(trigger='m', mode='async_local')\n"
            "GB('CommandReader').map(fut).register(trigger='f', mode='async')\n")
        regs = [x[0] for x in r[1]]
        for i in range(80):
            self.g.data[b'k%d' % i] = b'v%d' % i
        got = self.burst(regs, 80)
        self.assertEqual(got, [[b'ok', [b'v%d' % i], []] for i in range(80)])
        # every atomic() block was left again
        self.assertEqual(len(self.g.locks), 20)
        self.assertEqual(len(self.g.unlocks), 20)


def _fake_writer(worker, wfd, inp=None):
    """An object with what Worker.write and Worker.drain use (inp: a resp.Reader whose buffer decides
    holding, or None: never held)."""
    import types
    fake = types.SimpleNamespace(outq=worker.collections.deque(), wlock=threading.Lock(), out_fd=wfd,
                                 hold_ok=inp is not None, inp=inp)
    fake.drain = lambda: worker.Worker.drain(fake)
    fake.write = lambda data: worker.Worker.write(fake, data)
    return fake


class WriterTest(unittest.TestCase):
    def test_concurrent_frames_all_leave_in_order(self):
        # Worker.write from many threads: every frame leaves (none stays queued behind a writer that
        # wrote its own at once), each thread's in its order.
        import types
        import worker
        rfd, wfd = os.pipe()
        fake = _fake_writer(worker, wfd)
        chunks = []
        rd = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(rfd, 1 << 16), b'')))
        rd.start()
        n, k = 8, 3000

        def send(t):
            for i in range(k):
                worker.Worker.write(fake, b'%d:%d;' % (t, i))
        ts = [threading.Thread(target=send, args=(t,)) for t in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        os.close(wfd)
        rd.join()
        os.close(rfd)
        got = {}
        for f in b''.join(chunks).split(b';')[:-1]:
            t, i = f.split(b':')
            got.setdefault(int(t), []).append(int(i))
        self.assertEqual(got, {t: list(range(k)) for t in range(n)})
        self.assertEqual(len(fake.outq), 0)

    def test_write_rest_writes_what_the_first_write_left(self):
        # Worker.write and drain write once themselves; after a short write (a full pipe, a signal)
        # _write_rest writes the rest, from where that write stopped, all of it.
        import worker
        rfd, wfd = os.pipe()
        data = bytes(range(256)) * 1024  # more than a pipe holds at once
        chunks = []
        rd = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(rfd, 1 << 16), b'')))
        rd.start()
        worker._write_rest(wfd, data, 1000)
        os.close(wfd)
        rd.join()
        os.close(rfd)
        self.assertEqual(b''.join(chunks), data[1000:])

    def test_frame_queued_behind_a_direct_write_leaves(self):
        # A writes a frame bigger than the pipe holds at once (it blocks in os.write, holding wlock);
        # B's frame, sent meanwhile, is queued and must leave when A is done, without another write.
        import types
        import worker
        rfd, wfd = os.pipe()
        fake = _fake_writer(worker, wfd)
        big = b'a' * (1 << 20)
        a = threading.Thread(target=worker.Worker.write, args=(fake, big))
        a.start()
        while not fake.wlock.locked():
            time.sleep(0)  # yields the GIL until A holds wlock (an observed state, not a delay)
        worker.Worker.write(fake, b'B')
        self.assertEqual(len(fake.outq), 1)  # queued behind A
        chunks = []
        rd = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(rfd, 1 << 16), b'')))
        rd.start()
        a.join()
        os.close(wfd)
        rd.join()
        os.close(rfd)
        self.assertEqual(b''.join(chunks), big + b'B')

    def _held_setup(self):
        """A Reader over a pipe holding two messages, this thread as the reading thread, and a writer
        whose output is a non-blocking pipe."""
        import worker
        inr, inw = os.pipe()
        outr, outw = os.pipe()
        os.set_blocking(outr, False)
        os.write(inw, resp.dumps([b'one']) + resp.dumps([b'two']))
        rd = resp.Reader(inr)
        fake = _fake_writer(worker, outw, rd)
        rd.before_block = fake.drain
        worker.tls.role = object()
        self.addCleanup(lambda: worker.tls.__dict__.pop('role', None))
        for fd in (inr, inw, outr, outw):
            self.addCleanup(os.close, fd)
        return worker, rd, fake, inw, outr

    @staticmethod
    def _out(fd):
        try:
            return os.read(fd, 1 << 16)
        except BlockingIOError:
            return b''

    def test_reading_thread_holds_frames_until_it_reads_again(self):
        worker, rd, fake, inw, outr = self._held_setup()
        self.assertEqual(rd.read_value(), [b'one'])  # 'two' is still buffered
        worker.Worker.write(fake, b'F1;')
        worker.Worker.write(fake, b'F2;')
        self.assertEqual(self._out(outr), b'')  # held
        self.assertEqual(list(fake.outq), [b'F1;', b'F2;'])
        self.assertEqual(rd.read_value(), [b'two'])  # buffered: no read of the pipe, nothing drained
        worker.Worker.write(fake, b'F3;')  # e.g. a lane trigger's done, then the next one's call
        self.assertEqual(self._out(outr), b'')
        self.assertEqual(list(fake.outq), [b'F1;', b'F2;', b'F3;'])
        fake.drain()  # what before_block does
        self.assertEqual(self._out(outr), b'F1;F2;F3;')  # in order, in one piece
        self.assertEqual(len(fake.outq), 0)

    def test_held_frames_leave_before_the_reader_blocks(self):
        worker, rd, fake, inw, outr = self._held_setup()
        self.assertEqual(rd.read_value(), [b'one'])
        worker.Worker.write(fake, b'H;')
        self.assertEqual(self._out(outr), b'')
        self.assertEqual(rd.read_value(), [b'two'])
        got = []
        t = threading.Thread(target=lambda: got.append(rd.read_value()))
        t.start()  # the buffer is empty: before its os.read blocks, before_block drains
        import select
        ready, _, _ = select.select([outr], [], [], 10)
        self.assertEqual(ready, [outr], 'the held frame did not leave before the reader blocked')
        self.assertEqual(self._out(outr), b'H;')  # out while the reader still waits
        self.assertEqual(got, [])
        os.write(inw, resp.dumps([b'three']))  # (on a failure above, cleanup closes inw: EOF ends t)
        t.join(10)
        self.assertEqual(got, [[b'three']])

    def test_a_thread_that_does_not_read_never_holds(self):
        worker, rd, fake, inw, outr = self._held_setup()
        self.assertEqual(rd.read_value(), [b'one'])
        worker.Worker.write(fake, b'R;')  # held (this is the reading thread)
        t = threading.Thread(target=worker.Worker.write, args=(fake, b'P;'))  # tls.role unset there
        t.start()
        t.join(10)
        self.assertEqual(self._out(outr), b'R;P;')  # P drained what was held before it, then itself

    def test_at_most_hold_max_frames_are_held(self):
        worker, rd, fake, inw, outr = self._held_setup()
        self.assertEqual(rd.read_value(), [b'one'])
        for i in range(worker.HOLD_MAX):
            worker.Worker.write(fake, b'%d;' % i)
        self.assertEqual(self._out(outr), b'')
        worker.Worker.write(fake, b'last;')
        self.assertEqual(self._out(outr), b''.join(b'%d;' % i for i in range(worker.HOLD_MAX)) + b'last;')


class LeanPathTest(unittest.TestCase):
    """The shortcuts of the common trigger (worker.py, runtime.execute, engine.run_single_direct)
    keep what the general code does."""

    def setUp(self):
        self.g = FakeGo(config={'ExecutionMaxIdleTime': '1000'})
        self.addCleanup(self.g.close)

    def register(self, script, sid='s1'):
        r = self.g.exec_(script, sid=sid)
        self.assertEqual(r[0], b'ok', r)
        return [reg[0] for reg in r[1]]

    def test_execute_after_the_reading_role_was_stolen(self):
        # The function runs on the reading thread and stays in user code until the watchdog handed
        # the reading role to a new thread: its execute() reply is then read by that thread, and
        # this one waits for it (the lock the slot gets once the role is gone).
        [reg] = self.register(
            "import threading\n"
            "def f(x):\n"
            "    while not any(t.name == 'gears-reader' for t in threading.enumerate()):\n"
            "        threading.Event().wait(0.001)\n"
            "    return execute('GET', x[1])\n"
            "GB('CommandReader').map(f).register(trigger='st', mode='async_local')")
        self.g.data[b'k'] = b'v'
        self.assertEqual(self.g.trigger(reg, 'st', 'k', execid=b'e1'), [b'ok', [b'v'], []])
        self.assertEqual(self.g.trigger(reg, 'st', 'k', execid=b'e2'), [b'ok', [b'v'], []])

    def test_checked_commands_are_checked_every_time(self):
        # execute() remembers the command names it need not check; the checked ones never join them.
        [reg] = self.register("GB('CommandReader').map(lambda x: execute(*x[1:]))"
                              ".register(trigger='t', mode='async_local')")
        self.g.data[b'k'] = b'v'
        for _ in range(2):
            self.assertEqual(self.g.trigger(reg, 't', 'GET', 'k', token='x1'), [b'ok', [b'v'], []])
            self.assertEqual(self.g.trigger(reg, 't', 'WAIT', '1', '0', token='x1'), [b'ok', [], [b'HAZARD C2: ']])
            self.assertEqual(self.g.trigger(reg, 't', 'wait', '1', '0', token='x1'), [b'ok', [], [b'HAZARD C2: ']])
        self.assertEqual([c[1:] for c in self.g.calls], [[b'GET', b'k'], [b'GET', b'k']])
        self.assertEqual(len(self.g.hazards), 4)
        # a checked command that passed its check (CLIENT GETNAME) is checked again next time
        [sync] = self.register("def f(x):\n    try:\n        return execute(*x[1:])\n"
                               "    except Exception as e:\n        return str(e)\n"
                               "GB('CommandReader').map(f).register(trigger='s', mode='sync')", sid='s2')
        self.assertEqual(self.g.trigger(sync, 's', 'CLIENT', 'GETNAME', token='c7'),
                         [b'ok', [b'No such file or directory'], []])
        self.assertEqual(self.g.trigger(sync, 's', 'CLIENT', 'KILL', 'ID', '7', token='c7'),
                         [b'ok', [b"HAZARD C5: 'ID', '7'"], []])

    def test_one_str_record_answers(self):
        # The one-str-record answer written directly, and the records it must leave to the encoder:
        # a str of more than one character starting with '+' or '-' is a status or an error reply.
        [reg] = self.register("GB('CommandReader').map(lambda x: x[1]).register(trigger='t', mode='sync')")
        for arg, want in (('abc', [b'abc']), ('', [b'']), ('+', [b'+']), ('-', [b'-']),
                          ('+OK', [resp.Status('OK')]), ('-ERR x', [resp.Error('ERR x')]),
                          ('é\r\n', ['é\r\n'.encode()])):
            got = self.g.trigger(reg, 't', arg, token='c1')
            self.assertEqual(got[1], want, arg)
            self.assertEqual(type(got[1][0]), type(want[0]), arg)  # Status/Error are str, bulks bytes
        # a non-str record goes through convertToStr's str() (the step skipped for a str record)
        [reg2] = self.register("GB('CommandReader').map(lambda x: len(x)).register(trigger='n')", sid='s2')
        self.assertEqual(self.g.trigger(reg2, 'n', 'a', 'b'), [b'ok', [b'3'], []])
        # an argument that is not UTF-8 is a bytearray in the record (the others stay str)
        [reg3] = self.register("GB('CommandReader').map(lambda x: repr(x)).register(trigger='r')", sid='s3')
        self.assertEqual(self.g.trigger(reg3, 'r', b'a', b'\xff\x00'),
                         [b'ok', [b"['r', 'a', bytearray(b'\\xff\\x00')]"], []])

    def test_trigger_after_upgrade_and_unregister_meets_the_current_registration(self):
        # trigger_reg remembers regids: an upgrade or an unregister must not leave a stale entry.
        [old] = self.register("GB('CommandReader').map(lambda x: 'v1').register(trigger='u')")
        self.assertEqual(self.g.trigger(old, 'u'), [b'ok', [b'v1'], []])
        r = self.g.exec_("GB('CommandReader').map(lambda x: 'v2').register(trigger='u')", mode='upgrade')
        [new] = [reg[0] for reg in r[1]]
        self.assertEqual(self.g.trigger(new, 'u'), [b'ok', [b'v2'], []])
        # the old one was retired with abortPending: a trigger of it Go had accepted is aborted
        self.assertEqual(self.g.trigger(old, 'u'), [b'ok', [], []])
        self.assertEqual(self.g.last_status, b'aborted')
        rid = self.g.rid()
        self.g.send([b'unregister', rid, new])
        self.g.wait(rid)
        self.assertEqual(self.g.trigger(new, 'u'), [b'ok', [b'v2'], []])  # retired without abortPending
        self.assertEqual(self.g.last_status, b'done')
        [w] = self.register("GB('CommandReader').map(lambda x: 'w').register(trigger='w')", sid='s3')
        self.assertEqual(self.g.trigger(w, 'w'), [b'ok', [b'w'], []])
        rid = self.g.rid()
        self.g.send([b'unregister', rid, w, b'abortpending'])
        self.g.wait(rid)
        self.assertEqual(self.g.trigger(w, 'w'), [b'ok', [], []])
        self.assertEqual(self.g.last_status, b'aborted')

    def test_worker_stays_under_thirty_attributes(self):
        # CPython 3.11 shares an instance's dict keys, and specializes self.x access, only up to 30
        # attributes: the 30th made every trigger ~7% dearer (bench_callgrind.py).
        import worker
        rfd, wfd = os.pipe()
        self.addCleanup(os.close, rfd)
        self.addCleanup(os.close, wfd)
        w = worker.Worker(resp.Reader(rfd), wfd)
        self.assertLess(len(vars(w)), 30, sorted(vars(w)))

    def test_execute_inside_atomic_uses_the_atomic_token(self):
        # A script run without a lock token (a restore) takes one for its atomic() block: execute()
        # inside the block passes it, outside the script's own (empty) one.
        r = self.g.exec_("with atomic():\n    execute('SET', 'a', '1')\nexecute('SET', 'b', '2')", token='')
        self.assertEqual(r, [b'ok', [], None])
        self.assertEqual(len(self.g.locks), 1)
        self.assertTrue(self.g.locks[0].startswith(b't'), self.g.locks)
        self.assertEqual([c[0] for c in self.g.calls], [self.g.locks[0], b''])
        self.assertEqual(self.g.unlocks, self.g.locks)

    def test_no_trigger_runs_on_top_of_an_execution_inside_atomic(self):
        # An async execution waiting for an execute() reply inside atomic() holds the global lock: a
        # trigger read meanwhile must not run nested on top of it (its execute() would wait for that
        # lock, and the one below could never go on): it runs on a pool thread.
        [a, b] = self.register(
            "import threading\n"
            "def f(x):\n    with atomic():\n        return execute('HOLD')\n"
            "GB('CommandReader').map(f).register(trigger='a', mode='async_local')\n"
            "GB('CommandReader').map(lambda x: threading.current_thread().name)"
            ".register(trigger='b', mode='async_local')")
        ra = self.g.trigger_async(a, 'a', execid=b'e1', token='x1')
        self.g.wait_call([b'HOLD'])
        self.assertEqual(self.g.trigger(b, 'b', execid=b'e2', token='x2'), [b'ok', [b'gears-exec'], []])
        self.g.hold.set()
        self.assertEqual(self.g.wait_trigger(ra), [b'ok', [b'OK'], []])


class DrainTest(unittest.TestCase):
    def test_drain_finishes_partial_writes(self):
        # drain writes a frame's bytes directly and goes on from where a partial write stopped
        # (os.write made to take at most 1000 bytes a call), for one queued frame and for several.
        import worker
        real = os.write
        os.write = lambda fd, data: real(fd, bytes(data[:1000]))
        self.addCleanup(setattr, os, 'write', real)
        for frames in ([b'z' * 3000 + b'!'], [b'x' * 5000, b'y' * 10, b'w']):
            rfd, wfd = os.pipe()
            self.addCleanup(os.close, rfd)
            self.addCleanup(os.close, wfd)
            fake = _fake_writer(worker, wfd)
            fake.outq.extend(frames)
            fake.drain()
            want = b''.join(frames)
            self.assertEqual(os.read(rfd, 1 << 16), want)
            self.assertEqual(len(fake.outq), 0)


class BrokenFrameTest(unittest.TestCase):
    def setUp(self):
        self.g = FakeGo()
        self.addCleanup(self.g.close)

    def test_broken_compact_frame_is_skipped_with_a_warning(self):
        # A compact frame whose header is not lengths separated by single spaces: its header line is
        # skipped with the warning of a broken RESP value, and the worker goes on.
        self.g.send_raw(b'!3 x\n')
        self.assertEqual(self.g.exec_("x = 1"), [b'ok', [], None])
        want = "gearstest WARNING: skipping a broken message: broken compact frame header: b'3 x'\n"
        deadline = time.time() + 10
        while want not in self.g.stderr and time.time() < deadline:
            time.sleep(0.01)  # polls for the log line (stderr is read by another thread)
        self.assertIn(want, self.g.stderr)

    def test_messages_that_are_not_arrays_of_a_name_are_skipped_with_a_warning(self):
        self.g.send_raw(b':5\r\n*0\r\n*2\r\n:5\r\n$1\r\nx\r\n*1\r\n+reply\r\n*1\r\n$4\r\nnope\r\n')
        self.assertEqual(self.g.exec_("x = 1"), [b'ok', [], None])
        want = ["gearstest WARNING: skipping a message that is not an array: %s\n" % m
                for m in ('5', '[]', "[5, b'x']", "['reply']")]
        want.append("gearstest WARNING: skipping unknown message b'nope'\n")
        deadline = time.time() + 10
        while not all(w in self.g.stderr for w in want) and time.time() < deadline:
            time.sleep(0.01)  # polls for the log lines (stderr is read by another thread)
        self.assertEqual([w for w in self.g.stderr if 'skipping' in w], want)


class SpinTest(unittest.TestCase):
    """resp.Reader.spin: polls before a read that would block (the worker's sync executions)."""

    def _reader(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        return resp.Reader(r), w

    @staticmethod
    def _read(rd, w):
        """rd.read_value() on a thread; when nothing came (no polls wrote), it is unblocked."""
        got = []
        t = threading.Thread(target=lambda: got.append(rd.read_value()))
        t.start()
        t.join(10)
        if t.is_alive():
            os.write(w, resp.dumps([b'unblock']))
            t.join(10)
        return got

    def _count_polls(self, on_poll):
        """Replaces resp._select: each call is recorded (its timeout) and on_poll(n) runs for the
        n-th; when on_poll returns a result, that is the poll's, else the real select's."""
        polls = []
        real = resp._select

        def fake_select(r, wr, x, timeout):
            polls.append(timeout)
            got = on_poll(len(polls))
            return got if got is not None else real(r, wr, x, timeout)
        resp._select = fake_select
        self.addCleanup(setattr, resp, '_select', real)
        return polls

    def test_polls_then_reads_what_came_meanwhile(self):
        rd, w = self._reader()
        rd.spin = 3

        def on_poll(n):
            if n == 2:
                os.write(w, resp.dumps([b'reply']))  # the answer comes during the second poll
        polls = self._count_polls(on_poll)
        self.assertEqual(self._read(rd, w), [[b'reply']])
        self.assertEqual(polls, [0, 0])  # never a blocking poll; stopped polling once it came

    def test_blocks_after_the_polls_and_not_without_spin(self):
        rd, w = self._reader()
        rd.spin = 3

        def on_poll(n):
            if n == 3:
                # the last poll finds nothing: the read that follows blocks until this arrives
                threading.Timer(0, os.write, args=(w, resp.dumps([b'late']))).start()
                return [], [], []
        polls = self._count_polls(on_poll)
        self.assertEqual(self._read(rd, w), [[b'late']])
        self.assertEqual(polls, [0, 0, 0])
        rd.spin = 0
        os.write(w, resp.dumps([b'next']))
        self.assertEqual(rd.read_value(), [b'next'])
        self.assertEqual(len(polls), 3)  # no polling without spin


if __name__ == '__main__':
    unittest.main()


def _cpu_list(text):
    """The CPUs of a Cpus_allowed_list ("0-3,6")."""
    out = set()
    for part in text.split(','):
        a, _, b = part.partition('-')
        out.update(range(int(a), int(b or a) + 1))
    return out


class PinTest(unittest.TestCase):
    """The sync lane's CPU (gearstest/pin_linux.go): Go names it in `init` (pin_cpu); a lane round runs
    its triggers on the reading thread pinned to it, and the watchdog gives the thread its own mask
    back once the lane was idle for two of its ticks."""

    SCRIPT = ("import os, threading\n"
              "GB('CommandReader').map(lambda x: '%d %s' % (threading.get_native_id(), "
              "','.join(map(str, sorted(os.sched_getaffinity(0)))))).register(trigger='t', mode='sync')")

    def setUp(self):
        self.allowed = set(os.sched_getaffinity(0))
        if len(self.allowed) < 2:
            self.skipTest('needs two allowed CPUs (with one, Go sends pin_cpu -1 and nothing is pinned)')
        self.cpu = max(self.allowed)

    def start(self, pin_cpu):
        g = FakeGo(init_extra={'pin_cpu': pin_cpu})
        self.addCleanup(g.close)
        r = g.exec_(self.SCRIPT)
        return g, r[1][0][0]

    def run_trigger(self, g, reg, flags):
        got = g.trigger(reg, 't', flags=flags)
        tid, cpus = got[1][0].decode().split()
        return int(tid), {int(c) for c in cpus.split(',')}

    def thread_cpus(self, g, tid):
        with open('/proc/%d/task/%d/status' % (g.p.pid, tid)) as f:
            for line in f:
                if line.startswith('Cpus_allowed_list:'):
                    return _cpu_list(line.split()[1])

    def test_a_lane_round_runs_on_the_lane_cpu_until_the_lane_idles(self):
        g, reg = self.start(self.cpu)
        tid, cpus = self.run_trigger(g, reg, 'l')
        self.assertEqual(cpus, {self.cpu})
        deadline = time.monotonic() + 10
        while self.thread_cpus(g, tid) != self.allowed:
            self.assertLess(time.monotonic(), deadline, 'the reading thread stayed pinned')
            time.sleep(0.005)
        # A trigger outside the lane never pins.
        tid2, cpus2 = self.run_trigger(g, reg, '')
        self.assertEqual(cpus2, self.allowed)

    def test_nothing_is_pinned_without_a_cpu(self):
        g, reg = self.start(-1)
        _, cpus = self.run_trigger(g, reg, 'l')
        self.assertEqual(cpus, self.allowed)
