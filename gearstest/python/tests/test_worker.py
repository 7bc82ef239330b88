"""Drives worker.py through a fake Go peer (fakego.py) and checks exact protocol answers."""
import ast
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakego import FakeGo  # noqa: E402

Z = '0' * 40


def rid(n):
    return ('%s-%d' % (Z, n)).encode()


def tb_last(text):
    """Returns the last line of a traceback-list error text."""
    lines = ast.literal_eval(text.decode())
    return lines[-1]


class WorkerTest(unittest.TestCase):
    config = None

    def setUp(self):
        self.g = FakeGo(config=self.config)

    def tearDown(self):
        self.g.close()

    def register(self, script, sid='s1', **kw):
        r = self.g.exec_(script, sid=sid, **kw)
        self.assertEqual(r[0], b'ok', r)
        return [reg[0] for reg in r[1]]


class EncodingTest(WorkerTest):
    def test_raw_scalars(self):
        cases = [("'hello'", b'hello'), ("b'a\\xff\\x00b'", b'a\xff\x00b'), ('42', 42),
                 ('-3', -3), ('1.5', b'1.500000'), ('True', 1), ('False', 0), ('None', b'PY RECORD'),
                 ("{'a': 1}", b'PY RECORD'), ("(1, 2)", b'PY RECORD'), ("bytearray(b'x')", b'PY RECORD'),
                 ('2 ** 70', -1), ("['+in', '-out', '+', '-', [1, None]]", None)]
        for i, (expr, want) in enumerate(cases):
            [reg] = self.register("GB('CommandReader').map(lambda x: %s).register(trigger='t%d', "
                                  "mode='sync', convertToStr=False)" % (expr, i), sid='s%d' % i)
            got = self.g.trigger(reg, 't%d' % i)
            if want is None:
                # status and error elements inside a list; lone '+'/'-' stay bulk strings
                self.assertEqual(got[1][0][:4], ['in', 'out', b'+', b'-'])
                self.assertEqual(type(got[1][0][0]).__name__, 'Status')
                self.assertEqual(type(got[1][0][1]).__name__, 'Error')
                self.assertEqual(got[1][0][4], [1, b'PY RECORD'])
            else:
                self.assertEqual(got, [b'ok', [want], []], expr)

    def test_str_scalars(self):
        cases = [('7', b'7'), ('1.5', b'1.5'), ('True', b'True'), ('None', b'None'),
                 ("b'ab'", b"b'ab'"), ("'hello'", b'hello'), ("''", b'')]
        for i, (expr, want) in enumerate(cases):
            [reg] = self.register("GB('CommandReader').map(lambda x: %s).register(trigger='t%d', "
                                  "mode='sync')" % (expr, i), sid='s%d' % i)
            self.assertEqual(self.g.trigger(reg, 't%d' % i), [b'ok', [want], []], expr)

    def test_negative_int_is_error_element(self):
        [reg] = self.register("GB('CommandReader').map(lambda x: -5).register(trigger='t')")
        got = self.g.trigger(reg, 't')
        self.assertEqual(got, [b'ok', ['5'], []])
        self.assertEqual(type(got[1][0]).__name__, 'Error')

    def test_reg_steps_last_first(self):
        r = self.g.exec_("GB('CommandReader').map(lambda x: x).register(trigger='t', mode='sync', desc='d')")
        self.assertEqual(r[0], b'ok')
        regid, reader, desc, mode, trigger, inorder, steps = r[1][0]
        self.assertEqual([reader, desc, mode, trigger, inorder], [b'CommandReader', None, b'sync', b't', 0])
        self.assertEqual([s[:2] for s in steps], [[b'collect', b'collect'],
                                                  [b'map', b'RedisGearsPy_PyCallbackMapper'],
                                                  [b'map', b'RedisGearsPy_PyCallbackMapper'],
                                                  [b'map', b'RedisGearsPy_ToPyRecordMapper']])
        self.assertTrue(steps[2][2].startswith(b'<function <lambda> at 0x'))
        self.assertEqual(steps[3][2], b'')
        r = self.g.exec_("GB('CommandReader', desc='my desc').register(trigger='t2', inorder=True)", sid='s2')
        self.assertEqual(r[1][0][2:6], [b'my desc', b'async', b't2', 1])

    def test_trigger_record(self):
        [reg] = self.register("GB('CommandReader').register(trigger='t', mode='sync')")
        self.assertEqual(reg, rid(1))
        self.assertEqual(self.g.trigger(reg, 't', 'foo', 'bar'), [b'ok', [b"['t', 'foo', 'bar']"], []])
        self.assertEqual(self.g.last_status, b'done')


