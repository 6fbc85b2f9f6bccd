"""Compile a job module into resumable Python.

Normal path: the job's functions stay ordinary Python with real locals and
native loops.  The only additions are

* ``if _tk_F: _tk_pause(name, point, _tk_locals())`` at the top of every loop
  body and at function entry (so loop-free recursion stops too); ``_tk_F`` is
  one module global that the slice timer (or a forced budget) sets;
* every call to another job function is hoisted into its own statement
  ``_tk_tN = f(...)`` inside a ``try`` whose ``except _tk_Suspend`` records
  (function, point, locals) and re-raises - zero cost until it happens;
* ``for`` loops keep their iterable and iterator in ``_tk_sN``/``_tk_iN``
  so the position can be read when (and only when) the job is frozen.

Resume path: for a (function, point) the compiler builds, lazily, a
continuation function "the rest of the function from here", structurally
from the transformed tree: the rest of each enclosing block, then the
enclosing loop re-entered with its restored iterator.  A continuation is made
of the same statements (same points, same capture code), so it can itself be
suspended and resumed.
"""

from __future__ import annotations

import ast
import copy
import types

from .validator import (
    MAKERS,
    JobRefused,
    ModuleInfo,
    check_module,
    is_dataclass_decorator,
    local_names,
    loose_comprehension,
    nested_functions,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    import inspect
    from typing import Any, Callable, Dict, List, Optional, Tuple, TypeGuard, TypeVar, Union

    _Node = TypeVar("_Node", bound=ast.AST)
    _Located = Union[ast.stmt, ast.expr]  # the nodes that carry a source location

__all__ = ["JOB_FILENAME", "CompiledJob", "FunctionInfo", "PointInfo", "compile_job"]

JOB_FILENAME = "<job>"


class PointInfo:
    """A place where a frame can be suspended."""

    __slots__ = ("number", "kind", "path", "loops", "temp", "live")

    def __init__(self, number, kind, path, loops, temp=None, live=()):
        self.number = number
        self.kind = kind  # 'entry' | 'loop' | 'call'
        self.path = path  # [(index, field or None), ...] from the function body
        self.loops = loops  # ids of the for-loops whose iterators are live here
        self.temp = temp  # call points: temporary receiving the return value
        self.live = tuple(live)  # call points: temporaries computed earlier in the statement


class FunctionInfo:
    """A transformed job function and its suspension points."""

    def __init__(self, name: str, node: ast.FunctionDef, user_names, temps, points, nested=()):
        self.name = name
        self.node = node
        self.user_names = frozenset(user_names)
        self.temps = frozenset(temps)
        self.points: Dict[int, PointInfo] = points
        # the defs in its own scope, by name (the validator allows one def per name): a frozen frame
        # holds such a function as its defaults (runner.freeze_nested); the thaw runs the def again
        self.nested: Dict[str, ast.FunctionDef] = {d.name: d for d in nested}


def _parse_stmt(text: str) -> Any:
    """The statement ``text`` parses to.

    Its class (For, Try, If...) follows from the text, which the caller knows and the checker
    does not; callers set the compiler's marks (``_tk_point``...) on it, which no node class declares.
    """
    return ast.parse(text).body[0]


def _stamp(node: _Node, src: _Located) -> _Node:
    """Give every node of a generated fragment the location of ``src``."""
    n: Any  # any node class: the _attributes test picks the ones with a location
    for n in ast.walk(node):
        if "lineno" in n._attributes:
            n.lineno = src.lineno
            n.col_offset = getattr(src, "col_offset", 0)
            n.end_lineno = getattr(src, "end_lineno", src.lineno)
            n.end_col_offset = getattr(src, "end_col_offset", 0)
    return node


def _name(ident: str, src: _Located, store: bool = False) -> ast.Name:
    return _stamp(ast.Name(id=ident, ctx=ast.Store() if store else ast.Load()), src)


def _assign(ident: str, value: ast.expr, src: _Located) -> ast.Assign:
    node = ast.Assign(targets=[_name(ident, src, store=True)], value=value)
    node.lineno = src.lineno
    node.col_offset = getattr(src, "col_offset", 0)
    node.end_lineno = getattr(src, "end_lineno", src.lineno)
    node.end_col_offset = getattr(src, "end_col_offset", 0)
    if hasattr(ast.Assign, "type_comment") or "type_comment" in ast.Assign._fields:
        node.type_comment = None
    return node


def _const_assign(ident: str, value: bool, src: _Located) -> ast.Assign:
    return _assign(ident, _stamp(ast.Constant(value=value), src), src)


_CHUNK = 256
_CHEAP_BUILTINS = frozenset(
    {"abs", "len", "int", "float", "bool", "divmod", "ord", "chr", "round", "isinstance", "complex"}
)
_CHEAP_MATH = frozenset(
    {
        "sqrt",
        "hypot",
        "floor",
        "ceil",
        "exp",
        "log",
        "log2",
        "log10",
        "sin",
        "cos",
        "tan",
        "atan",
        "atan2",
        "fabs",
        "trunc",
        "copysign",
        "isqrt",
        "gcd",
    }
)


class _FunctionTransformer:
    """Rewrites one job function for suspension (see module docstring)."""

    def __init__(self, fn: ast.FunctionDef, job_functions, module_names=()) -> None:
        self.fn = copy.deepcopy(fn)
        self.name = fn.name
        self.job_functions = job_functions
        self.next_point = 1
        self.next_temp = 0
        self.next_loop = 0
        self.next_flag = 0
        self.temps: List[str] = []
        self.pre: List[ast.stmt] = []
        self.live: List[str] = []
        self.walrus = False
        self.local_names = local_names(self.fn)
        self.shadowed = self.local_names | set(module_names)
        self.nested = nested_functions(self.fn)
        # a nested function may rebind the frame's variables (nonlocal) when it is called
        self.rebinds = any(isinstance(n, ast.Nonlocal) for d in self.nested for n in ast.walk(d))

    def run(self) -> FunctionInfo:
        fn = self.fn
        user_names = self.local_names
        entry = _stamp(_parse_stmt("if _tk_F: _tk_pause(%r, 0, _tk_locals())" % self.name), fn)
        entry._tk_entry = True
        fn.body = [entry] + self.block(fn.body)
        fn.decorator_list = []
        points = _index_points(fn)
        names = user_names | set(self.temps)
        return FunctionInfo(self.name, fn, user_names, names - user_names, points, self.nested)

    # -- statements -----------------------------------------------------------

    def block(self, stmts) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
        return out

    def check(self, point: int, src: _Located) -> ast.stmt:
        return _stamp(_parse_stmt("if _tk_F: _tk_pause(%r, %d, _tk_locals())" % (self.name, point)), src)

    def stmt(self, s: ast.stmt) -> List[ast.stmt]:
        self.pre, self.live = [], []
        self.walrus = (
            any(isinstance(n, ast.NamedExpr) for n in ast.walk(s))
            if not isinstance(s, (ast.For, ast.While, ast.If, ast.Try))
            else False
        )
        if isinstance(s, ast.For) and self.chunkable(s):
            return self.chunked_for(s)
        if isinstance(s, ast.For):
            it = self.lin(s.iter)
            pre = self.pre
            k = self.next_loop
            self.next_loop += 1
            p = self.new_point()
            seq, itn = "_tk_s%d" % k, "_tk_i%d" % k
            setup = [
                _assign(seq, it, s.iter),
                _assign(
                    itn,
                    _stamp(
                        ast.Call(func=ast.Name(id="_tk_iter", ctx=ast.Load()), args=[_name(seq, s.iter)], keywords=[]),
                        s.iter,
                    ),
                    s.iter,
                ),
            ]
            s.iter = _name(itn, s.iter)
            s.body = [self.check(p, s)] + self.block(s.body)
            s.orelse = self.block(s.orelse)
            s._tk_point, s._tk_loop = p, k  # type: ignore[attr-defined]  # a mark on the job's own node
            return pre + setup + [s]
        if isinstance(s, ast.While):
            p = self.new_point()
            s.body = [self.check(p, s)] + self.block(s.body)
            s.orelse = self.block(s.orelse)
            s._tk_point, s._tk_loop = p, None  # type: ignore[attr-defined]  # a mark on the job's own node
            return [s]
        if isinstance(s, ast.If):
            s.test = self.lin_cond(s.test)
            pre = self.pre
            s.body = self.block(s.body)
            s.orelse = self.block(s.orelse)
            return pre + [s]
        if isinstance(s, ast.Try):
            return self.try_(s)
        if isinstance(s, ast.Expr) and self.is_job_call(s.value):
            self.lin_slots(_slots(s.value))
            return self.pre + [self.call_point(s.value, None, s)]
        for field in ("value", "test", "exc", "cause"):
            child = getattr(s, field, None)
            if isinstance(child, ast.expr) and self.has_call(child):
                setattr(s, field, self.lin(child))
        return self.pre + [s]

    def chunkable(self, s: ast.For) -> bool:
        """A tight loop over range() whose body cannot take long per iteration."""
        it = s.iter
        if not (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and "range" not in self.shadowed
            and 1 <= len(it.args) <= 3
            and not it.keywords
            and not any(isinstance(a, ast.Starred) for a in it.args)
            and not s.orelse
            and not self.has_call(it)
        ):
            return False
        for node in ast.walk(ast.Module(body=s.body, type_ignores=[])):
            if isinstance(
                node,
                (
                    ast.For,
                    ast.While,
                    ast.Break,
                    ast.Try,
                    ast.Yield,
                    ast.YieldFrom,
                    ast.ListComp,
                    ast.SetComp,
                    ast.DictComp,
                    ast.GeneratorExp,
                    ast.Lambda,
                    ast.Return,
                ),
            ):
                return False
            if isinstance(node, ast.Call) and not self.cheap_call(node.func):
                return False
        return True

    def cheap_call(self, func) -> bool:
        if isinstance(func, ast.Name):
            return func.id in _CHEAP_BUILTINS and func.id not in self.shadowed
        return (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "math"
            and func.attr in _CHEAP_MATH
            and "math" not in self.local_names
        )

    def chunked_for(self, s: ast.For) -> List[ast.stmt]:
        """Check the flag once per _CHUNK iterations instead of every one.

        ``for v in range(...): body`` becomes a loop over chunk offsets (the
        suspension point, a plain range loop) around a native loop over one
        slice of the range; the inner body has no calls that can take long,
        so a chunk runs in microseconds.
        """
        k = self.next_loop
        self.next_loop += 1
        p = self.new_point()
        rng, off = "_tk_r%d" % k, "_tk_c%d" % k
        self.temps.extend([rng, off])
        seq, itn = "_tk_s%d" % k, "_tk_i%d" % k
        setup = [
            _assign(rng, s.iter, s.iter),
            _stamp(_parse_stmt("%s = _tk_range(0, _tk_len(%s), %d)" % (seq, rng, _CHUNK)), s.iter),
            _stamp(_parse_stmt("%s = _tk_iter(%s)" % (itn, seq)), s.iter),
        ]
        inner = _stamp(_parse_stmt("for _ in %s[%s:%s + %d]:\n pass" % (rng, off, off, _CHUNK)), s)
        inner.target = s.target
        inner.body = s.body
        outer = _stamp(_parse_stmt("for %s in %s:\n pass" % (off, itn)), s)
        outer.body = [self.check(p, s), inner]
        outer._tk_point, outer._tk_loop, outer._tk_live = p, k, (rng, off)
        # One chunk or none (the common short inner loop): the range itself, natively, with no
        # offsets loop and no slice (these cost more than a short loop's own work). Its one check
        # passes the point negated: the runtime builds, only where it stops (or where a replay
        # compares a mark), the very locals the chunked loop has at its first check (offsets
        # iterator past 0, offset 0: runner.short_locals), so the resume is the chunked loop's,
        # unchanged. The check binds nothing itself: a budget run calls it at every entry and
        # goes on, and bindings there (absent from an honest slice, which binds nothing until it
        # stops) put other locals in the mark, so a replay never found an honest state stopped
        # after such a loop had run (n-body, matmul: regression in tests/test_tasklet_replay.py).
        # The never-run assignment after it keeps those names where the frame's variable order
        # had them when the check bound them: the marks of states frozen there by the earlier
        # runtime stay what a replay computes (short_locals places them by that order).
        short = _stamp(
            _parse_stmt(
                "if _tk_len(%s) <= %d:\n"
                " if _tk_F and %s:\n"
                "  _tk_pause(%r, %d, _tk_locals())\n"
                "  if _tk_never:\n"
                "   %s = %s = %s = None\n"
                " for _ in %s:\n"
                "  pass\n"
                "else:\n"
                " pass" % (rng, _CHUNK, rng, self.name, -p, seq, itn, off, rng)
            ),
            s,
        )
        native = short.body[1]
        native.target = copy.deepcopy(s.target)
        native.body = copy.deepcopy(s.body)
        short.orelse = setup[1:] + [outer]
        return [setup[0], short]

    def try_(self, s: ast.Try) -> List[ast.stmt]:
        body = self.block(s.body)
        orelse = self.block(s.orelse)
        handlers = s.handlers
        # A handler that can catch BaseException must not swallow a suspension.
        if any(
            h.type is None
            or (isinstance(h.type, ast.Name) and h.type.id == "BaseException")
            or (
                isinstance(h.type, ast.Tuple)
                and any(isinstance(e, ast.Name) and e.id == "BaseException" for e in h.type.elts)
            )
            for h in handlers
        ):
            guard = _stamp(_parse_stmt("try:\n pass\nexcept _tk_Suspend:\n raise").handlers[0], s)
            handlers = [guard] + handlers
        if not s.finalbody:
            s.body, s.handlers, s.orelse = body, handlers, orelse
            return [s]
        # A suspension must not run the job's finally block: it runs when the
        # job really leaves the block, possibly slices later.
        flag = "_tk_f%d" % self.next_flag
        self.next_flag += 1
        if handlers or orelse:
            inner = ast.Try(body=body, handlers=handlers, orelse=orelse, finalbody=[])
            ast.copy_location(inner, s)
            inner.end_lineno = getattr(s, "end_lineno", s.lineno)
            inner.end_col_offset = getattr(s, "end_col_offset", 0)
            body = [inner]
        outer = _stamp(
            _parse_stmt(
                "try:\n pass\nexcept _tk_Suspend:\n %s = True\n raise\nfinally:\n if not %s:\n  pass" % (flag, flag)
            ),
            s,
        )
        outer.body = body
        outer.finalbody[0].body = s.finalbody
        outer._tk_fin = flag
        return [_const_assign(flag, False, s), outer]

    # -- expressions: hoist job calls in evaluation order ---------------------

    def new_point(self) -> int:
        p = self.next_point
        self.next_point += 1
        return p

    def new_temp(self) -> str:
        t = "_tk_t%d" % self.next_temp
        self.next_temp += 1
        self.temps.append(t)
        return t

    def is_job_call(self, e: ast.AST) -> TypeGuard[ast.Call]:
        return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in self.job_functions

    def has_call(self, e: ast.AST) -> bool:
        return any(self.is_job_call(n) for n in ast.walk(e))

    def stable(self, e) -> bool:
        # Job functions cannot rebind a caller's locals or any global (no
        # closures, no 'global'), so names keep their value across the call.
        return isinstance(e, ast.Constant) or (isinstance(e, ast.Name) and not self.walrus and not self.rebinds)

    def lin(self, e: ast.expr) -> ast.expr:
        if not self.has_call(e):
            return e
        if isinstance(e, (ast.BoolOp, ast.IfExp)):
            return self.lin_branch(e)
        self.lin_slots(_slots(e))
        if self.is_job_call(e):
            t = self.new_temp()
            self.pre.append(self.call_point(e, t, e))
            self.live.append(t)
            return _name(t, e)
        return e

    def lin_cond(self, e: ast.expr) -> ast.expr:
        """``e`` as the test of an ``if``: Python then jumps on each operand's truth, testing it
        once (``if a or b`` never tests ``a`` twice), so 'and'/'or'/'not'/'x if c else y' with job
        calls become statements into a fresh temp holding a real bool."""
        if not self.has_call(e) or not isinstance(e, (ast.BoolOp, ast.IfExp, ast.UnaryOp)):
            return self.lin(e)
        if isinstance(e, ast.UnaryOp):
            if not isinstance(e.op, ast.Not):
                return self.lin(e)
            return _stamp(ast.UnaryOp(op=ast.Not(), operand=self.lin_cond(e.operand)), e)
        f = self.new_temp()
        self.live.append(f)

        def truth_into_f(v: ast.expr) -> List[ast.stmt]:
            self.pre = []
            value = self.lin_cond(v)
            # 'not not v': its truth, tested once (bool may be rebound by the job)
            truth = ast.UnaryOp(op=ast.Not(), operand=ast.UnaryOp(op=ast.Not(), operand=value))
            self.pre.append(_assign(f, _stamp(truth, v), v))
            return self.pre

        return self.lin_into(e, f, truth_into_f)

    def lin_branch(self, e: ast.expr) -> ast.expr:
        """``a or b``, ``a and b``, ``x if c else y`` with job calls: statements into a fresh temp
        that evaluate exactly what Python would, in its order, each truth value once:
        ``t = a; if not t: (t = b; if not t: t = c)`` / ``if c': t = x' else: t = y'``."""
        t = self.new_temp()
        self.live.append(t)

        def value_into_t(v: ast.expr) -> List[ast.stmt]:
            self.pre = []
            value = self.lin(v)
            self.pre.append(_assign(t, value, v))
            return self.pre

        return self.lin_into(e, t, value_into_t)

    def lin_into(self, e: ast.expr, temp: str, into: "Callable[[ast.expr], List[ast.stmt]]") -> ast.expr:
        """The statements of 'and'/'or'/'x if c else y' into ``temp`` (lin_cond: each operand's
        truth; lin_branch: its value), ``into`` making an operand's statements: for a chain, each
        later operand guarded by what ``temp`` holds (``if temp:`` for 'and', ``if not temp:`` for
        'or'), so operands run in Python's order and stop where Python stops."""
        outer = self.pre
        if isinstance(e, ast.IfExp):
            test = self.lin_cond(e.test)
            outer = self.pre
            body, orelse = into(e.body), into(e.orelse)
            outer.append(_stamp(ast.If(test=test, body=body, orelse=orelse), e))
        else:
            assert isinstance(e, ast.BoolOp)
            tail = outer
            tail.extend(into(e.values[0]))
            for v in e.values[1:]:
                guard: ast.expr = _name(temp, v)
                if isinstance(e.op, ast.Or):
                    guard = _stamp(ast.UnaryOp(op=ast.Not(), operand=guard), v)
                body = into(v)
                tail.append(_stamp(ast.If(test=guard, body=body, orelse=[]), v))
                tail = body
        self.pre = outer
        return _name(temp, e)

    def lin_slots(self, slots) -> None:
        with_calls = [i for i, (get, _) in enumerate(slots) if self.has_call(get())]
        if not with_calls:
            return
        last = with_calls[-1]
        for i, (get, put) in enumerate(slots[: last + 1]):
            value = self.lin(get())
            if i < last and not self.stable(value):
                t = self.new_temp()
                self.pre.append(_assign(t, value, value))
                self.live.append(t)
                value = _name(t, value)
            put(value)

    def call_point(self, call: ast.Call, temp: Optional[str], src: _Located) -> ast.Try:
        p = self.new_point()
        node = _stamp(
            _parse_stmt(
                "try:\n pass\nexcept _tk_Suspend as _tk_e:\n"
                " _tk_e.frames.append((%r, %d, _tk_locals()))\n raise" % (self.name, p)
            ),
            src,
        )
        stmt: ast.stmt
        if temp is None:
            stmt = ast.Expr(value=call)
            ast.copy_location(stmt, src)
        else:
            stmt = _assign(temp, call, src)
        stmt.end_lineno = getattr(src, "end_lineno", src.lineno)
        stmt.end_col_offset = getattr(src, "end_col_offset", 0)
        node.body = [stmt]
        node._tk_point, node._tk_temp, node._tk_live = p, temp, tuple(self.live)
        return node


def _slots(e: ast.expr):
    """(getter, setter) pairs for ``e``'s sub-expressions in evaluation order."""
    out = []

    def slot(obj, field, index=None):
        if index is None:
            out.append((lambda: getattr(obj, field), lambda v: setattr(obj, field, v)))
        else:
            seq = getattr(obj, field)
            out.append((lambda: seq[index], lambda v: seq.__setitem__(index, v)))

    def items(obj, field):
        for i, x in enumerate(getattr(obj, field)):
            if isinstance(x, ast.Starred):
                slot(x, "value")
            elif x is not None:
                slot(obj, field, i)

    if isinstance(e, ast.Call):
        # Python evaluates the called object first: ``rows[0].append(f(rows))`` appends to the list
        # rows[0] was before f ran, ``d.setdefault(key(x), []).append(x)`` runs key(x) first.  A name
        # or name.attr (``out.append``, ``math.floor``: a job call cannot rebind the caller's names)
        # stays where it is, costing nothing; anything else is a slot (held in a temp across a later
        # job call: a bound method is frozen by held.py)
        callee = e.func
        if not (
            isinstance(callee, ast.Name) or (isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name))
        ):
            slot(e, "func")
        items(e, "args")
        for kw in e.keywords:
            slot(kw, "value")
    elif isinstance(e, ast.BinOp):
        slot(e, "left")
        slot(e, "right")
    elif isinstance(e, ast.UnaryOp):
        slot(e, "operand")
    elif isinstance(e, ast.Compare):
        slot(e, "left")
        slot(e, "comparators", 0)
    elif isinstance(e, ast.Subscript):
        slot(e, "value")
        if isinstance(e.slice, ast.Slice):
            for f in ("lower", "upper", "step"):
                if getattr(e.slice, f) is not None:
                    slot(e.slice, f)
        else:
            slot(e, "slice")
    elif isinstance(e, ast.Attribute):
        slot(e, "value")
    elif isinstance(e, (ast.Tuple, ast.List, ast.Set)):
        items(e, "elts")
    elif isinstance(e, ast.Dict):
        for i in range(len(e.keys)):
            if e.keys[i] is not None:
                slot(e, "keys", i)
            slot(e, "values", i)
    elif isinstance(e, ast.JoinedStr):
        for v in e.values:
            if isinstance(v, ast.FormattedValue):
                slot(v, "value")
    elif isinstance(e, (ast.NamedExpr, ast.Starred)):
        slot(e, "value")
    return out


