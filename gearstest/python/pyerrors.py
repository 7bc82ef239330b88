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


def _no_suggestions():
    # Python >= 3.12 appends "Did you mean: ...?" / "Did you forget to import ...?" to NameError,
    # AttributeError and ImportError lines in traceback.format_exception; 3.7 never does.
    if hasattr(traceback, '_compute_suggestion_error'):
        traceback._compute_suggestion_error = lambda *args, **kwargs: None


_no_suggestions()


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
        if isinstance(e, (NameError, AttributeError)) and getattr(e, 'name', None) is not None:
            try:
                e.name = None  # no "Did you mean"/"Did you forget to import" (Python >= 3.10)
            except (AttributeError, TypeError):
                pass
        stack.append(e.__cause__)
        stack.append(e.__context__)
    lines = _strip_carets(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if lines and isinstance(exc, TypeError):
        lines[-1] = _typeerror_37(lines[-1])
    return lines


_QUALNAME_CALL = re.compile(r'^TypeError: [\w.<>]+\.(\w+\(\) )')


def _typeerror_37(line):
    # Python >= 3.10 names functions by __qualname__ in call errors ("A.m() takes ...") and says
    # "a real number" where 3.7 says "a number".
    line = _QUALNAME_CALL.sub(r'TypeError: \1', line)
    return line.replace(' a real number', ' a number')


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
# Messages 3.7 also uses are kept; known rewordings are mapped back; anything else is 3.7's
# catch-all "invalid syntax".
_SAME_37 = (
    'unexpected EOF while parsing', 'EOL while scanning string literal',
    'EOF while scanning triple-quoted string literal', 'unexpected indent',
    'unindent does not match any outer indentation level',
    'inconsistent use of tabs and spaces in indentation', "'return' outside function",
    "'yield' outside function", "'break' outside loop", "'continue' not properly in loop",
    "'continue' not supported inside 'finally' clause", "'await' outside function",
    "'await' outside async function", "'return' with value in async generator",
    'iterable argument unpacking follows keyword argument unpacking',
    'non-default argument follows default argument', 'Generator expression must be parenthesized',
    'nonlocal declaration not allowed at module level',
    'unexpected character after line continuation character', 'invalid character in identifier',
    'positional argument follows keyword argument',
    'positional argument follows keyword argument unpacking', 'keyword can\'t be an expression',
    'named arguments must follow bare *', 'import * only allowed at module level',
    'bytes can only contain ASCII literal characters.',
    'illegal expression for augmented assignment',
)
_PREFIX_37 = (
    (re.compile(r"^'.' was never closed$"), 'unexpected EOF while parsing'),
    (re.compile(r"^unterminated string literal"), 'EOL while scanning string literal'),
    (re.compile(r"^unterminated triple-quoted string literal"),
     'EOF while scanning triple-quoted string literal'),
    (re.compile(r"^expected an indented block"), 'expected an indented block'),
    (re.compile(r"^leading zeros in decimal integer literals"), 'invalid token'),
    (re.compile(r"^keyword argument repeated"), 'keyword argument repeated'),
    (re.compile(r"^parameter without a default follows parameter with a default$"),
     'non-default argument follows default argument'),
    (re.compile(r"^'function call' is an illegal expression for augmented assignment$"),
     "can't assign to function call"),
    (re.compile(r"^'[^']+' is an illegal expression for augmented assignment$"),
     'illegal expression for augmented assignment'),
    (re.compile(r"^bytes can only contain ASCII literal characters"),
     'bytes can only contain ASCII literal characters.'),
    (re.compile(r"^duplicate argument '[^']*' in function definition$"), None),
    (re.compile(r"^name '[^']*' is (parameter and global|parameter and nonlocal|assigned to before "
                r"global declaration|used prior to global declaration)"), None),
)
_CANNOT = re.compile(r"^cannot (assign to|delete) (.+?)(?: here\. Maybe you meant .*)?$")
_KEYWORDS = ('None', 'True', 'False', '__debug__')


def syntax_message_37(msg, text=None):
    """Returns the Python 3.7 wording of a compile error message (default: invalid syntax)."""
    if msg in _SAME_37:
        return msg
    for rx, repl in _PREFIX_37:
        if rx.match(msg):
            return msg if repl is None else repl
    m = _CANNOT.match(msg)
    if m:
        what = m.group(2)
        if what in _KEYWORDS:
            what = 'keyword'
        elif what == 'expression':
            what = 'operator'
        return "can't %s %s" % (m.group(1), what)
    if msg.startswith("Missing parentheses in call to 'exec'"):
        return "Missing parentheses in call to 'exec'"
    m = re.match(r"^Missing parentheses in call to '(print)'", msg)
    if m:
        # 3.7 suggests the call with the statement's own argument: print("x")
        arg = '...'
        line = (text or '').strip()
        if line.startswith(m.group(1) + ' '):
            arg = line[len(m.group(1)) + 1:].strip().rstrip(';').strip() or '...'
        return "Missing parentheses in call to '%s'. Did you mean %s(%s)?" % (m.group(1), m.group(1), arg)
    return 'invalid syntax'


def syntax_error_text(e):
    """Returns 'Error type: <class ...>, Value: <3.7 message> (<string>, line N)' for a compile error."""
    msg = syntax_message_37(e.msg or '', getattr(e, 'text', None))
    cls = type(e)
    if msg == 'invalid syntax' or msg == 'unexpected EOF while parsing' or 'string literal' in msg \
            or msg == 'invalid token':
        cls = SyntaxError  # 3.7 raises plain SyntaxError for these
    elif msg in ('expected an indented block', 'unexpected indent',
                 'unindent does not match any outer indentation level'):
        cls = IndentationError
    fn = e.filename if e.filename is not None else '<string>'
    return "Error type: %s, Value: %s (%s, line %s)" % (str(cls), msg, fn, e.lineno)
