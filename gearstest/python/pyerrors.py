"""Exception types of the gears runtime and the error texts the real server builds from them.

RedisGears' getPyError() (plugins/python/redisgears_python.c) turns a Python error into:
  * str(value) for gears.flat_error;
  * str(traceback.format_exception(type, value, tb)) when a traceback exists and
    PythonAttemptTraceback is 1;
  * "Error type: <class 'X'>, Value: <str(value)>" otherwise (e.g. compile errors).
Tracebacks here must hold only user frames, as the real server's do: frames of this worker's own
files are cut out.
"""
import os
import re
import traceback
import types


class error(Exception):
    """gears.error: raised by the gears C API (execute(), register(), GB(), ...)."""


error.__module__ = 'gears'


class flat_error(Exception):
    """gears.flat_error: the execution error text is str(msg) only, without a traceback."""


flat_error.__module__ = 'gears'

_HERE = os.path.dirname(os.path.abspath(__file__))

# Set from the RG config PythonAttemptTraceback (worker.py keeps it current).
attempt_traceback = [True]


def _is_ours(frame):
    fn = frame.f_code.co_filename
    return fn.startswith(_HERE + os.sep) or fn == __file__


def _clean_tb(tb):
    frames = []
    while tb is not None:
        if not _is_ours(tb.tb_frame):
            frames.append(tb)
        tb = tb.tb_next
    new = None
    for t in reversed(frames):
        new = types.TracebackType(new, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return new


_CARET = re.compile(r'^\s*[\^~]+\s*$')


def _strip_carets(lines):
    # Python >= 3.11 adds "^^^^" marker lines under source lines; 3.7 (the real server) does not.
    out = []
    for chunk in lines:
        parts = chunk.splitlines(True)
        kept = [p for p in parts if not _CARET.match(p)]
        if kept:
            out.append(''.join(kept))
    return out


def traceback_lines(exc):
    """Returns traceback.format_exception lines for exc with the worker's own frames removed."""
    seen = set()
    e = exc
    stack = [e]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if e.__traceback__ is not None:
            e.__traceback__ = _clean_tb(e.__traceback__)
        stack.append(e.__cause__)
        stack.append(e.__context__)
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _strip_carets(lines)


def error_text(exc):
    """Returns the execution error text of exc as the real server's getPyError() builds it."""
    if isinstance(exc, flat_error):
        return str(exc.args[0]) if len(exc.args) == 1 else str(exc)
    if isinstance(exc, SyntaxError) and exc.__traceback__ is None:
        return syntax_error_text(exc)
    if attempt_traceback[0] and exc.__traceback__ is not None:
        return str(traceback_lines(exc))
    return "Error type: %s, Value: %s" % (str(type(exc)), str(exc))


# Python 3.8+ wording -> Python 3.7 wording (RedisGears 1.2 embeds 3.7; gears-spec section 8).
_SYNTAX_37 = [
    (re.compile(r"^'.' was never closed$"), 'unexpected EOF while parsing'),
    (re.compile(r"^unexpected EOF while parsing$"), 'unexpected EOF while parsing'),
    (re.compile(r"^unterminated string literal"), 'EOL while scanning string literal'),
    (re.compile(r"^EOL while scanning string literal"), 'EOL while scanning string literal'),
    (re.compile(r"^unterminated triple-quoted string literal"), 'EOF while scanning triple-quoted string literal'),
    (re.compile(r"^EOF while scanning triple-quoted"), 'EOF while scanning triple-quoted string literal'),
    (re.compile(r"^expected an indented block"), 'expected an indented block'),
    (re.compile(r"^unexpected indent$"), 'unexpected indent'),
    (re.compile(r"^unindent does not match any outer indentation level$"),
     'unindent does not match any outer indentation level'),
    (re.compile(r"^inconsistent use of tabs and spaces in indentation$"),
     'inconsistent use of tabs and spaces in indentation'),
    (re.compile(r"^'return' outside function$"), "'return' outside function"),
    (re.compile(r"^'yield' outside function$"), "'yield' outside function"),
    (re.compile(r"^'break' outside loop$"), "'break' outside loop"),
    (re.compile(r"^'continue' not properly in loop$"), "'continue' not properly in loop"),
    (re.compile(r"^'continue' not supported inside 'finally' clause$"),
     "'continue' not supported inside 'finally' clause"),
    (re.compile(r"^'await' outside"), "'await' outside function"),
    (re.compile(r"^cannot assign to (\w+)"), None),
    (re.compile(r"^Missing parentheses in call to '(print|exec)'"), None),
]


def syntax_message_37(msg):
    """Returns the Python 3.7 wording of a compile error message (default: invalid syntax)."""
    for rx, repl in _SYNTAX_37:
        m = rx.match(msg)
        if not m:
            continue
        if repl is not None:
            return repl
        if msg.startswith('cannot assign'):
            return "can't assign to %s" % m.group(1)
        return msg.split('. Did you mean')[0] + '. Did you mean %s(...)?' % m.group(1)
    return 'invalid syntax'


def syntax_error_text(e):
    """Returns 'Error type: <class ...>, Value: <3.7 message> (<string>, line N)' for a compile error."""
    msg = syntax_message_37(e.msg or '')
    cls = type(e)
    if msg == 'invalid syntax' or msg == 'unexpected EOF while parsing' or 'string literal' in msg:
        cls = SyntaxError  # 3.7 raises plain SyntaxError for these
    elif msg in ('expected an indented block', 'unexpected indent',
                 'unindent does not match any outer indentation level'):
        cls = IndentationError
    fn = e.filename if e.filename is not None else '<string>'
    return "Error type: %s, Value: %s (%s, line %s)" % (str(cls), msg, fn, e.lineno)