def _index_points(fn: ast.FunctionDef) -> Dict[int, PointInfo]:
    points = {0: PointInfo(0, "entry", [(0, None)], [])}

    def walk(stmts, prefix, loops):
        for i, s in enumerate(stmts):
            p = getattr(s, "_tk_point", None)
            if isinstance(s, (ast.For, ast.While)):
                inner = (
                    loops + [s._tk_loop]  # type: ignore[attr-defined]  # the compiler's mark, set in stmt()
                    if isinstance(s, ast.For) and getattr(s, "_tk_loop", None) is not None
                    else loops
                )
                if p is not None:
                    points[p] = PointInfo(p, "loop", prefix + [(i, None)], inner, live=getattr(s, "_tk_live", ()))
                walk(s.body, prefix + [(i, "body")], inner)
                walk(s.orelse, prefix + [(i, "orelse")], loops)
            elif isinstance(s, ast.If):
                walk(s.body, prefix + [(i, "body")], loops)
                walk(s.orelse, prefix + [(i, "orelse")], loops)
            elif isinstance(s, ast.Try):
                if p is not None:
                    # the compiler's marks, set in call_point(): no node class declares them
                    points[p] = PointInfo(p, "call", prefix + [(i, None)], loops, s._tk_temp, s._tk_live)  # type: ignore[attr-defined]
                else:
                    walk(s.body, prefix + [(i, "body")], loops)
                    walk(s.orelse, prefix + [(i, "orelse")], loops)

    walk(fn.body, [], [])
    return points