class OperationsTest(WorkerTest):
    def trig(self, script, *args, **kw):
        [reg] = self.register(script, sid=kw.pop('sid', 's1'))
        return self.g.trigger(reg, *args)

    def test_flatmap_reverse(self):
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).register(trigger='fm')",
                                   'fm', 'a', 'b', 'c', 'd'), [b'ok', [b'd', b'c', b'b', b'a'], []])
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: tuple(x[1:])).register(trigger='fmt')",
                                   'fmt', 'a', 'b', sid='s2'), [b'ok', [b"('a', 'b')"], []])
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: [[1, 2], [3]]).register("
                                   "trigger='fmn', convertToStr=False)", 'fmn', sid='s3'),
                         [b'ok', [[3], [1, 2]], []])

    def test_sort(self):
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).sort().register(trigger='a')",
                                   'a', 'b', 'd', 'a', 'c'), [b'ok', [b'a', b'b', b'c', b'd'], []])
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).sort(reverse=False)"
                                   ".register(trigger='d')", 'd', 'b', 'd', 'a', 'c', sid='s2'),
                         [b'ok', [b'd', b'c', b'b', b'a'], []])

    def test_count_avg_distinct_limit(self):
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).count().register(trigger='c')",
                                   'c', 'a', 'b'), [b'ok', [b'2'], []])
        # nothing to count: no record at all (gears-spec 8)
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).count().register(trigger='c0')",
                                   'c0', sid='s2'), [b'ok', [], []])
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).avg().register(trigger='av')",
                                   'av', '1', '2', '4', sid='s3'), [b'ok', [b'2.3333333333333335'], []])
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).distinct().register(trigger='di')",
                        'di', 'a', 'a', 'b', sid='s4')
        self.assertEqual(sorted(got[1]), [b'a', b'b'])
        self.assertEqual(self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).limit(2, 1).register(trigger='li')",
                                   'li', '1', '2', '3', '4', sid='s5'), [b'ok', [b'3', b'2'], []])

    def test_groupby_countby_aggregate(self):
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).countby().register(trigger='cb', "
                        "convertToStr=False)", 'cb', 'a', 'b', 'a')
        self.assertEqual(sorted(got[1]), [b'PY RECORD', b'PY RECORD'])
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).countby().map(lambda r: [r['key'], r['value']])"
                        ".register(trigger='cb2', convertToStr=False)", 'cb2', 'a', 'b', 'a', sid='s2')
        self.assertEqual(sorted(got[1]), [[b'a', 2], [b'b', 1]])
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).batchgroupby(lambda r: r, lambda k, l: len(l))"
                        ".map(lambda r: [r['key'], r['value']]).register(trigger='bg', convertToStr=False)",
                        'bg', 'x', 'y', 'x', sid='s3')
        self.assertEqual(sorted(got[1]), [[b'x', 2], [b'y', 1]])
        got = self.trig("GB('CommandReader').flatmap(lambda x: [int(i) for i in x[1:]]).aggregate(0, "
                        "lambda a, r: a + r, lambda a, r: a + r).register(trigger='ag', convertToStr=False)",
                        'ag', '1', '2', '3', sid='s4')
        self.assertEqual(got, [b'ok', [6], []])
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).filter(lambda r: r != 'b')"
                        ".foreach(lambda r: r.upper()).register(trigger='ff')", 'ff', 'a', 'b', 'c', sid='s5')
        self.assertEqual(got, [b'ok', [b'c', b'a'], []])

    def test_accumulate_error_restarts_and_extractor_repr(self):
        # accumulate frees its accumulator when the callback fails: counting restarts from None
        got = self.trig("def acc(a, r):\n    if r == 'x':\n        raise ValueError('x')\n    return (a or 0) + 1\n"
                        "GB('CommandReader').flatmap(lambda x: x[1:]).accumulate(acc).register(trigger='ac', "
                        "convertToStr=False)", 'ac', 'a', 'x', 'b', 'c')
        # flatmap emits c, b, x, a: c and b count to 2, x fails and resets, a counts 1
        self.assertEqual(got[1], [1])
        self.assertEqual(tb_last(got[2][0]), 'ValueError: x\n')
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).localgroupby(lambda r: [r], "
                        "lambda k, a, r: k).register(trigger='ex', convertToStr=False)", 'ex', 'a', sid='s2')
        self.assertEqual(got, [b'ok', [b'PY RECORD'], []])
        got = self.trig("GB('CommandReader').flatmap(lambda x: x[1:]).localgroupby(lambda r: [r], "
                        "lambda k, a, r: k).map(lambda r: r['key']).register(trigger='ex2')", 'ex2', 'a', sid='s3')
        self.assertEqual(got, [b'ok', [b"['a']"], []])

    def test_operation_argument_errors(self):
        for expr, text in [("map(1)", 'map argument must be a function'),
                           ("map(str)", 'map argument must be a function'),
                           ("map(lambda x: x, lambda x: x)", 'wrong number of args to map function'),
                           ("flatmap()", 'wrong number of args to flatmap function'),
                           ("limit('a')", 'limit argument must be a number'),
                           ("groupby(1, 2)", 'groupby extractor argument must be a function'),
                           ("localgroupby(lambda x: x, 2)", 'groupby reducer argument must be a function'),
                           ("collect(1)", 'wrong number of args to collect function'),
                           ("register(mode='bad')", 'unknown execution mode'),
                           ("register(mode=1)", 'execution mode must be a string'),
                           ("register(trigger=1)", 'trigger argument is not string'),
                           ("register(trigger='t', inorder=1)", 'inorder argument is be boolean'),
                           ("register(trigger='t', hook='x')",
                            'trigger argument can not be given with keyprefix or hook'),
                           ("register()", 'no trigger or hook argument was given'),
                           ("register(trigger='t', onRegistered=1)", 'OnRegistered argument must be a function'),
                           ("run()", 'Given reader do not support run or not exists')]:
            r = self.g.exec_("GB('CommandReader').%s" % expr)
            self.assertEqual(r[0], b'err')
            self.assertEqual(tb_last(r[1]), 'gears.error: %s\n' % text, expr)
        r = self.g.exec_("GB(1)")
        self.assertEqual(tb_last(r[1]), 'gears.error: reader argument must be a string\n')
        # KeysReader and StreamReader register (issue 9); PythonReader cannot.
        r = self.g.exec_("GB('PythonReader').register(prefix='x')")
        self.assertEqual(tb_last(r[1]), 'gears.error: given reader does not exists or does not support register\n')
        r = self.g.exec_("GB('KeysReader').register(keyTypes=['nope'])")
        self.assertEqual(tb_last(r[1]), 'gears.error: unknown key type\n')
        r = self.g.exec_("GB('PythonReader').run()")
        self.assertEqual(tb_last(r[1]), 'gears.error: pyreader argument must be a function\n')


