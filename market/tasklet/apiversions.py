"""APIs that the market's Python has but the oldest worker Python lacks.

Workers run CPython 3.11 and PyPy 3.9 (DESIGN.md); the validator runs on the market's interpreter,
so an API added after 3.9 passes validation and fails later on a PyPy worker, possibly after hours of
work.  This module is the one table of such APIs; :func:`problems` finds their uses in a job module
(pure: it reads the AST only).  Each entry carries a probe (a snippet that fails where the API is
missing) that tests/test_tasklet_apiversions.py runs on a real pypy3, with the job's own itertools
(iterators.py's stand-ins: ``itertools.pairwise`` is one, so it runs on PyPy 3.9 and is not here).

Annotations are never evaluated (the compiler strips them), so uses inside annotations and inside
``if TYPE_CHECKING:`` blocks are not counted; an import always runs, so ``from typing import Self``
is.
"""

from __future__ import annotations

import ast

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Dict, Iterator, List, Set, Tuple

__all__ = ["OLDEST", "API", "ON_PYPY39", "STATEMENTS", "problems", "statement"]

OLDEST = (3, 9)  # the oldest worker Python (PyPy 3.9; a worker's --python may be any Python >= 3.9)

_TYPING_HINT = "import it under 'if TYPE_CHECKING:' and use it only in annotations (they are never evaluated)"