# -- a replay's checks ---------------------------------------------------------

#: A replay's compile: ``(function, point, positions)`` of the target's mark, positions as
#: ``((index, position), ...)``: the mark's numeric loop positions, by their index among the loops
#: open at that point (PointInfo.loops); ``("", -1, ())`` counts only (a final result's replay).
ReplayMode = tuple  # Tuple[str, int, Tuple[Tuple[int, int], ...]]

COUNT_ONLY: "ReplayMode" = ("", -1, ())


def _is_check(s: ast.If) -> "Optional[Tuple[str, int]]":
    """(function, point) of a check ``if _tk_F...: _tk_pause(name, point, _tk_locals())`` (a
    one-chunk loop's has a never-run assignment after the call: chunked_for)."""
    if not (len(s.body) in (1, 2) and isinstance(s.body[0], ast.Expr)):
        return None
    call = s.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_tk_pause"):
        return None
    name, point = call.args[0], call.args[1]
    sign = 1
    if isinstance(point, ast.UnaryOp) and isinstance(point.op, ast.USub):  # -p: a one-chunk loop's
        point, sign = point.operand, -1
    if isinstance(name, ast.Constant) and isinstance(point, ast.Constant) and isinstance(point.value, int):
        return str(name.value), sign * point.value
    return None