class ErrorsTest(WorkerTest):
    def test_traceback_only_user_frames(self):
        [reg] = self.register("def f(x):\n    if len(x) > 1:\n        raise Exception('bad arg ' + x[1])\n"
                              "    return 'ok'\nGB('CommandReader').map(f).register(trigger='t', mode='sync')")
        self.assertEqual(self.g.trigger(reg, 't'), [b'ok', [b'ok'], []])
        got = self.g.trigger(reg, 't', 'a')
        self.assertEqual(got[:2], [b'ok', []])
        self.assertEqual(got[2][0].decode(), str(['Traceback (most recent call last):\n',
                                                   '  File "<string>", line 3, in f\n',
                                                   'Exception: bad arg a\n']))

    def test_syntax_errors_use_37_wording(self):
        for src, line in [('1defs + GearsBuilder().notexists()', 1), ('def f(:', 1), ('x = (f := 1)', 1),
                          ('def f(a, /): pass', 1), ('@d[0]\ndef f(): pass', 1),
                          ('def f(x):\n    return 1, *x', 2), ('f = lambda a, /: a', 1)]:
            self.assertEqual(self.g.exec_(src), [b'err', b"Error type: <class 'SyntaxError'>, Value: invalid "
                                                         b"syntax (<string>, line %d)" % line], src)
        self.assertEqual(self.g.exec_("for x in []:\n    try:\n        pass\n    finally:\n        continue"),
                         [b'err', b"Error type: <class 'SyntaxError'>, Value: 'continue' not supported inside "
                                  b"'finally' clause (<string>, line 5)"])
        self.assertEqual(self.g.exec_("for x in []:\n    try:\n        continue\n    finally:\n        pass")[0],
                         b'ok')
        self.assertEqual(self.g.exec_("x = 'abc")[1],
                         b"Error type: <class 'SyntaxError'>, Value: EOL while scanning string literal "
                         b"(<string>, line 1)")

    def test_script_errors(self):
        r = self.g.exec_("failure")
        self.assertEqual(r[1].decode(), str(['Traceback (most recent call last):\n',
                                             '  File "<string>", line 1, in <module>\n',
                                             "NameError: name 'failure' is not defined\n"]))
        # no "Did you mean" suggestions (Python >= 3.12 adds them; the real server's 3.7 does not)
        r = self.g.exec_("class A(object):\n    notexist = 1\nA().notexists")
        self.assertEqual(tb_last(r[1]), "AttributeError: 'A' object has no attribute 'notexists'\n")
        r = self.g.exec_("import sys as s2\nsys")
        self.assertEqual(tb_last(r[1]), "NameError: name 'sys' is not defined\n")
        r = self.g.exec_("GearsBuilder('nosuch')")
        self.assertEqual(tb_last(r[1]), 'gears.error: The given reader does not exists\n')
        r = self.g.exec_("GB('ShardsIDReader').run()\nGB('ShardsIDReader').run()")
        self.assertEqual(tb_last(r[1]), 'gears.error: Can not run more then 1 executions in a single script\n')
        # a script can not kill the worker
        self.assertEqual(self.g.exec_("import sys\nsys.exit(3)")[0], b'err')
        self.assertEqual(self.g.exec_("raise KeyboardInterrupt()")[0], b'err')
        self.assertEqual(self.g.exec_("x = 1"), [b'ok', [], None])

    def test_attempt_traceback_off(self):
        self.g.send([b'config', b'PythonAttemptTraceback', b'0'])
        r = self.g.exec_("raise ValueError('nope')")
        self.assertEqual(r, [b'err', b"Error type: <class 'ValueError'>, Value: nope"])
        self.g.send([b'config', b'PythonAttemptTraceback', b'1'])
        self.assertIn(b'Traceback', self.g.exec_("raise ValueError('nope')")[1])

    def test_flat_error(self):
        [reg] = self.register("def f(x):\n    raise flat_error('just this')\n"
                              "GB('CommandReader').map(f).register(trigger='t')")
        self.assertEqual(self.g.trigger(reg, 't'), [b'ok', [], [b'just this']])

    def test_execute_errors(self):
        self.g.data[b's'] = b'abc'
        [reg] = self.register("def f(x):\n    try:\n        execute('incr', 's')\n        return 'no'\n"
                              "    except Exception as e:\n        return [type(e).__name__, str(e)]\n"
                              "GB('CommandReader').map(f).register(trigger='c', convertToStr=False)")
        self.assertEqual(self.g.trigger(reg, 'c'),
                         [b'ok', [[b'error', b'ERR value is not an integer or out of range\r\n']], []])
        [reg] = self.register("GB('CommandReader').map(lambda x: execute('nosuch', 'a')).register(trigger='u')",
                              sid='s2')
        got = self.g.trigger(reg, 'u')
        self.assertEqual(tb_last(got[2][0]), 'gears.error: No such file or directory\n')
        [reg] = self.register("GB('CommandReader').map(lambda x: [execute(), execute('lrange', 'l')])"
                              ".register(trigger='e', convertToStr=False)", sid='s3')
        self.assertEqual(self.g.trigger(reg, 'e'), [b'ok', [[[], [b'a', b'PY RECORD', 3, b'st']]], []])
        [reg] = self.register("GB('CommandReader').map(lambda x: execute(1)).register(trigger='n')", sid='s4')
        self.assertEqual(tb_last(self.g.trigger(reg, 'n')[2][0]),
                         'gears.error: the given command must be a string\n')

    def test_binary_get_is_bytearray(self):
        self.g.data[b'bin'] = b'\xff\x00\x01'
        [reg] = self.register("GB('CommandReader').map(lambda x: [type(execute('get', 'bin')).__name__, "
                              "execute('get', 'bin'), bytes(execute('get', 'bin'))])"
                              ".register(trigger='b', convertToStr=False)")
        self.assertEqual(self.g.trigger(reg, 'b'), [b'ok', [[b'bytearray', b'PY RECORD', b'\xff\x00\x01']], []])
        self.assertEqual(self.g.calls[-1], [b'', b'get', b'bin'])