# (kind, where, name, version, suggestion, probe)
#   kind "attr":    where.name, or ``from where import name``
#   kind "keyword": a call of where.name (where "" for a builtin) with the keyword argument in the name's
#                   second part ("zip:strict")
#   kind "builtin": the builtin name
#   kind "method":  any call of the method .name(...) (unless a job class defines a method of that name)
API = (
    ("attr", "itertools", "batched", (3, 12), "slice a list: [xs[i:i + n] for i in range(0, len(xs), n)]",
     "import itertools; itertools.batched"),
    ("attr", "math", "cbrt", (3, 11), "use math.copysign(abs(x) ** (1 / 3), x)", "import math; math.cbrt"),
    ("attr", "math", "exp2", (3, 11), "use 2.0 ** x", "import math; math.exp2"),
    ("attr", "math", "sumprod", (3, 12), "use sum(a * b for a, b in zip(p, q))", "import math; math.sumprod"),
    ("attr", "math", "fma", (3, 13), "use x * y + z", "import math; math.fma"),
    ("attr", "statistics", "correlation", (3, 10), "compute it from statistics.mean and statistics.stdev",
     "import statistics; statistics.correlation"),
    ("attr", "statistics", "covariance", (3, 10), "compute it from statistics.mean",
     "import statistics; statistics.covariance"),
    ("attr", "statistics", "linear_regression", (3, 10), "compute the slope and intercept from means",
     "import statistics; statistics.linear_regression"),
    ("attr", "operator", "call", (3, 11), "call the function directly: f(*args)", "import operator; operator.call"),
    ("attr", "re", "NOFLAG", (3, 11), "use 0", "import re; re.NOFLAG"),
    ("attr", "random", "binomialvariate", (3, 12), "use sum(random.random() < p for _ in range(n))",
     "import random; random.binomialvariate"),
    ("attr", "dataclasses", "KW_ONLY", (3, 10), "give the fields defaults, or order them",
     "import dataclasses; dataclasses.KW_ONLY"),
    ("attr", "typing", "TypeAlias", (3, 10), _TYPING_HINT, "import typing; typing.TypeAlias"),
    ("attr", "typing", "ParamSpec", (3, 10), _TYPING_HINT, "import typing; typing.ParamSpec"),
    ("attr", "typing", "Concatenate", (3, 10), _TYPING_HINT, "import typing; typing.Concatenate"),
    ("attr", "typing", "TypeGuard", (3, 10), _TYPING_HINT, "import typing; typing.TypeGuard"),
    ("attr", "typing", "is_typeddict", (3, 10), "do not inspect types at run time",
     "import typing; typing.is_typeddict"),
    ("attr", "typing", "Self", (3, 11), _TYPING_HINT, "import typing; typing.Self"),
    ("attr", "typing", "LiteralString", (3, 11), _TYPING_HINT, "import typing; typing.LiteralString"),
    ("attr", "typing", "Never", (3, 11), _TYPING_HINT, "import typing; typing.Never"),
    ("attr", "typing", "Required", (3, 11), _TYPING_HINT, "import typing; typing.Required"),
    ("attr", "typing", "NotRequired", (3, 11), _TYPING_HINT, "import typing; typing.NotRequired"),
    ("attr", "typing", "Unpack", (3, 11), _TYPING_HINT, "import typing; typing.Unpack"),
    ("attr", "typing", "TypeVarTuple", (3, 11), _TYPING_HINT, "import typing; typing.TypeVarTuple"),
    ("attr", "typing", "assert_never", (3, 11), "raise an AssertionError yourself",
     "import typing; typing.assert_never"),
    ("attr", "typing", "assert_type", (3, 11), "drop the call (it does nothing at run time)",
     "import typing; typing.assert_type"),
    ("attr", "typing", "reveal_type", (3, 11), "drop the call, or print(type(x))", "import typing; typing.reveal_type"),
    ("attr", "typing", "dataclass_transform", (3, 11), _TYPING_HINT, "import typing; typing.dataclass_transform"),
    ("attr", "typing", "override", (3, 12), "drop the decorator", "import typing; typing.override"),
    ("attr", "typing", "TypeIs", (3, 13), _TYPING_HINT, "import typing; typing.TypeIs"),
    ("attr", "typing", "ReadOnly", (3, 13), _TYPING_HINT, "import typing; typing.ReadOnly"),
    ("keyword", "", "zip:strict", (3, 10), "check the lengths yourself (if len(a) != len(b): raise ValueError(...))",
     "zip([1], [2], strict=True)"),
    ("keyword", "bisect", "bisect:key", (3, 10), "bisect a list of the keys: bisect(keys, k)",
     "import bisect; bisect.bisect([1], 1, key=abs)"),
    ("keyword", "bisect", "bisect_left:key", (3, 10), "bisect a list of the keys: bisect_left(keys, k)",
     "import bisect; bisect.bisect_left([1], 1, key=abs)"),
    ("keyword", "bisect", "bisect_right:key", (3, 10), "bisect a list of the keys: bisect_right(keys, k)",
     "import bisect; bisect.bisect_right([1], 1, key=abs)"),
    ("keyword", "bisect", "insort:key", (3, 10), "keep a parallel list of keys and insert at bisect(keys, k)",
     "import bisect; bisect.insort([1], 1, key=abs)"),
    ("keyword", "bisect", "insort_left:key", (3, 10), "keep a parallel list of keys and insert at bisect_left(keys, k)",
     "import bisect; bisect.insort_left([1], 1, key=abs)"),
    ("keyword", "bisect", "insort_right:key", (3, 10), "keep a parallel list of keys and insert at bisect(keys, k)",
     "import bisect; bisect.insort_right([1], 1, key=abs)"),
    ("keyword", "dataclasses", "dataclass:kw_only", (3, 10), "drop kw_only= and order the fields",
     "import dataclasses\n@dataclasses.dataclass(kw_only=True)\nclass C: pass"),
    ("keyword", "dataclasses", "dataclass:match_args", (3, 10), "drop match_args=",
     "import dataclasses\n@dataclasses.dataclass(match_args=False)\nclass C: pass"),
    ("keyword", "dataclasses", "field:kw_only", (3, 10), "drop kw_only= and order the fields",
     "import dataclasses; dataclasses.field(kw_only=True)"),
    ("keyword", "statistics", "fmean:weights", (3, 11), "use sum(x * w for x, w in zip(xs, ws)) / sum(ws)",
     "import statistics; statistics.fmean([1.0], weights=[1.0])"),
    ("builtin", "", "anext", (3, 10), "use next(...)", "anext"),
    ("builtin", "", "aiter", (3, 10), "use iter(...)", "aiter"),
    ("builtin", "", "ExceptionGroup", (3, 11), "raise one exception", "ExceptionGroup"),
    ("builtin", "", "BaseExceptionGroup", (3, 11), "raise one exception", "BaseExceptionGroup"),
    ("builtin", "", "EncodingWarning", (3, 10), "use Warning", "EncodingWarning"),
    ("method", "int", "bit_count", (3, 10), "use bin(n).count('1')", "(5).bit_count()"),
    ("method", "string.Template", "get_identifiers", (3, 11), "list the names yourself",
     "import string; string.Template('$a').get_identifiers()"),
    ("method", "string.Template", "is_valid", (3, 11), "substitute and catch ValueError",
     "import string; string.Template('$a').is_valid()"),
)  # fmt: skip

# entries that PyPy 3.9 has backported: still refused, since the job language is Python 3.9 and a CPython 3.9
# worker lacks them (tests/test_tasklet_apiversions.py checks both sets against a real pypy3)
ON_PYPY39 = frozenset({"zip:strict", "bit_count"})