def _replay_checks(fi: FunctionInfo, mode: "ReplayMode") -> None:
    """Rewrite ``fi``'s checks (their bodies only: every path and point stays) for a replay.

    An honest slice's check calls nothing until its clock sets the flag.  A replay runs with the
    flag set, and calling the runtime at every back-edge to count it cost 1.8-2.2x the honest
    run on tight loops before any comparing.  Here each check counts down the module global
    ``_tk_left`` inline and calls ``_tk_pause`` only where the count is out (the cap: third
    argument 0) or at the target's point (1); there, where the point has loops, only where their positions equal the
    mark's (``operator.length_hint`` of each loop's iterator, as ``runner.loop_positions``
    reads them; anything raising there calls it too).  ``_tk_pause`` then compares the rest of
    the mark as before.  The back-edges counted are exactly the budget mode's (one per check)."""
    t_fname, t_point, positions = mode

    def body(check: ast.If, point: int) -> List[ast.stmt]:
        call = check.body[0]
        text = "_tk_left -= 1\nif _tk_left <= 0:\n pass\n"
        if fi.name == t_fname and abs(point) == t_point:
            terms = []
            loops = fi.points[t_point].loops
            short = loops[-1] if point < 0 else None  # its loop's position is made at the stop
            for i, pos in positions:
                if i < len(loops) and loops[i] != short:
                    terms.append("_tk_lh(_tk_i%d) == %d" % (loops[i], pos))
            if terms:
                text += "else:\n try:\n  if %s:\n   pass\n except _tk_Exception:\n  pass\n" % " and ".join(terms)
            else:
                text += "else:\n pass\n"
        stmts: List[Any] = ast.parse(text).body
        for n in stmts:
            _stamp(n, call)

        def pause(at_target: int) -> Any:
            # its third argument says which (the locals are read from the frame where needed)
            c: Any = copy.deepcopy(call)  # an Expr of the _tk_pause call (_is_check)
            c.value.args[2] = _stamp(ast.Constant(value=at_target), call)
            return c

        top = stmts[1]
        top.body = [pause(0)]
        if top.orelse:
            inner = top.orelse[0]
            if isinstance(inner, ast.Try):
                inner.body[0].body = [pause(1)]  # type: ignore[attr-defined]  # an If
                inner.handlers[0].body = [pause(1)]
            else:
                top.orelse = [pause(1)]
        if point == 0:  # the entry's check: the function's first statement, so before any use
            stmts.insert(0, _stamp(ast.Global(names=["_tk_left"]), call))
        return stmts

    checks: List[Tuple[ast.If, int]] = []  # all found first: a rewritten body holds calls of the same shape
    for node in ast.walk(fi.node):
        if isinstance(node, ast.If):
            found = _is_check(node)
            if found is not None and found[0] == fi.name:
                checks.append((node, found[1]))
    for check, point in checks:
        check.body = body(check, point) + check.body[1:]