class SessionTest(WorkerTest):
    def test_ids_and_uniqueness(self):
        self.assertEqual(self.register("GB('CommandReader').register(trigger='b')", sid='b'), [rid(1)])
        # Go takes the third id of a registering RG.PYEXECUTE; the worker asks for GB() and register()
        self.assertEqual(self.register("GB('CommandReader').register(trigger='a')", sid='a'), [rid(3)])
        r = self.g.exec_("GB('CommandReader').register(trigger='a')", sid='c')
        self.assertEqual(tb_last(r[1]), 'gears.error: trigger already registered\n')
        r = self.g.exec_("GB('CommandReader').register(trigger='x')\nGB('CommandReader').register(trigger='x')",
                         sid='c')
        self.assertEqual(tb_last(r[1]), 'gears.error: trigger already registered in this session\n')
        # upgrade: the replaced session's trigger does not conflict; its registrations go
        r = self.g.exec_("GB('CommandReader').map(lambda x: 'v2').register(trigger='a', mode='sync')",
                         sid='a', mode='upgrade', replaced='a')
        self.assertEqual(r[0], b'ok')
        new = r[1][0][0]
        self.assertEqual(self.g.trigger(new, 'a'), [b'ok', [b'v2'], []])
        # an async trigger Go accepted before the upgrade committed, not started then, is aborted
        # without running: [] and no error (the upgrade unregisters with abortPending, gears-spec 8.1)
        self.assertEqual(self.g.trigger(rid(3), 'a'), [b'ok', [], []])
        self.assertEqual(self.g.last_status, b'aborted')
        self.assertEqual(self.g.trigger(rid(99), 'a'), [b'ok', [], [b'ERR subcommand not found']])

    def test_unregister_abortpending_and_started_executions(self):
        # A sync registration that left is still run for a trigger Go accepted before (it started
        # then); without abortpending an async one runs the old code too; with it, it is aborted.
        [s, a, b] = self.register("GB('CommandReader').map(lambda x: 's').register(trigger='s', mode='sync')\n"
                                  "GB('CommandReader').map(lambda x: 'a').register(trigger='a')\n"
                                  "GB('CommandReader').map(lambda x: 'b').register(trigger='b')")
        self.unregister(s, b'abortpending')
        self.assertEqual(self.g.trigger(s, 's'), [b'ok', [b's'], []])
        self.unregister(a)
        self.assertEqual(self.g.trigger(a, 'a'), [b'ok', [b'a'], []])
        self.unregister(b, b'abortpending')
        self.assertEqual(self.g.trigger(b, 'b'), [b'ok', [], []])
        self.assertEqual(self.g.last_status, b'aborted')

    def test_globals_shared_and_isolated(self):
        [inc] = self.register("n = [0]\ndef f(x):\n    n[0] += 1\n    return n[0]\n"
                              "GB('CommandReader').map(f).register(trigger='i')")
        self.assertEqual(self.g.trigger(inc, 'i'), [b'ok', [b'1'], []])
        self.assertEqual(self.g.trigger(inc, 'i'), [b'ok', [b'2'], []])
        r = self.g.exec_("n", sid='s2')
        self.assertIn("NameError: name 'n' is not defined", r[1].decode())
        self.assertEqual(self.g.exec_("assert __name__ == 'not_main'\nassert hashtag() == '06S'\n"
                                      "assert not isAsyncAllow()", sid='s3'), [b'ok', [], None])

    def test_on_registered_runs_before_answer(self):
        r = self.g.exec_("def f():\n    execute('set', 'reg', 'yes')\n"
                         "GB('CommandReader').register(trigger='t', onRegistered=f)")
        self.assertEqual(r[0], b'ok')
        self.assertEqual(self.g.data.get(b'reg'), b'yes')

    def test_script_calls_use_exec_token(self):
        # Go holds the global lock for the exec's token while the script runs and commits: the
        # script's execute()/atomic() and onRegistered pass it back; a thread the script starts
        # (outside the execution) gets the K2 hazard and sends nothing.
        r = self.g.exec_("import threading\nexecute('set', 'a', '1')\nwith atomic():\n"
                         "    execute('set', 'b', '2')\n"
                         "got = []\n"
                         "def t():\n    try:\n        execute('set', 'c', '3')\n"
                         "    except Exception as e:\n        got.append(str(e))\n"
                         "th = threading.Thread(target=t)\nth.start()\nth.join()\n"
                         "assert got == [\"HAZARD K2: execute() in session 's1'\"], got\n"
                         "def f():\n    execute('set', 'd', '4')\n"
                         "GB('CommandReader').register(trigger='t', onRegistered=f)", token='c7')
        self.assertEqual(r[0], b'ok', r)
        self.assertEqual(self.g.calls, [[b'c7', b'set', b'a', b'1'], [b'c7', b'set', b'b', b'2'],
                                        [b'c7', b'set', b'd', b'4']])
        self.assertEqual((self.g.locks, self.g.unlocks), ([b'c7'], [b'c7']))
        # Without a token (a restore) the script's calls lock per use, without the thread warning.
        r = self.g.exec_("execute('set', 'e', '5')", sid='s2', mode='restore', regids=[])
        self.assertEqual(r, [b'ok', [], None])
        self.assertEqual(self.g.calls[-1], [b'', b'set', b'e', b'5'])

    def test_restore_reuses_ids(self):
        r = self.g.exec_("GB('CommandReader').register(trigger='t')", sid='s', mode='restore',
                         regids=[rid(7)])
        self.assertEqual(r[1][0][0], rid(7))
        self.assertEqual(self.g.next_id, 0)
        r = self.g.exec_("GB('CommandReader').register(trigger='t2')\nGB('ShardsIDReader').run()", sid='s2',
                         mode='restore', regids=[rid(9)])
        self.assertEqual(r, [b'ok', [r[1][0]], None])
        self.assertEqual((self.g.next_id, self.g.next_exec), (0, 0))

    def test_replica_mode(self):
        # A cluster shard applying another shard's registration (flag r, PROTOCOL.md `exec`): the
        # origin's ids and no new ones, the top level's execute() returns None without a call, log()
        # sends nothing, run() makes no execution; onRegistered runs and calls with the exec's token.
        r = self.g.exec_("assert execute('set', 'a', '1') is None\nlog('hidden in replica')\n"
                         "def f():\n    execute('set', 'o', '1')\n"
                         "GB('CommandReader').register(trigger='t', onRegistered=f)\nGB().run()",
                         token='~replica1', regids=[rid(5)], flags='r')
        self.assertEqual(r[0], b'ok', r)
        self.assertEqual(r[1][0][0], rid(5))
        self.assertEqual((self.g.next_id, self.g.next_exec), (0, 0))
        self.assertEqual(self.g.calls, [[b'~replica1', b'set', b'o', b'1']])
        self.assertNotIn('hidden in replica', [m for _, m in self.g.logs])
        # A trigger conflict is the plain reason (Go adds "-ERR shard-<id>: "); a replay that
        # registers less than the origin did applies nothing.
        r = self.g.exec_("GB('CommandReader').register(trigger='t')", sid='s2', regids=[rid(8)], flags='r')
        self.assertEqual(r, [b'err', b'trigger already registered'])
        r = self.g.exec_("if execute('ping'):\n    GB('CommandReader').register(trigger='u')", sid='s3',
                         regids=[rid(9)], flags='r')
        self.assertEqual(r[0], b'err')
        self.assertIn(b'fewer than on the shard that ran it', r[1])
        self.assertEqual(self.g.trigger(rid(9), 'u')[2], [b'ERR subcommand not found'])

    def unregister(self, *args):
        rid_ = self.g.rid()
        self.g.send([b'unregister', rid_] + list(args))
        self.assertEqual(self.g.wait(rid_), [b'ok'])

    def test_unregister(self):
        [reg] = self.register("GB('CommandReader').register(trigger='t')")
        rid_ = self.g.rid()
        self.g.send([b'unregister', rid_, reg])
        self.assertEqual(self.g.wait(rid_), [b'ok'])
        self.assertEqual(self.register("GB('CommandReader').register(trigger='t')", sid='s2'), [rid(3)])

    def test_retired_registrations_are_kept_up_to_the_bound(self):
        # A registration that left still answers the triggers Go accepted before (it runs the old
        # code), through the worker's lookup cache too; only the newest RETIRED_MAX (1024) are kept:
        # the oldest beyond that is not found any more, cached or not.
        import worker
        n = worker.RETIRED_MAX + 1
        regs = self.register("for i in range(%d):\n"
                             "    GB('CommandReader').map(lambda x, i=i: 'old%%d' %% i).register(trigger='t%%d' %% i)" % n)
        self.assertEqual(len(regs), n)
        self.assertEqual(self.g.trigger(regs[0], 't0'), [b'ok', [b'old0'], []])  # now in the cache
        self.unregister(*regs)
        self.assertEqual(self.g.trigger(regs[0], 't0'), [b'ok', [], [b'ERR subcommand not found']])
        self.assertEqual(self.g.trigger(regs[1], 't1'), [b'ok', [b'old1'], []])
        self.assertEqual(self.g.trigger(regs[-1], 't%d' % (n - 1)), [b'ok', [b'old%d' % (n - 1)], []])

    def test_pickle_check(self):
        r = self.g.exec_("import threading\nl = threading.Lock()\ndef f(x):\n    with l:\n        return x\n"
                         "GB('CommandReader').map(f).register(trigger='t')")
        last = tb_last(r[1])
        self.assertTrue(last.startswith('gears.error: Error occured when serialized a python callback, '
                                        'callback=f error=['), last)
        self.assertIn("TypeError: can't pickle _thread.lock objects", last)
        # objects created inside a call, modules, classes and picklable values are fine
        self.assertEqual(self.g.exec_("import threading\nclass C(object):\n    pass\nc = C()\nd = {'a': [1]}\n"
                                      "def f(x):\n    l = threading.Lock()\n    return [c, d, C, threading]\n"
                                      "GB('CommandReader').map(f).register(trigger='t')", sid='s2')[0], b'ok')

    def test_run_python_reader(self):
        r = self.g.exec_("GB('PythonReader').map(lambda x: x * 2).run(lambda: iter([1, 2, 3]))")
        self.assertEqual(r, [b'ok', [], rid(0)])
        self.assertEqual(self.g.wait_exec(rid(0).decode()), [b'done', [b'2', b'4', b'6'], []])
        r = self.g.exec_("GB('ShardsIDReader').run()", sid='s2')
        self.assertEqual(self.g.wait_exec(r[2].decode()), [b'done', [b'1'], []])

    def test_run_pulls_records_and_stops_at_an_error(self):
        # Records go through the steps one at a time (the generator is read lazily: 3 is never read)
        # and the reader stops after a step raised (gears-spec 8): the records before come back.
        r = self.g.exec_("seen = []\n"
                         "def gen():\n    for i in range(4):\n        seen.append(i)\n        yield i\n"
                         "def f(x):\n    if x == 2:\n        raise flat_error('two, seen %s' % seen)\n    return x * 10\n"
                         "GB('PythonReader').map(f).run(gen)")
        self.assertEqual(self.g.wait_exec(r[2].decode()), [b'done', [b'0', b'10'], [b'two, seen [0, 1, 2]']])
        # a flatmap's records of one record all go on; an accumulate sums what was read
        r = self.g.exec_("GB('PythonReader').flatmap(lambda x: [x, x])"
                         ".map(lambda x: flat_error('stop') if x == 1 else x)"
                         ".accumulate(lambda a, x: (a or 0) + 1).run(lambda: (i for i in range(3)))", sid='s2')
        self.assertEqual(self.g.wait_exec(r[2].decode()), [b'done', [b'2'], [b'stop', b'stop']])

    def test_atomic_and_log(self):
        [reg] = self.register("def f(x):\n    with atomic():\n        execute('set', 'k', 'v')\n"
                              "        try:\n            with atomic():\n                pass\n"
                              "        except Exception as e:\n            return str(e)\n"
                              "GB('CommandReader').map(f).register(trigger='t')")
        self.assertEqual(self.g.trigger(reg, 't', token='x1'), [b'ok', [b'Already inside an atomic block'], []])
        self.assertEqual(self.g.locks, [b'x1'])
        self.assertEqual(self.g.unlocks, [b'x1'])
        self.assertEqual(self.g.calls[-1], [b'x1', b'set', b'k', b'v'])
        r = self.g.exec_("log('hello')\nlog('dbg', level='debug')\nlog('x', level='bad')", sid='s2')
        self.assertEqual(tb_last(r[1]), 'gears.error: Log level should be one of the following : '
                                        'debug,verbose,notice,warning\n')
        self.assertEqual(self.g.logs[:2], [('notice', 'hello'), ('debug', 'dbg')])
        self.assertEqual(self.g.exec_("assert configGet('ExecutionMaxIdleTime') == '5000'\n"
                                      "assert gearsConfigGet('nosuch', 'd') == 'd'", sid='s3'), [b'ok', [], None])

    def test_thread_execute_and_atomic_are_hazard_k2(self):
        [reg] = self.register("import threading\ndef f(x):\n    out = []\n    def t():\n"
                              "        for fn in (lambda: execute('get', 'k'), atomic().__enter__,\n"
                              "                   lambda: redisgears.executeCommand('get', 'k')):\n"
                              "            try:\n                fn()\n"
                              "            except Exception as e:\n                out.append(str(e))\n"
                              "    th = threading.Thread(target=t)\n    th.start()\n    th.join()\n"
                              "    return out\nGB('CommandReader').map(f).register(trigger='t', convertToStr=False)")
        self.assertEqual(self.g.trigger(reg, 't'), [b'ok', [[b"HAZARD K2: execute() in session 's1'",
                                                             b"HAZARD K2: atomic() in session 's1'",
                                                             b'HAZARD K2: execute()']], []])
        self.assertEqual(self.g.hazards, [(b'K2', b"execute() in session 's1'"), (b'K2', b"atomic() in session 's1'"),
                                          (b'K2', b'execute()')])
        self.assertEqual((self.g.calls, self.g.locks), ([], []))


