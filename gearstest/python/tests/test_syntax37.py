"""Differential test: our Python 3.7 wording of compile errors against a real Python 3.7.

RedisGears 1.2 embeds Python 3.7; scripts with syntax errors must get 3.7's message. Skips when no
Python 3.7 interpreter is found (PYTHON37, python3.7 on PATH, or ~/.pyenv/versions/3.7.*).
"""
import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import py37  # noqa: E402
from pyerrors import syntax_error_text  # noqa: E402

CASES = [
    'def f(:', '1defs + x', 'x = (', 's = "abc', 'if x:\npass', 'print f', 'x = 1\n  y = 2',
    'def f():\n\treturn 1\n        return 2', 'return 1', 'a b c', '1 = x', 'x="""abc', 'class A(:',
    'for x in y print(x)', 'f(**a, *b)', 'def f(a=1, b): pass', 'x = [1, 2', 'yield 1', 'break',
    'continue', 'f() = 1', 'del f()', 'x += 1 = 2', 'import', 'from x import', 'a, b += 1', 'None = 1',
    '"abc" "def', "x = {'a': 1", 'def f():\n  x = 1\n   y = 2', 'if True:\n    x\n  y', 'else: pass',
    'x = 08', 'x = 1 if 2', 'f(x for x in y, 1)', '$', 'x = 5 +', 'nonlocal x', 'def f(x, x): pass',
    'x.y() = 1', 'f(a) += 1', '[x for x in y] = 1', 'x + 1 = 2', 'lambda: 1 = 2', 'True = 1', 'del 1',
    '"a" = 1', 'a if b else c = 1', 'print "x"', 'f(a=1, a=2)', 'print "x";', 'exec "code"',
    'f(a=1, 2)', 'def f(*, **k): pass', 'x = 1 +* 2', 'import a.b as', 'def f():\nreturn',
    'x = (f := 1)', 'def f(a, /): pass', '@d[0]\ndef f(): pass', 'def f(x):\n    return 1, *x',
    'for x in y:\n    try:\n        pass\n    finally:\n        continue',
]


def find37():
    cands = [os.environ.get('PYTHON37')]
    cands += sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/3.7*/bin/python')))
    cands.append(shutil.which('python3.7'))
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        try:
            out = subprocess.run([c, '-c', 'import sys; print(sys.version_info[:2] == (3, 7))'],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == b'True':
            return c
    return None


class Syntax37Test(unittest.TestCase):
    def test_messages_match_python37(self):
        py = find37()
        if py is None:
            self.skipTest('no Python 3.7 interpreter found (set PYTHON37)')
        code = ('import json, sys\nout = []\nfor src in json.load(sys.stdin):\n'
                '    try:\n        compile(src, "<string>", "exec")\n        out.append("OK")\n'
                '    except SyntaxError as e:\n'
                '        out.append("Error type: %s, Value: %s" % (type(e), e))\n'
                'print(json.dumps(out))\n')
        p = subprocess.run([py, '-c', code], input=json.dumps(CASES).encode(), stdout=subprocess.PIPE,
                           check=True)
        want = json.loads(p.stdout.decode())
        for src, w in zip(CASES, want):
            try:
                py37.check(ast.parse(src, '<string>', 'exec', feature_version=(3, 7)))
                compile(src, '<string>', 'exec')
                got = 'OK'
            except SyntaxError as e:
                got = syntax_error_text(e)
            self.assertEqual(got, w, src)


if __name__ == '__main__':
    unittest.main()


RUNTIME_CASES = [
    'failure',
    '1/0',
    "def f(x):\n    return x['a']\nf({})",
    "int('a')",
    '[][1]',
    'None.foo',
    'def f(a):\n    pass\nf(1, 2)',
    "raise Exception('x')",
    'import nosuchmodule_gears',
    'x = {}\nx.append(1)',
    "try:\n    1/0\nexcept Exception:\n    raise ValueError('v')",
    "def g():\n    raise KeyError('k')\ndef f():\n    g()\nf()",
    "class A(object):\n    notexist = 1\nA().notexists",
    'import sys as s2\nsys',
    'class A:\n    def m(self):\n        pass\nA().m(1)',
    'def f():\n    def g():\n        pass\n    g(1)\nf()',
    'int(None)',
]


class Traceback37Test(unittest.TestCase):
    def test_runtime_tracebacks_match_python37(self):
        py = find37()
        if py is None:
            self.skipTest('no Python 3.7 interpreter found (set PYTHON37)')
        # The real server: PyRun_String(script, "<string>") then str(format_exception(...)) with
        # only the script's frames (no harness frame above them).
        code = ('import json, sys, traceback\nout = []\nfor src in json.load(sys.stdin):\n'
                '    try:\n        exec(compile(src, "<string>", "exec"), {"__name__": "not_main"})\n'
                '        out.append("OK")\n'
                '    except Exception as e:\n'
                '        tb = e.__traceback__.tb_next\n'
                '        out.append(str(traceback.format_exception(type(e), e, tb)))\n'
                'print(json.dumps(out))\n')
        p = subprocess.run([py, '-c', code], input=json.dumps(RUNTIME_CASES).encode(),
                           stdout=subprocess.PIPE, check=True)
        want = json.loads(p.stdout.decode())
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from fakego import FakeGo
        g = FakeGo()
        try:
            for i, (src, w) in enumerate(zip(RUNTIME_CASES, want)):
                got = g.exec_(src, sid='s%d' % i)
                self.assertEqual(got[0], b'err', src)
                self.assertEqual(got[1].decode(), w, src)
        finally:
            g.close()
