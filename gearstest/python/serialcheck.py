"""Emulates the real server's callback serialization at register() (gears-spec section 8).

RedisGears 1.2 cloudpickles every registered callback by value, together with the globals and
closure values it references; anything that cannot be pickled fails the registration. We only
check (the live function runs later): walk each callback's referenced globals (co_names of its
code and nested code objects), closure cells and defaults, recurse into script functions, and try
stdlib pickle on every other value. Modules, classes, functions and builtins are pickled by
reference or by value by cloudpickle, so they are replaced by a placeholder here.
"""
import io
import pickle
import re
import types

_BY_REF = (types.ModuleType, type, types.BuiltinFunctionType, types.BuiltinMethodType,
           types.FunctionType, types.MethodType, types.CodeType)


class SerializationError(Exception):
    """A callback references a value that cannot be pickled; args[0] is the pickle error."""


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        # cloudpickle handles these (by reference or by value): do not pickle them here.
        if isinstance(obj, _BY_REF):
            return 'ref'
        return None


def _names(code, out):
    out.update(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _names(c, out)
    return out


def _is_script_fn(fn):
    g = getattr(fn, '__globals__', None)
    return g is not None and g.get('__name__') == 'not_main'


def _check_value(v, seen):
    if isinstance(v, types.FunctionType):
        _check_fn(v, seen)
        return
    if isinstance(v, types.MethodType):
        _check_value(v.__func__, seen)
        return
    if isinstance(v, _BY_REF):
        return
    try:
        _Pickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(v)
    except Exception as e:  # any pickling failure fails the registration
        raise SerializationError(e)


def _check_fn(fn, seen):
    if id(fn) in seen or not _is_script_fn(fn):
        return
    seen.add(id(fn))
    g = fn.__globals__
    for n in sorted(_names(fn.__code__, set())):
        if n in g:
            _check_value(g[n], seen)
    for cell in fn.__closure__ or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        _check_value(v, seen)
    for d in fn.__defaults__ or ():
        _check_value(d, seen)
    for d in (fn.__kwdefaults__ or {}).values():
        _check_value(d, seen)


def check(fn):
    """Raises SerializationError if cloudpickle could not serialize the callback fn."""
    _check_fn(fn, set())


_CANNOT = re.compile(r"cannot pickle '([^']+)' object")


def message37(e):
    """Returns the pickle error text in Python 3.7's wording."""
    return _CANNOT.sub(r"can't pickle \1 objects", str(e))