# -- continuations ------------------------------------------------------------


def _rewrite_jumps(stmts, flag: str, src) -> List[ast.stmt]:
    """Retarget this loop level's break/continue at a one-shot wrapper loop."""
    out: List[ast.stmt] = []
    for s in stmts:
        if isinstance(s, ast.Continue):
            out.append(_stamp(ast.Break(), s))
        elif isinstance(s, ast.Break):
            out.append(_const_assign(flag, True, s))
            out.append(_stamp(ast.Break(), s))
        elif isinstance(s, (ast.For, ast.While)):
            s = copy.copy(s)
            s.orelse = _rewrite_jumps(s.orelse, flag, src)  # else runs at the outer level
            out.append(s)
        elif isinstance(s, ast.If):
            s = copy.copy(s)
            s.body = _rewrite_jumps(s.body, flag, src)
            s.orelse = _rewrite_jumps(s.orelse, flag, src)
            out.append(s)
        elif isinstance(s, ast.Try):
            s = copy.copy(s)
            s.body = _rewrite_jumps(s.body, flag, src)
            s.orelse = _rewrite_jumps(s.orelse, flag, src)
            s.finalbody = _rewrite_jumps(s.finalbody, flag, src)
            handlers = []
            for h in s.handlers:
                h = copy.copy(h)
                h.body = _rewrite_jumps(h.body, flag, src)
                handlers.append(h)
            s.handlers = handlers
            out.append(s)
        else:
            out.append(s)
    return out


