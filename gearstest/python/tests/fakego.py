"""A small fake of the Go side of PROTOCOL.md, to drive worker.py in unit tests."""
import itertools
import json
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import resp  # noqa: E402

WORKER = os.path.join(os.path.dirname(HERE), 'worker.py')


class FakeGo(object):
    """Runs worker.py and plays Go: answers newid/newexec/call/lock/configget from memory."""

    def __init__(self, config=None, check37=True, reqdir=None, timeout=10, init_extra=None):
        self.timeout = timeout  # the default of every wait (longer under valgrind: bench_callgrind.py)
        self.p = subprocess.Popen([sys.executable, '-u', WORKER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.done = {}
        self.execdone = {}
        self.yields = []
        self.logs = []
        self.calls = []
        self.locks = []
        self.unlocks = []
        self.hazards = []
        self.stderr = []
        self.last_status = None
        self.next_id = 0
        self.next_exec = 0
        self.rids = itertools.count(1)
        self.data = {}
        self.hold = threading.Event()  # releases the answers of execute('HOLD')
        self.config = {'ExecutionMaxIdleTime': '5000', 'PythonAttemptTraceback': '1'}
        if config:
            self.config.update(config)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.errt = threading.Thread(target=self._read_err, daemon=True)
        self.errt.start()
        init = {'config': self.config, 'check37': check37, 'reqdir': reqdir or '', 'shard': '0' * 40}
        init.update(init_extra or {})
        self.send([b'init', json.dumps(init).encode()])

    def close(self):
        try:
            self.p.stdin.close()
        except Exception:
            pass
        self.p.wait(10)
        self.reader.join(5)
        self.errt.join(5)
        self.p.stdout.close()
        self.p.stderr.close()

    def send(self, parts):
        # As Go does (gearstest/worker_frame.go): a message of bulk strings only goes as a compact frame.
        if all(type(x) in (bytes, str) for x in parts):
            data = resp.dumps_compact([x.encode() if type(x) is str else x for x in parts])
        else:
            data = resp.dumps(parts)
        with self.lock:
            self.p.stdin.write(data)
            self.p.stdin.flush()

    def send_raw(self, data):
        with self.lock:
            self.p.stdin.write(data)
            self.p.stdin.flush()

    def _read_err(self):
        try:
            for line in self.p.stderr:
                self.stderr.append(line.decode('utf-8', 'replace'))
        except ValueError:  # closed by close()
            pass

    def _read(self):
        while True:
            try:
                msg = resp.read_value(self.p.stdout)
            except EOFError:
                return
            name = msg[0]
            if name == b'done':
                with self.cond:
                    self.done[msg[1]] = msg[2]
                    self.cond.notify_all()
            elif name == b'execdone':
                with self.cond:
                    self.execdone[msg[1].decode()] = msg[2:]
                    self.cond.notify_all()
            elif name == b'yield':
                with self.cond:
                    self.yields.append(msg[1])
            elif name == b'log':
                with self.cond:
                    self.logs.append((msg[1].decode(), msg[2].decode()))
                    self.cond.notify_all()
            elif name == b'newid':
                with self.cond:
                    i = self.next_id
                    self.next_id += 1
                self.send([b'reply', msg[1], b'v', ('0' * 40 + '-%d' % i).encode()])
            elif name == b'newexec':
                with self.cond:
                    i = self.next_exec
                    self.next_exec += 1
                self.send([b'reply', msg[1], b'v', ('0' * 40 + '-%d' % i).encode()])
            elif name == b'configget':
                v = self.config.get(msg[2].decode())
                self.send([b'reply', msg[1], b'v', v.encode() if v is not None else None])
            elif name == b'lock':
                self.locks.append(msg[2])
                self.send([b'reply', msg[1], b'v', resp.Status('OK')])
            elif name == b'unlock':
                self.unlocks.append(msg[1])
            elif name == b'hazard':
                with self.cond:
                    self.hazards.append((msg[2], msg[3]))
                    self.cond.notify_all()
                if msg[1]:
                    self.send([b'reply', msg[1], b'v', self.hazard_text(msg[2], msg[3])])
            elif name in (b'call', b'rcall'):  # rcall: a reader's call (no cluster check in Go)
                with self.cond:
                    self.calls.append(msg[2:])
                    self.cond.notify_all()
                if msg[3] == b'HOLD':
                    # execute('HOLD'): answered (OK) once the test sets self.hold.
                    def answer(cid=msg[1]):
                        self.hold.wait()
                        self.send([b'reply', cid, b'v', resp.Status('OK')])
                    threading.Thread(target=answer, daemon=True).start()
                    continue
                kind, v = self.command([a for a in msg[3:]])
                self.send([b'reply', msg[1], kind, v])

    @staticmethod
    def hazard_text(hid, detail):
        """The text this fake answers to `hazard` (Go's real texts are in hazards.go)."""
        return b'HAZARD ' + hid + b': ' + detail

    def wait_call(self, args, timeout=None):
        """Waits until the worker sent `call` with these arguments (token excluded)."""
        timeout = self.timeout if timeout is None else timeout
        with self.cond:
            if not self.cond.wait_for(lambda: any(c[1:] == args for c in self.calls), timeout):
                raise AssertionError('no call %r; stderr=%s' % (args, ''.join(self.stderr)))

    def wait_log(self, text, timeout=None):
        """Waits until the worker sent `log` with this message."""
        timeout = self.timeout if timeout is None else timeout
        with self.cond:
            if not self.cond.wait_for(lambda: any(m == text for _, m in self.logs), timeout):
                raise AssertionError('no log %r; stderr=%s' % (text, ''.join(self.stderr)))

    def wait_hazards(self, n, timeout=None):
        """Waits until n hazards were reported and returns them."""
        timeout = self.timeout if timeout is None else timeout
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.hazards) >= n, timeout):
                raise AssertionError('%d hazards, want %d; stderr=%s' % (len(self.hazards), n, ''.join(self.stderr)))
            return list(self.hazards)

    def command(self, args):
        cmd = args[0].decode().lower()
        if cmd == 'set':
            self.data[args[1]] = args[2]
            return b'v', resp.Status('OK')
        if cmd == 'get':
            return b'v', self.data.get(args[1])
        if cmd == 'incr':
            v = self.data.get(args[1], b'0')
            try:
                n = int(v) + 1
            except ValueError:
                return b'e', b'ERR value is not an integer or out of range\r\n'
            self.data[args[1]] = b'%d' % n
            return b'v', n
        if cmd == 'rpush':
            return b'v', 1
        if cmd == 'lrange':
            return b'v', [b'a', None, 3, resp.Status('st')]
        if cmd == 'get2':
            return b'e', b'Invalid argument'
        return b'e', b'No such file or directory'

    def wait(self, rid, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        with self.cond:
            ok = self.cond.wait_for(lambda: rid in self.done, timeout)
            if not ok:
                raise AssertionError('no done for %r; stderr=%s' % (rid, ''.join(self.stderr)))
            return self.done.pop(rid)

    def wait_exec(self, execid, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        with self.cond:
            ok = self.cond.wait_for(lambda: execid in self.execdone, timeout)
            if not ok:
                raise AssertionError('no execdone for %r; stderr=%s' % (execid, ''.join(self.stderr)))
            return self.execdone.pop(execid)

    def rid(self):
        return b'%d' % next(self.rids)

    def exec_(self, script, sid='s1', mode='create', replaced=None, desc=None, specs=(), regids=None,
              token='', flags=None):
        rid = self.rid()
        msg = [b'exec', rid, sid, desc, script, mode, replaced, list(specs), regids, token]
        if flags is not None:
            msg.append(flags)
        self.send(msg)
        return self.wait(rid)

    def trigger_async(self, regid, *args, execid='x', token='', flags=''):
        rid = self.rid()
        self.send([b'trigger', rid, regid, execid, token, flags] + [
            a if isinstance(a, bytes) else a.encode() for a in args])
        return rid

    def trigger(self, regid, *args, **kw):
        """Triggers and returns ["ok", records, errors]; the end status goes to last_status."""
        return self.wait_trigger(self.trigger_async(regid, *args, **kw))

    def wait_trigger(self, rid, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        got = self.wait(rid, timeout)
        self.last_status = got[3] if len(got) > 3 else None
        return got[:3]