class HazardTest(WorkerTest):
    """The hazards the worker detects (gears-spec 8.1; Go's list: hazards.go)."""
    config = {'ExecutionMaxIdleTime': '1000'}

    def test_wait_sync_psync(self):
        [reg] = self.register("def f(x):\n    execute(x[1], *x[2:])\n"
                              "GB('CommandReader').map(f).register(trigger='t', mode='async_local')")
        self.assertEqual(self.g.trigger(reg, 't', 'WAIT', '1', '0', token='x1'), [b'ok', [], [b'HAZARD C2: ']])
        self.assertEqual(self.g.trigger(reg, 't', 'sync', token='x1'), [b'ok', [], [b'HAZARD C3: ']])
        self.assertEqual(self.g.trigger(reg, 't', 'PSync', '?', '-1', token='x1'), [b'ok', [], [b'HAZARD C4: ']])
        self.assertEqual(self.g.hazards, [(b'C2', b''), (b'C3', b''), (b'C4', b'')])
        self.assertEqual(self.g.calls, [])
        # at a script's top level too
        self.assertEqual(self.g.exec_("execute('WAIT', '0', '0')", sid='s2', token='c3'), [b'err', b'HAZARD C2: '])

    def test_client_kill_of_the_sync_caller(self):
        [sync, asyn] = self.register(
            "def f(x):\n    try:\n        execute('CLIENT', *x[1:])\n    except Exception as e:\n        return str(e)\n"
            "GB('CommandReader').map(f).register(trigger='s', mode='sync')\n"
            "GB('CommandReader').map(f).register(trigger='a', mode='async')")
        kill = lambda reg, *args: self.g.trigger(reg, 'x', *args, token='c7')[1]  # noqa: E731
        hit = [('KILL', 'ID', '7'), ('kill', '127.0.0.1:5000'), ('KILL', 'ADDR', '1.2.3.4:5'),
               ('KILL', 'LADDR', '127.0.0.1:6379'), ('KILL', 'USER', 'default'), ('KILL', 'TYPE', 'normal'),
               ('KILL', 'ID', '7', 'SKIPME', 'yes'), ('KILL', 'MAXAGE', '1')]
        for args in hit:
            want = "HAZARD C5: " + ', '.join(repr(a) for a in args[1:])
            self.assertEqual(kill(sync, *args), [want.encode()], args)
        # Filters that rule the caller out, syntax errors, and async mode go to Redis.
        miss = [('KILL', 'ID', '8'), ('KILL', 'TYPE', 'master'), ('KILL', 'ADDR', 'a:1', 'ID', '9'),
                ('KILL',), ('KILL', 'ID'), ('KILL', 'NOSUCH', 'x'), ('KILL', 'ID', 'abc')]
        for args in miss:
            self.assertEqual(kill(sync, *args), [b'No such file or directory'], args)
        self.assertEqual(kill(asyn, 'KILL', 'ID', '7'), [b'No such file or directory'])
        self.assertEqual(len(self.g.hazards), len(hit))
        self.assertEqual(len(self.g.calls), len(miss) + 1)

    def test_deep_reply(self):
        [reg] = self.register("def f(x):\n    r = 'x'\n    for i in range(int(x[1])):\n        r = [r]\n    return r\n"
                              "GB('CommandReader').map(f).register(trigger='t', convertToStr=False)")
        # fakego's (recursive) reader must read 10,000 levels
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(40000)
        self.addCleanup(sys.setrecursionlimit, old)
        ok = self.g.trigger(reg, 't', '10000')  # the bound: fine, and encoded right
        v = ok[1][0]
        for _ in range(9999):
            v = v[0]
        self.assertEqual((ok[0], ok[2], v), (b'ok', [], [b'x']))
        self.assertEqual(self.g.trigger(reg, 't', '10001'), [b'ok', [], [b'HAZARD C6: a reply nested more than 10000 deep']])
        self.assertEqual(self.g.hazards, [(b'C6', b'a reply nested more than 10000 deep')])

    def test_setrecursionlimit(self):
        self.assertEqual(self.g.exec_("import sys\nsys.setrecursionlimit(10000)\nsys.setrecursionlimit(1000)"),
                         [b'ok', [], None])
        self.assertEqual(self.g.exec_("import sys\nsys.setrecursionlimit(1000000)", sid='s2'),
                         [b'err', b'HAZARD C7: sys.setrecursionlimit(1000000) above 10000'])
        self.assertEqual(self.g.hazards, [(b'C7', b'sys.setrecursionlimit(1000000) above 10000')])

    def test_abort_of_a_running_async_def(self):
        [reg, wreg] = self.register("async def f(x):\n    log('spinning ' + x[1])\n    while True:\n        pass\n"
                              "GB('CommandReader').map(f).register(trigger='t', mode='async')\n"
                              "import asyncio\nasync def g(x):\n"
                              "    asyncio.get_event_loop().call_soon(lambda: execute('set', 'waiting', x[1]))\n"
                              "    await asyncio.sleep(30)\n"
                              "GB('CommandReader').map(g).register(trigger='w', mode='async')", sid='s1')
        # suspended at an await (the call_soon callback runs once it is): a plain abort
        # (it ends when ExecutionMaxIdleTime, 1 s here, runs out)
        rw = self.g.trigger_async(wreg, 'w', '1', execid=b'e1')
        self.g.wait_call([b'set', b'waiting', b'1'])
        self.g.send([b'abort', b'e1'])
        self.assertEqual(self.g.wait_trigger(rw, timeout=10), [b'ok', [], []])
        self.assertEqual(self.g.hazards, [])
        # running without yielding: H1
        self.g.trigger_async(reg, 't', '2', execid=b'e2')
        self.g.wait_log('spinning 2')  # log() waits for no answer: f now spins
        self.g.send([b'abort', b'e2'])
        self.assertEqual(self.g.wait_hazards(1), [(b'H1', b"execution 'e2'")])