def _has_jump(stmts) -> bool:
    for s in stmts:
        if isinstance(s, (ast.Break, ast.Continue)):
            return True
        if isinstance(s, (ast.For, ast.While)):
            if _has_jump(s.orelse):
                return True
        elif isinstance(s, ast.If):
            if _has_jump(s.body) or _has_jump(s.orelse):
                return True
        elif isinstance(s, ast.Try):
            if (
                _has_jump(s.body)
                or _has_jump(s.orelse)
                or _has_jump(s.finalbody)
                or any(_has_jump(h.body) for h in s.handlers)
            ):
                return True
    return False


class _ContinuationBuilder:
    def __init__(self, info: FunctionInfo, point: PointInfo) -> None:
        self.info = info
        self.point = point

    def build(self) -> ast.FunctionDef:
        fn = self.info.node
        body = self.block(fn.body, self.point.path)
        restore = []
        for name in sorted(self.info.user_names | self.info.temps):
            restore.append(_stamp(_parse_stmt("if %r in _tk_L: %s = _tk_L[%r]" % (name, name, name)), fn))
        for k in self.point.loops:
            restore.append(_stamp(_parse_stmt("_tk_s%d, _tk_i%d = _tk_thaw_iter(_tk_I[%d])" % (k, k, k)), fn))
        for name in sorted(self.info.nested):
            restore.append(self.remake(self.info.nested[name]))
        func = _stamp(_parse_stmt("def %s(_tk_L, _tk_I, _tk_rv): pass" % self.info.name), fn)
        func.body = restore + body + [_stamp(ast.Pass(), fn)]
        return func

    def remake(self, d: ast.FunctionDef) -> ast.stmt:
        """Run a nested def again in the resumed frame, once its variables are restored: the new
        function closes over this frame's cells, as the frozen one did over the first frame's.
        Its defaults are the frozen ones (``(defaults, kwdefaults)``, runner.freeze_nested), not
        evaluated again."""
        node = copy.deepcopy(d)
        none = lambda: _stamp(ast.Constant(value=None), d)  # noqa: E731
        node.args.defaults = [none() for _ in node.args.defaults]
        node.args.kw_defaults = [None if x is None else none() for x in node.args.kw_defaults]
        guard = _stamp(_parse_stmt("if %r in _tk_L:\n pass" % d.name), d)
        fix = _stamp(_parse_stmt("%s.__defaults__, %s.__kwdefaults__ = _tk_L[%r]" % (d.name, d.name, d.name)), d)
        guard.body = [node, fix]
        return guard

    def block(self, stmts, path) -> List[ast.stmt]:
        (i, field), rest = path[0], path[1:]
        s = stmts[i]
        head = self.point_head(s) if field is None else self.enter(s, field, rest)
        return head + list(stmts[i + 1 :])

    def point_head(self, s) -> List[ast.stmt]:
        if getattr(s, "_tk_entry", False):
            return []
        if isinstance(s, (ast.For, ast.While)):
            # resume at the top of an iteration: its check already happened
            return self.loop_wrap(s, s.body[1:])
        # call point: the callee's return value (or exception) arrives in _tk_rv
        take = ast.Call(
            func=ast.Name(id="_tk_take", ctx=ast.Load()), args=[ast.Name(id="_tk_rv", ctx=ast.Load())], keywords=[]
        )
        _stamp(take, s.body[0])
        if s._tk_temp is None:
            return [ast.copy_location(ast.Expr(value=take), s.body[0])]
        return [_assign(s._tk_temp, take, s.body[0])]

    def enter(self, s, field: str, rest) -> List[ast.stmt]:
        inner = self.block(getattr(s, field), rest)
        if isinstance(s, (ast.For, ast.While)):
            return inner if field == "orelse" else self.loop_wrap(s, inner)
        if isinstance(s, ast.If):
            return inner
        # ast.Try
        flag = getattr(s, "_tk_fin", None)
        if field == "body":
            node = copy.copy(s)
            node.body = inner
        elif s.finalbody:
            node = copy.copy(s)
            node.body, node.handlers, node.orelse = inner, [], []
        else:
            return inner
        return ([_const_assign(flag, False, s)] if flag else []) + [node]

    def loop_wrap(self, loop, partial) -> List[ast.stmt]:
        if not _has_jump(partial):
            return list(partial) + [loop]
        flag = "_tk_b%d" % loop._tk_point
        wrapper = _stamp(_parse_stmt("while True:\n pass"), loop)
        wrapper.body = _rewrite_jumps(partial, flag, loop) + [_stamp(ast.Break(), loop)]
        reenter = _stamp(_parse_stmt("if not %s:\n pass" % flag), loop)
        reenter.body = [loop]
        return [_const_assign(flag, False, loop), wrapper, reenter]


# -- before compiling: annotations, __future__, module-level lambdas -----------