# statements newer than Python 3.9, by their AST node name: (version, what, what to write instead).  Other
# newer syntax: ``a[*b]`` (problems); parenthesized context managers (``with`` is refused anyway); the
# rest does not parse on the market's 3.11.  (A second ast.parse(feature_version=(3, 9)) would catch more
# but doubles the parse, ~0.25 s for a 200 kB module.)
STATEMENTS = {
    "Match": ((3, 10), "'match' statements", "use if/elif on the value"),
    "TryStar": ((3, 11), "'except*'", "catch the exceptions one by one with except"),
    "TypeAlias": ((3, 12), "'type X = ...' statements", "assign the type: X = ..."),
}


def statement(name: str) -> str:
    """Why the statement ``name`` (Match, TryStar, TypeAlias) is refused, with what to write instead."""
    version, what, fix = STATEMENTS[name]
    return _need(version, what, fix)


def _need(version: Tuple[int, int], what: str, suggestion: str) -> str:
    return "%s needs Python %d.%d; Python %d.%d workers (PyPy 3.9) lack it: %s" % (
        (what,) + version + OLDEST + (suggestion,)
    )


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that runs: not annotations, not ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns"):
                continue
            if isinstance(node, ast.If) and field == "body" and _type_checking(node.test):
                continue
            if isinstance(value, list):
                todo.extend(v for v in reversed(value) if isinstance(v, ast.AST))
            elif isinstance(value, ast.AST):
                todo.append(value)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def problems(tree: ast.Module) -> List[Tuple[int, str]]:
    """``(line, reason)`` for each use of an API of :data:`API` in the module ``tree``."""
    attrs: Dict[Tuple[str, str], Tuple[Tuple[int, int], str]] = {}
    keywords: Dict[Tuple[str, str, str], Tuple[Tuple[int, int], str]] = {}
    builtin_names: Dict[str, Tuple[Tuple[int, int], str]] = {}
    methods: Dict[str, Tuple[str, Tuple[int, int], str]] = {}
    for kind, where, name, version, fix, _probe in API:
        if kind == "attr":
            attrs[(where, name)] = (version, fix)
        elif kind == "keyword":
            func, kw = name.split(":")
            keywords[(where, func, kw)] = (version, fix)
        elif kind == "builtin":
            builtin_names[name] = (version, fix)
        else:
            methods[name] = (where, version, fix)
    nodes = list(_walk(tree))
    modules: Dict[str, str] = {}  # name bound by an import -> module
    imported: Dict[str, Tuple[str, str]] = {}  # name bound by 'from m import n' -> (m, n)
    bound: Set[str] = set()  # names the job binds itself (they shadow builtins)
    own_methods: Set[str] = set()
    out: List[Tuple[int, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                modules[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                imported[a.asname or a.name] = (node.module, a.name)
                if (node.module, a.name) in attrs:
                    version, fix = attrs[(node.module, a.name)]
                    out.append((node.lineno, _need(version, "%s.%s" % (node.module, a.name), fix)))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if isinstance(node, ast.ClassDef):
                own_methods |= {s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)

    def resolve(f: ast.expr) -> Tuple[str, str]:
        if isinstance(f, ast.Name):
            return imported.get(f.id) or ("" if f.id not in bound else "<job>", f.id)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules:
            return modules[f.value.id], f.attr
        return "<other>", ""

    for node in nodes:
        if isinstance(node, ast.Subscript) and any(
            isinstance(x, ast.Starred) for x in (node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice])
        ):
            out.append((node.lineno, _need((3, 11), "a starred item in brackets (a[*b])", "write a[tuple(b)]")))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            key = (modules[node.value.id], node.attr)
            if key in attrs:
                out.append((node.lineno, _need(attrs[key][0], "%s.%s" % key, attrs[key][1])))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in builtin_names:
            if node.id not in bound and node.id not in imported:
                version, fix = builtin_names[node.id]
                out.append((node.lineno, _need(version, "the builtin %s" % node.id, fix)))
        elif isinstance(node, ast.Call):
            where, func = resolve(node.func)
            for keyword in node.keywords:
                kw_key = (where, func, keyword.arg or "**")
                if kw_key in keywords:
                    version, fix = keywords[kw_key]
                    what = "%s(%s=...)" % (("%s.%s" % (where, func)) if where else func, keyword.arg)
                    out.append((node.lineno, _need(version, what, fix)))
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in methods and f.attr not in own_methods:
                owner, version, fix = methods[f.attr]
                if not (isinstance(f.value, ast.Name) and f.value.id in modules):
                    out.append((node.lineno, _need(version, "%s.%s()" % (owner, f.attr), fix)))
    return out