class FutureTest(WorkerTest):
    config = {'ExecutionMaxIdleTime': '500'}

    def test_future_from_thread(self):
        [reg] = self.register("import threading\nimport time\ndef f(x):\n    fut = gearsFuture()\n"
                              "    def resolve():\n        time.sleep(0.1)\n"
                              "        if x[1] == 'bad':\n            fut.continueFailed('failed ' + x[1])\n"
                              "        else:\n            fut.continueRun('resolved ' + x[1])\n"
                              "    threading.Thread(target=resolve).start()\n    return fut\n"
                              "GB('CommandReader').map(f).map(lambda r: r + '!').register(trigger='fut', mode='sync')")
        r = self.g.trigger_async(reg, 'fut', 'a', execid=b'e1')
        self.assertEqual(self.g.wait_trigger(r), [b'ok', [b'resolved a!'], []])
        self.assertEqual(self.g.yields, [r])
        self.assertEqual(self.g.trigger(reg, 'fut', 'bad'), [b'ok', [], [b'failed bad']])

    def test_max_idle(self):
        [reg] = self.register("def f(x):\n    return gearsFuture()\nGB('CommandReader').map(f).register(trigger='t')")
        t = time.time()
        self.assertEqual(self.g.trigger(reg, 't'), [b'ok', [], [b'Execution max idle reached']])
        self.assertLess(time.time() - t, 2)

    def test_future_errors(self):
        r = self.g.exec_("gearsFuture()")
        self.assertEqual(tb_last(r[1]), 'gears.error: Future object can only be created inside certain '
                                        'execution steps\n')
        [reg] = self.register("def f(x):\n    gearsFuture()\n    gearsFuture()\n"
                              "GB('CommandReader').map(f).register(trigger='t', mode='sync')", sid='s2')
        self.assertEqual(tb_last(self.g.trigger(reg, 't')[2][0]),
                         'gears.error: Can not create async record twice on the same step\n')
        [reg] = self.register("def f(x):\n    return [isAsyncAllow(), str(gearsFuture())]\n"
                              "GB('CommandReader').map(f).register(trigger='m', mode='sync')", sid='s3')
        self.assertEqual(tb_last(self.g.trigger(reg, 'm', flags='m')[2][0]),
                         'gears.error: Creating async record is not allowed\n')

    def test_await_run_in_coroutine(self):
        [reg] = self.register("async def f(x):\n"
                              "    res = await GB('PythonReader').map(lambda r: r * 2).run(lambda: iter([1, 2]))\n"
                              "    return res\n"
                              "GB('CommandReader').map(f).register(trigger='c', mode='async', convertToStr=False)")
        self.assertEqual(self.g.trigger(reg, 'c'), [b'ok', [[[b'2', b'4'], []]], []])

    def test_coroutine_step(self):
        [reg] = self.register("import asyncio\nasync def f(x):\n    await asyncio.sleep(0.05)\n"
                              "    return 'co ' + x[1]\nGB('CommandReader').map(f).register(trigger='c', mode='sync')")
        self.assertEqual(self.g.trigger(reg, 'c', 'a'), [b'ok', [b'co a'], []])

    def test_one_record_plan_waits_midway(self):
        # A trigger's one record through map/filter/foreach steps runs without a generator until a
        # step returns an awaitable; the steps after it then run on the value it gives.
        for mode in ('sync', 'async', 'async_local'):
            [reg] = self.register(
                "import asyncio\nseen = []\nasync def slow(x):\n    await asyncio.sleep(0)\n    return x[1] + '!'\n"
                "GB('CommandReader').map(lambda x: x).map(slow).filter(lambda s: s != 'no!')"
                ".foreach(lambda s: seen.append(s)).map(lambda s: [s.upper(), len(seen)])"
                ".register(trigger='w%s', mode='%s')" % (mode, mode), sid='w' + mode)
            self.assertEqual(self.g.trigger(reg, 'w', 'a'), [b'ok', [b"['A!', 1]"], []], mode)
            self.assertEqual(self.g.trigger(reg, 'w', 'no'), [b'ok', [], []], mode)
            self.assertEqual(self.g.trigger(reg, 'w', 'b'), [b'ok', [b"['B!', 2]"], []], mode)
            [reg] = self.register(
                "GB('CommandReader').map(lambda x: x[1]).filter(lambda s: s != 'no').foreach(lambda s: s)"
                ".map(lambda s: s * 2).register(trigger='d%s', mode='%s')" % (mode, mode), sid='d' + mode)
            self.assertEqual(self.g.trigger(reg, 'd', 'ab'), [b'ok', [b'abab'], []], mode)
            self.assertEqual(self.g.trigger(reg, 'd', 'no'), [b'ok', [], []], mode)