def prepare_module(tree: ast.Module) -> List[str]:
    """Rewrite a validated module in place so that it runs the same on every worker Python.

    * Annotations are never evaluated: they are removed from parameters and returns, and
      ``x: T = v`` becomes ``x = v``; a bare ``x: T`` disappears (in a function it becomes
      ``x: None``, which keeps ``x`` local and, as every local annotation, is not evaluated).
      A ``@dataclass`` body keeps its annotated names (its fields), annotated ``None``.
    * ``from __future__ import ...`` is dropped (every feature is on in Python 3.9+, and
      annotations are gone).
    * Each lambda the top level creates, and each callable it makes with ``itemgetter``,
      ``partial``... (validator.MAKERS), is wrapped in ``_tk_lambda(...)`` so that it can be
      frozen by reference (its creation order; see refs.py).

    Returns the allowed modules the job imports, anywhere (what refs.py may name).
    """
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                modules |= {".".join(parts[: i + 1]) for i in range(len(parts))}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            parts = node.module.split(".")
            modules |= {".".join(parts[: i + 1]) for i in range(len(parts))}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            for param in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if param is not None:
                    param.annotation = None
            if not isinstance(node, ast.Lambda):
                node.returns = None

    def strip(body: List[ast.stmt], level: str) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        for s in body:
            if isinstance(s, ast.AnnAssign) and level != "dataclass":
                if s.value is not None:
                    out.append(_assign_to(s.target, s.value, s))
                elif level == "function":
                    s.annotation = _stamp(ast.Constant(value=None), s)
                    out.append(s)
                continue
            if isinstance(s, ast.AnnAssign):
                # a field: the name is what counts (ClassVar, InitVar and KW_ONLY are refused)
                s.annotation = _stamp(ast.Constant(value=None), s)
            elif isinstance(s, ast.ImportFrom) and s.module == "__future__":
                continue
            elif isinstance(s, (ast.Import, ast.ImportFrom)) and _JOB_MODULES.keys() & set(
                [a.name for a in s.names if isinstance(s, ast.Import)]
                + [s.module if isinstance(s, ast.ImportFrom) else ""]
            ):
                out.extend(_job_module(s))
                continue
            elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                s.body = strip(s.body, "function") or [_stamp(ast.Pass(), s)]
            elif isinstance(s, ast.ClassDef):
                dc = any(is_dataclass_decorator(d) for d in s.decorator_list)
                s.body = strip(s.body, "dataclass" if dc else "class") or [_stamp(ast.Pass(), s)]
            else:
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(s, field, None)
                    if inner:
                        setattr(s, field, strip(inner, level) or [_stamp(ast.Pass(), s)])
                for h in getattr(s, "handlers", ()):
                    h.body = strip(h.body, level) or [_stamp(ast.Pass(), h)]
            out.append(s)
        return out

    tree.body = strip(tree.body, "module")

    class _Lambdas(ast.NodeTransformer):
        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
            # defaults and decorators run at the top level; the body does not
            node.args = self.visit(node.args)
            node.decorator_list = [self.visit(d) for d in node.decorator_list]
            return node

        def visit_Lambda(self, node: ast.Lambda) -> ast.expr:
            # not generic_visit: a lambda inside it is made when it is called, not at the top level
            return self.register(node)

        def visit_Call(self, node: ast.Call) -> ast.expr:
            self.generic_visit(node)
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            return self.register(node) if name in MAKERS else node

        def register(self, node: ast.expr) -> ast.expr:
            func = ast.copy_location(ast.Name(id="_tk_lambda", ctx=ast.Load()), node)
            return ast.copy_location(ast.Call(func=func, args=[node], keywords=[]), node)

    _Lambdas().visit(tree)
    desugar_comprehensions(tree)
    return sorted(modules)


def desugar_comprehensions(tree: ast.Module) -> None:
    """A list/set/dict comprehension that calls job functions, as the whole value of an assignment
    or a return (validator.loose_comprehension), becomes a for loop, so that the job can stop in it:

        x = [e for a in A if c for b in B]   ->   _tk_cK = []
                                                  for _tk_cK_a in A:
                                                      if c':
                                                          for _tk_cK_b in B':
                                                              _tk_cK.append(e')
                                                  x = _tk_cK
                                                  del _tk_cK

    with the comprehension's variables renamed (primes) into fresh reserved names: they do not
    leak, as natively.  A dict comprehension evaluates each key before its value, as natively."""
    jobs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    counter = [0]

    def calls_job(n: ast.AST) -> bool:
        return any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in jobs for c in ast.walk(n))

    def block(body: List[ast.stmt]) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        for st in body:
            comp = getattr(st, "value", None)
            if (
                isinstance(st, (ast.Assign, ast.Return))
                and comp is not None
                and loose_comprehension(comp, st)
                and calls_job(comp)
            ):
                out.extend(loop(st, comp))
                continue
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(st, field, None)
                if inner and isinstance(inner, list) and isinstance(inner[0], ast.stmt):
                    setattr(st, field, block(inner))
            for h in getattr(st, "handlers", ()):
                h.body = block(h.body)
            out.append(st)
        return out

    def loop(st: ast.stmt, comp: Any) -> List[ast.stmt]:
        k = counter[0]
        counter[0] += 1
        acc = "_tk_c%d" % k
        renames: Dict[str, str] = {}

        class Rename(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.Name:
                new = renames.get(node.id)
                return ast.copy_location(ast.Name(id=new, ctx=node.ctx), node) if new else node

        empty = {ast.ListComp: "[]", ast.SetComp: "set()", ast.DictComp: "{}"}[type(comp)]
        first = _stamp(_parse_stmt("%s = %s" % (acc, empty)), st)
        if isinstance(comp, ast.DictComp):
            key = "_tk_c%dk" % k
            inner: List[ast.stmt] = [
                _stamp(_parse_stmt("%s = 0" % key), st),
                _stamp(_parse_stmt("%s[%s] = 0" % (acc, key)), st),
            ]
        else:
            inner = [_stamp(_parse_stmt("%s.%s(0)" % (acc, "append" if isinstance(comp, ast.ListComp) else "add")), st)]
        body: List[ast.stmt] = []
        outer = body
        for i, gen in enumerate(comp.generators):
            it = gen.iter if i == 0 else Rename().visit(gen.iter)  # the first runs in the enclosing scope
            for n in ast.walk(gen.target):
                if isinstance(n, ast.Name):
                    renames[n.id] = "_tk_c%d_%s" % (k, n.id)
            target = Rename().visit(gen.target)
            for_node = _stamp(ast.For(target=target, iter=it, body=[], orelse=[]), gen.iter)
            if hasattr(for_node, "type_comment"):
                for_node.type_comment = None
            outer.append(for_node)
            outer = for_node.body
            for cond in gen.ifs:
                if_node = _stamp(ast.If(test=Rename().visit(cond), body=[], orelse=[]), cond)
                outer.append(if_node)
                outer = if_node.body
        if isinstance(comp, ast.DictComp):
            inner[0].value = Rename().visit(comp.key)  # type: ignore[attr-defined]  # an Assign
            inner[1].value = Rename().visit(comp.value)  # type: ignore[attr-defined]  # an Assign
        else:
            inner[0].value.args = [Rename().visit(comp.elt)]  # type: ignore[attr-defined]  # an Expr of a call
        outer.extend(inner)
        st.value = _stamp(ast.Name(id=acc, ctx=ast.Load()), comp)  # type: ignore[attr-defined]  # Assign/Return
        done = [st] if isinstance(st, ast.Return) else [st, _stamp(_parse_stmt("del %s" % acc), st)]
        return [first] + body + done

    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef):
            fn.body = block(fn.body)


