"""Rejects syntax that Python 3.7 (RedisGears 1.2's interpreter) does not accept.

ast.parse(..., feature_version=(3, 7)) catches most of it on Python >= 3.9, but not everything
(and Python 3.8's parser checks far less), so the tree is also walked for the 3.8/3.9 additions:
assignment expressions, positional-only parameters, unparenthesized starred return/yield tuples,
relaxed decorator expressions and `continue` inside `finally`.
"""
import ast


def _is_dotted(e):
    while isinstance(e, ast.Attribute):
        e = e.value
    return isinstance(e, ast.Name)


def _bad(node, msg='invalid syntax'):
    e = SyntaxError(msg)
    e.filename = '<string>'
    e.lineno = getattr(node, 'lineno', 1)
    e.offset = getattr(node, 'col_offset', 0) + 1
    e.msg = msg
    return e


def _unparenthesized_star(value):
    return (isinstance(value, ast.Tuple) and value.elts
            and any(isinstance(x, ast.Starred) for x in value.elts)
            and value.col_offset == value.elts[0].col_offset)


_SCOPES = (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
           ast.Lambda)


def _walk_no_loops(node):
    # yields node and its descendants, not entering loops or function/class bodies (a `continue`
    # there belongs to an inner loop)
    if isinstance(node, _SCOPES):
        return
    yield node
    for child in ast.iter_child_nodes(node):
        for n in _walk_no_loops(child):
            yield n


def check(tree):
    """Raises SyntaxError (3.7 wording) at the first construct Python 3.7 rejects."""
    for node in ast.walk(tree):
        if type(node).__name__ == 'NamedExpr':
            raise _bad(node)
        if isinstance(node, ast.arguments) and getattr(node, 'posonlyargs', None):
            raise _bad(node.posonlyargs[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                if not _is_dotted(target):
                    raise _bad(d)
        if isinstance(node, (ast.Return, ast.Yield)) and node.value is not None:
            if _unparenthesized_star(node.value):
                raise _bad(node.value)
        if isinstance(node, ast.Try):
            for st in node.finalbody:
                for n in _walk_no_loops(st):
                    if isinstance(n, ast.Continue):
                        raise _bad(n, "'continue' not supported inside 'finally' clause")