class ConcurrencyTest(WorkerTest):
    def test_blocking_async_triggers_run_in_parallel(self):
        [reg] = self.register("import time\ndef f(x):\n    time.sleep(0.3)\n    return x[1]\n"
                              "GB('CommandReader').map(f).register(trigger='sl', mode='async')")
        t = time.time()
        rids = [self.g.trigger_async(reg, 'sl', str(i), execid=b'e%d' % i) for i in range(60)]
        res = [self.g.wait_trigger(r) for r in rids]
        self.assertLess(time.time() - t, 1.0)
        self.assertEqual(res[7], [b'ok', [b'7'], []])

    def test_blocked_reader_is_replaced(self):
        [slow, fast] = self.register("import time\ndef f(x):\n    time.sleep(0.6)\n    return 'slow'\n"
                                     "GB('CommandReader').map(f).register(trigger='slow')\n"
                                     "GB('CommandReader').map(lambda x: execute('get', 'k')).register(trigger='fast')")
        self.g.data[b'k'] = b'v'
        t = time.time()
        s = self.g.trigger_async(slow, 'slow', execid=b'e1')
        self.assertEqual(self.g.trigger(fast, 'fast', execid=b'e2'), [b'ok', [b'v'], []])
        self.assertLess(time.time() - t, 0.4)
        self.assertEqual(self.g.wait_trigger(s), [b'ok', [b'slow'], []])
        # and the reading goes on afterwards
        self.assertEqual(self.g.trigger(fast, 'fast', execid=b'e3'), [b'ok', [b'v'], []])

    def test_broken_message_is_skipped(self):
        self.g.send_raw(b'?garbage\r\n')
        self.g.send([b'nosuchmessage', b'1'])
        self.g.send([b'reply', b'999', b'v', b'x'])
        self.assertEqual(self.g.exec_("x = 1"), [b'ok', [], None])