#: modules whose job-side stand-in is bound by name, at compile time (an ``__import__`` hook is not
#: enough: PyPy's import statement ignores a ``__builtins__["__import__"]`` of the job's globals)
_JOB_MODULES = {
    "random": "_tk_random",  # the job's own generator, frozen with it (jobrandom.py)
    "itertools": "_tk_itertools",  # iterators that freeze as their own state (iterators.py)
}


def _job_module(s: Union[ast.Import, ast.ImportFrom]) -> List[ast.stmt]:
    """``import random`` / ``from itertools import count`` bind the job's stand-ins, not the modules."""
    out: List[ast.stmt] = []
    for a in s.names:
        if isinstance(s, ast.ImportFrom):
            base = _JOB_MODULES[s.module or ""]
            value: ast.expr = ast.Attribute(value=ast.Name(id=base, ctx=ast.Load()), attr=a.name, ctx=ast.Load())
            out.append(_assign_to(_name(a.asname or a.name, s, store=True), _stamp(value, s), s))
        elif a.name in _JOB_MODULES:
            value = ast.Name(id=_JOB_MODULES[a.name], ctx=ast.Load())
            out.append(_assign_to(_name(a.asname or a.name, s, store=True), _stamp(value, s), s))
        else:
            out.append(_stamp(ast.Import(names=[a]), s))
    return out


def _assign_to(target: ast.expr, value: ast.expr, src: ast.stmt) -> ast.Assign:
    node = ast.Assign(targets=[target], value=value)
    ast.copy_location(node, src)
    if "type_comment" in ast.Assign._fields:
        node.type_comment = None
    return node


# -- the compiled job ---------------------------------------------------------


class CompiledJob:
    """A validated, transformed job module plus what resuming it needs."""

    def __init__(self, source: str, entry: str, tree: ast.Module, info: ModuleInfo, replay=None) -> None:
        self.modules = prepare_module(tree)
        # a replay's compile (ReplayMode): the checks count inline; None: the honest compile
        self.replay = None if info.entry_is_generator else replay
        self.source = source
        self.entry = entry = info.entry or entry  # Class.method: its top-level copy (validator.method_entry)
        self.info = info
        self.is_generator = info.entry_is_generator
        self.class_names = tuple(info.classes)
        self.global_names = frozenset(info.global_names)
        self.functions: Dict[str, FunctionInfo] = {}
        job_functions = set(info.functions)
        module_names = job_functions | set(info.classes) | self.global_names | _imported(tree)
        body: List[ast.stmt] = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not (node.name == entry and self.is_generator):
                fi = _FunctionTransformer(node, job_functions, module_names).run()
                if self.replay is not None:
                    _replay_checks(fi, self.replay)
                self.functions[node.name] = fi
                body.append(fi.node)
            elif isinstance(node, ast.If):
                continue  # the __main__ guard
            else:
                body.append(node)
        module = ast.Module(body=body, type_ignores=[])
        ast.fix_missing_locations(module)
        self.code = compile(module, JOB_FILENAME, "exec", dont_inherit=True)
        self._continuations: Dict[Tuple[str, int], types.CodeType] = {}
        self.signature = _signature(info.functions[entry])

    def continuation_code(self, fname: str, point: int) -> types.CodeType:
        """Code of "the rest of ``fname`` from ``point``" (built on first use)."""
        key = (fname, point)
        code = self._continuations.get(key)
        if code is None:
            info = self.functions[fname]
            func = _ContinuationBuilder(info, info.points[point]).build()
            if self.replay is not None:  # its checks count in the module's global (_replay_checks)
                func.body.insert(0, _stamp(ast.Global(names=["_tk_left"]), func))
            module = ast.Module(body=[func], type_ignores=[])
            ast.fix_missing_locations(module)
            module_code = compile(module, JOB_FILENAME, "exec", dont_inherit=True)
            code = next(c for c in module_code.co_consts if isinstance(c, types.CodeType))
            self._continuations[key] = code
        return code

    def continuation_source(self, fname: str, point: int) -> str:
        """Readable source of a continuation (for debugging and docs)."""
        info = self.functions[fname]
        func = _ContinuationBuilder(info, info.points[point]).build()
        return ast.unparse(ast.fix_missing_locations(func))

    def check_arguments(self, args, kwargs) -> None:
        """Refuse arguments that do not fit the entry function's parameters."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise JobRefused(
                [(self.info.functions[self.entry].lineno, "arguments do not fit %s(): %s" % (self.entry, exc))]
            ) from None
        if self.is_generator and "resume" in kwargs:
            raise JobRefused(
                [(self.info.functions[self.entry].lineno, "'resume' is passed by the runtime, not by the submitter")]
            )


def _imported(tree: ast.Module) -> set:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _signature(fn: ast.FunctionDef) -> "inspect.Signature":
    import inspect  # only start() binds arguments; slices need not pay for importing it

    """The entry's signature, with placeholder defaults (nothing is evaluated)."""
    P = inspect.Parameter
    a = fn.args
    params = []
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(a.defaults)
    for i, x in enumerate(positional):
        kind = P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD
        params.append(P(x.arg, kind, default=None if i >= first_default else P.empty))
    if a.vararg is not None:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for x, d in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(x.arg, P.KEYWORD_ONLY, default=P.empty if d is None else None))
    if a.kwarg is not None:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(params)


_CACHE: Dict[Tuple[str, str, Any], CompiledJob] = {}
_CACHE_SIZE = 16


def compile_job(source: str, entry: str, replay: "Optional[ReplayMode]" = None) -> CompiledJob:
    """Validate and compile ``source``; raises JobRefused.  Cached per process.

    ``replay``: a replay's compile (see :class:`ReplayMode`), never an honest slice's."""
    key = (source, entry, replay)
    job = _CACHE.get(key)
    if job is None:
        tree, info = check_module(source, entry)
        job = CompiledJob(source, entry, tree, info, replay)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = job
    return job