class AbortTest(WorkerTest):
    def test_abort_waiting_execution(self):
        r = self.g.exec_("GB('PythonReader').map(lambda x: gearsFuture()).run(lambda: iter([1]))")
        execid = r[2]
        time.sleep(0.2)
        self.g.send([b'abort', execid])
        self.assertEqual(self.g.wait_exec(execid.decode(), timeout=3), [b'aborted', [], []])


    def test_abort_waiting_trigger(self):
        [reg] = self.register("GB('CommandReader').map(lambda x: gearsFuture()).register(trigger='t')")
        r = self.g.trigger_async(reg, 't', execid=b'e9')
        time.sleep(0.2)
        self.g.send([b'abort', b'e9'])
        self.assertEqual(self.g.wait_trigger(r, timeout=3), [b'ok', [], []])
        self.assertEqual(self.g.last_status, b'aborted')


class RequirementsTest(WorkerTest):
    def test_installed_requirement(self):
        r = self.g.rid()
        self.g.send([b'reqs', r, b'0', b'pip'])
        got = self.g.wait(r)
        self.assertEqual(got[0], b'ok')
        self.assertEqual(got[1][0][0], b'pip')
        self.assertEqual(got[1][0][3:], [1, 1])

    def test_uninstallable_requirement_fails(self):
        self.g.close()
        import tempfile
        d = tempfile.mkdtemp()
        self.g = FakeGo(reqdir=d)
        r = self.g.rid()
        self.g.send([b'reqs', r, b'0', b'gearstest-no-such-package==0.0.1'])
        got = self.g.wait(r, timeout=170)
        self.assertEqual(got, [b'err', b'Could not satisfy requirements (look at redis log file for more '
                                       b'information)'])

    def test_install_local_wheel(self):
        # No package index here: a wheel file is a pip requirement spec that installs offline.
        import tempfile
        import zipfile
        d = tempfile.mkdtemp()
        whl = os.path.join(d, 'gearstest_demo-0.1-py3-none-any.whl')
        with zipfile.ZipFile(whl, 'w') as z:
            z.writestr('gearstest_demo.py', 'VALUE = 42\n')
            z.writestr('gearstest_demo-0.1.dist-info/METADATA',
                       'Metadata-Version: 2.1\nName: gearstest-demo\nVersion: 0.1\n')
            z.writestr('gearstest_demo-0.1.dist-info/WHEEL',
                       'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
            z.writestr('gearstest_demo-0.1.dist-info/RECORD', '')
        self.g.close()
        self.g = FakeGo(reqdir=os.path.join(d, 'reqs'))
        r = self.g.rid()
        self.g.send([b'reqs', r, b'0', whl.encode()])
        got = self.g.wait(r, timeout=170)
        self.assertEqual(got[0], b'ok', self.g.stderr)
        name, path, wheels, downloaded, installed = got[1][0]
        self.assertEqual(name, whl.encode())
        self.assertTrue(path.startswith(os.path.join(d, 'reqs').encode()), path)
        self.assertEqual(wheels, [b'gearstest_demo-0.1-py3-none-any.whl'])
        self.assertEqual((downloaded, installed), (1, 1))
        self.assertEqual(self.g.exec_("import gearstest_demo\nassert gearstest_demo.VALUE == 42"), [b'ok', [], None])
        # the same spec again is reused, not reinstalled
        r = self.g.rid()
        self.g.send([b'reqs', r, b'0', whl.encode()])
        self.assertEqual(self.g.wait(r, timeout=60)[1][0][1], path)

    def test_missing_requirement_fails(self):
        r = self.g.rid()
        self.g.send([b'reqs', r, b'0', b'pip>=999'])
        got = self.g.wait(r, timeout=120)
        self.assertEqual(got[0], b'err')
        self.assertIn(got[1], [b'Could not satisfy requirements (look at redis log file for more information)',
                               b'Could not satisfy requirements, look at the log file for more information.'])


if __name__ == '__main__':
    unittest.main()
