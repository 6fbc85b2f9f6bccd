"""Static checks that keep a job module inside the resumable subset.

The validator is about resumability and clear errors, not security (the
sandbox is the security boundary): everything it refuses is something the
runtime could not freeze and resume exactly.  Every problem carries the line
number of the construct and a reason in plain words.
"""

from __future__ import annotations

import ast
import builtins
import copy

from . import apiversions

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

__all__ = ["JobRefused", "ModuleInfo", "check_module", "ALLOWED_MODULES", "RESERVED_PREFIX"]

# Pure, deterministic stdlib modules whose objects are plain data, live only
# inside one atomic call, or are frozen by reference (their functions and
# classes: refs.py).  ``random`` is the job's own generator, whose state is
# frozen with the job (jobrandom.py).
ALLOWED_MODULES = frozenset(
    {
        "random",
        "math",
        "typing",
        "collections.abc",
        "dataclasses",
        "cmath",
        "itertools",
        "functools",
        "collections",
        "heapq",
        "bisect",
        "string",
        "re",
        "operator",
        "statistics",
        "fractions",
    }
)
# what a job may use of a module whose other objects could not be frozen
ALLOWED_NAMES = {
    "dataclasses": frozenset({"dataclass", "field", "asdict", "astuple", "replace", "is_dataclass"}),
    # the module-level functions, on the job's own generator; not Random() or SystemRandom()
    "random": frozenset(
        {"seed", "random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss"}
        | {"getrandbits", "triangular", "betavariate", "expovariate", "gammavariate", "lognormvariate"}
        | {"normalvariate", "vonmisesvariate", "paretovariate", "weibullvariate", "randbytes"}
    ),
}
# what to say when a name outside ALLOWED_NAMES is used
NAME_HINTS = {
    "random": "use random.seed(...) and the module's functions: the job has one generator, frozen with it",
    "dataclasses": "",
}
# ``from __future__ import X``: every feature is on in Python 3.9+ or only changes annotations,
# which jobs never evaluate; the compiler drops these imports
FUTURE_FEATURES = frozenset(
    {
        "annotations",
        "generator_stop",
        "division",
        "absolute_import",
        "print_function",
        "unicode_literals",
        "generators",
        "nested_scopes",
        "with_statement",
    }
)
# builtins that would read or write outside the job: what to do instead
NO_IO = {
    "input": "a job cannot read a keyboard: pass the data in the job's arguments "
    "(market submit MODULE FUNCTION ARGS...), or run a pythia task for interactive or file work (docs/tasks.md)",
    "open": "a job cannot open files: pass the data in the job's arguments and return results, "
    "or run a pythia task, which has a task filesystem (docs/tasks.md)",
}
RESERVED_PREFIX = "_tk_"
FORBIDDEN_NAMES = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "__import__",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "exit",
        "quit",
        "help",
        "memoryview",
        "__builtins__",
        "__loader__",
        "__spec__",
        "__file__",
    }
)
FORBIDDEN_METHODS = frozenset(
    {
        "__new__",
        "__del__",
        "__getattr__",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__init_subclass__",
        "__class_getitem__",
        "__set_name__",
        "__slots__",
        "__copy__",
        "__deepcopy__",
    }
)
_INJECTED = frozenset({"progress", "job_id"})
# Calls that use a function argument and let go of it before they return: a lambda made while the
# job runs may be passed to them (nothing can hold it at a stopping point)
_CONSUMERS = frozenset(
    {"sorted", "sort", "min", "max", "nsmallest", "nlargest", "reduce", "any", "all", "sum", "list", "tuple"}
    | {"set", "frozenset", "dict", "join", "sub", "subn", "bisect", "bisect_left", "bisect_right", "insort"}
    | {"insort_left", "insort_right", "Counter", "deque", "fsum", "prod", "extend", "update"}
)
# calls whose result holds the function: fine only when that result is itself consumed at once
_HOLDERS = frozenset({"map", "filter", "cmp_to_key", "filterfalse", "starmap", "takewhile", "dropwhile"})
_HOLDERS |= frozenset({"accumulate", "groupby"})
# calls of allowed modules that make a new callable: at the top level the compiler registers what they
# make (refs.py freezes it by reference); while the job runs it must be consumed at once
# calls that use up an iterator argument (or take some items and drop it) before they return
_USE_UP = _CONSUMERS | frozenset({"next", "fmean", "mean", "median", "mode", "stdev", "pstdev"})
_USE_UP |= frozenset({"variance", "pvariance", "heapify", "bytes", "bytearray", "str", "print"})
# iterator makers whose iterators cannot be frozen (iterators.py), with how to do without
_NATIVE_ONLY = {
    "groupby": "loop over a list of its groups: for k, g in [(k, list(g)) for k, g in groupby(...)]",
    "tee": "make a list of the items and loop over it as often as needed",
    "finditer": "loop over a list of what you need of each match: "
    "for start, text in [(m.start(), m.group()) for m in PAT.finditer(s)], or use findall",
    "scanner": "use finditer's matches in a list comprehension, or findall",
}
MAKERS = frozenset({"itemgetter", "attrgetter", "methodcaller", "partial", "cmp_to_key"})
_SCOPES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)


class JobRefused(ValueError):
    """The job module is outside the supported subset.

    ``problems`` is a sorted list of ``(lineno, reason)``.
    """

    def __init__(self, problems: List[Tuple[int, str]]) -> None:
        self.problems = sorted(set(problems))
        super().__init__(self.problems)

    def __str__(self) -> str:
        lines = ["job refused (%d problem%s):" % (len(self.problems), "" if len(self.problems) == 1 else "s")]
        lines += ["  line %d: %s" % (ln, why) for ln, why in self.problems]
        return "\n".join(lines)


class ModuleInfo:
    """What the compiler needs to know about a validated module."""

    def __init__(self) -> None:
        self.functions: Dict[str, ast.FunctionDef] = {}
        self.classes: Dict[str, ast.ClassDef] = {}
        self.global_names: Set[str] = set()
        self.entry: Optional[str] = None
        self.entry_is_generator = False


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _is_type_checking_guard(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and not node.orelse
        and (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        )
    )


_TYPE_NAMES = frozenset(
    {"int", "float", "complex", "str", "bytes", "bool", "list", "dict", "set", "frozenset", "tuple", "type"}
    | {"object", "bytearray", "range"}
)


def _is_type(e: ast.AST) -> bool:
    """A builtin type, ``None`` or ``list[...]``: an operand of ``X | Y`` that only 3.10+ accepts."""
    if isinstance(e, ast.Subscript):
        e = e.value
    return (isinstance(e, ast.Name) and e.id in _TYPE_NAMES) or (isinstance(e, ast.Constant) and e.value is None)


def _callee(f: ast.AST) -> str:
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def loose_comprehension(comp: ast.AST, parent: Optional[ast.AST]) -> bool:
    """Whether the compiler turns the comprehension ``comp`` into a for loop (so that it may call
    job functions): a list, set or dict comprehension that is the whole value of an assignment or
    of a return (nothing else of the statement is evaluated before it), with no lambda or other
    comprehension inside (their names would need another scope)."""
    if not isinstance(comp, (ast.ListComp, ast.SetComp, ast.DictComp)):
        return False
    if not isinstance(parent, (ast.Assign, ast.Return)) or parent.value is not comp:
        return False
    if any(g.is_async for g in comp.generators):
        return False
    return not any(isinstance(n, _SCOPES) or isinstance(n, ast.NamedExpr) for n in ast.walk(comp) if n is not comp)


def is_dataclass_decorator(d: ast.expr) -> bool:
    """``@dataclass``, ``@dataclass(...)``, ``@dataclasses.dataclass``..."""
    f = d.func if isinstance(d, ast.Call) else d
    return (isinstance(f, ast.Name) and f.id == "dataclass") or (
        isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.attr == "dataclass"
    )


def _is_main_guard(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _has_yield(fn: ast.FunctionDef) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _walk_scope(fn.body))


def _walk_scope(stmts: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """ast.walk over statements, not entering nested function/class scopes."""
    todo = list(stmts)
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                todo.append(child)


def local_names(fn: ast.FunctionDef) -> Set[str]:
    """Names bound in ``fn``'s own scope (parameters and assignments)."""
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    todo: List[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.NamedExpr):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(x.asname or x.name).split(".")[0] for x in node.names}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # a nested definition binds its name here; its body is its own scope (its defaults
            # and decorators are evaluated here)
            names.add(node.name)
            todo.extend(_outer_parts(node))
            continue
        if isinstance(node, _SCOPES):
            # only the walrus targets and the first iterable escape a comprehension
            todo.extend(n for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
            gens = getattr(node, "generators", None)
            if gens:
                todo.append(gens[0].iter)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return names


def _outer_parts(node: ast.AST) -> List[ast.AST]:
    """The parts of a nested def or class that its enclosing scope evaluates."""
    if isinstance(node, ast.ClassDef):
        parts: List[ast.AST] = [*node.bases, *(k.value for k in node.keywords), *node.decorator_list]
        return parts
    a = node.args  # type: ignore[attr-defined]  # FunctionDef / AsyncFunctionDef
    return list(a.defaults) + [d for d in a.kw_defaults if d is not None] + list(node.decorator_list)  # type: ignore[attr-defined]


def nested_functions(fn: ast.FunctionDef) -> List[ast.FunctionDef]:
    """The ``def`` statements in ``fn``'s own scope (not those nested deeper), in source order."""
    out: List[ast.FunctionDef] = []
    todo: List[ast.AST] = list(reversed(fn.body))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef):
            out.append(node)
            continue
        if isinstance(node, ast.stmt):
            todo.extend(reversed(list(ast.iter_child_nodes(node))))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(reversed(node.body))
    return out


class _Checker:
    def __init__(self, tree: ast.Module, entry: str) -> None:
        self.tree = tree
        self.entry = entry
        self.problems: List[Tuple[int, str]] = []
        self.info = ModuleInfo()
        self.modules: Dict[str, str] = {}  # names bound to an allowed module (import m as x: x -> m)

    def refuse(self, node, reason: str) -> None:
        self.problems.append((getattr(node, "lineno", 1), reason))

    # -- module level ---------------------------------------------------------

    def run(self) -> ModuleInfo:
        info = self.info
        self.parents = {id(c): p for p in ast.walk(self.tree) for c in ast.iter_child_nodes(p)}
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef):
                if node.name in info.functions or node.name in info.classes:
                    self.refuse(node, "%r is defined twice" % node.name)
                info.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                if node.name in info.functions or node.name in info.classes:
                    self.refuse(node, "%r is defined twice" % node.name)
                info.classes[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    info.global_names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        clash = info.global_names & (set(info.functions) | set(info.classes))
        for name in sorted(clash):
            self.refuse(
                info.functions.get(name) or info.classes.get(name),
                "%r is both a function or class and a module variable" % name,
            )
        if self.entry not in info.functions:
            self.refuse(
                self.tree.body[0] if self.tree.body else None,
                "the job module has no top-level function named %r" % self.entry,
            )
        else:
            info.entry = self.entry
            info.entry_is_generator = _has_yield(info.functions[self.entry])
        for node in self.tree.body:
            self.module_stmt(node)
        return info

    def module_stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.import_(node)
        elif _is_type_checking_guard(node):
            return  # TYPE_CHECKING is False when a job runs: the block never runs
        elif isinstance(node, ast.FunctionDef):
            self.function(node, method=False)
        elif isinstance(node, ast.AsyncFunctionDef):
            self.refuse(node, "async functions are not supported")
        elif isinstance(node, ast.ClassDef):
            self.klass(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if not all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Store)) for n in ast.walk(t)):
                    self.refuse(node, "top-level assignments may only bind names")
                self.expr(t, None)
            if node.value is not None:
                self.expr(node.value, None)
        elif _is_main_guard(node):
            return  # never runs: the job module is not __main__
        else:
            self.refuse(
                node,
                "only imports, functions, classes and constant assignments may "
                "appear at the top level of a job module (found %s)" % type(node).__name__,
            )

    def import_(self, node) -> None:
        allowed = ", ".join(sorted(ALLOWED_MODULES))
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_MODULES:
                    self.refuse(node, "import of %r is not allowed (allowed: %s)" % (alias.name, allowed))
                bound = (alias.asname or alias.name).split(".")[0]
                self.modules[alias.asname or alias.name] = alias.name
                self.check_name_binding(node, bound)
            return
        if node.module == "__future__" and not node.level:
            for alias in node.names:
                if alias.name not in FUTURE_FEATURES:
                    self.refuse(node, "unknown __future__ feature %r" % alias.name)
            return
        if node.level or node.module not in ALLOWED_MODULES:
            self.refuse(
                node, "import from %r is not allowed (allowed: %s)" % ("." * node.level + (node.module or ""), allowed)
            )
        names = ALLOWED_NAMES.get(node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.refuse(node, "'import *' is not supported: name what you import")
            elif names is not None and alias.name not in names:
                self.refuse_name(node, node.module or "", alias.name, names)
            self.check_name_binding(node, alias.asname or alias.name)

    def refuse_name(self, node, module: str, name: str, names) -> None:
        hint = NAME_HINTS.get(module) or "supported: " + ", ".join(sorted(names))
        self.refuse(node, "%s.%s is not supported in jobs (%s)" % (module, name, hint))

    def check_name_binding(self, node, name: str) -> None:
        if name.startswith(RESERVED_PREFIX):
            self.refuse(node, "names starting with %r are reserved for the runtime" % RESERVED_PREFIX)

    def klass(self, node: ast.ClassDef) -> None:
        dataclass = False
        for d in node.decorator_list:
            if is_dataclass_decorator(d):
                dataclass = True
                for kw in d.keywords if isinstance(d, ast.Call) else ():
                    if kw.arg in ("slots", "weakref_slot") and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        self.refuse(d, "@dataclass(%s=...) is not supported: its instances have no __dict__" % kw.arg)
                    self.expr(kw.value, "class decorators cannot call job functions")
                if isinstance(d, ast.Call) and d.args:
                    self.refuse(d, "pass @dataclass's options as keywords")
            else:
                self.refuse(d, "class decorators other than @dataclass are not supported")
        for _kw in node.keywords:
            self.refuse(node, "class keywords (metaclass=...) are not supported")
        for base in node.bases:
            ok = isinstance(base, ast.Name) and (
                base.id in self.info.classes
                or base.id == "object"
                or (
                    isinstance(getattr(builtins, base.id, None), type)
                    and issubclass(getattr(builtins, base.id), Exception)
                )
            )
            if not ok:
                self.refuse(
                    base,
                    "a job class may only derive from object, built-in exceptions or other classes of the job module",
                )
        for stmt in node.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue
            if isinstance(stmt, ast.Pass):
                continue
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name in FORBIDDEN_METHODS:
                    self.refuse(stmt, "method %s is not supported in job classes" % stmt.name)
                self.function(stmt, method=True)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if dataclass and isinstance(stmt, ast.AnnAssign):
                    for n in ast.walk(stmt.annotation):
                        ident = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
                        if ident in ("ClassVar", "InitVar", "KW_ONLY"):
                            self.refuse(
                                stmt,
                                "%s fields are not supported in job dataclasses (annotations are not evaluated): "
                                "assign a class constant without an annotation, or make it a field" % ident,
                            )
                for t in targets:
                    if not isinstance(t, ast.Name) or t.id in FORBIDDEN_METHODS:
                        self.refuse(stmt, "class bodies may only assign plain class constants")
                if stmt.value is not None:
                    self.expr(stmt.value, "class bodies cannot call job functions")
            else:
                self.refuse(stmt, "class bodies may only hold methods and constants (found %s)" % type(stmt).__name__)

    # -- functions ------------------------------------------------------------

    def function(self, fn: ast.FunctionDef, method: bool) -> None:
        info = self.info
        self.check_name_binding(fn, fn.name)
        for d in fn.decorator_list:
            if not (method and isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod", "property")):
                self.refuse(d, "decorators are not supported")
        a = fn.args
        for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
            if isinstance(default, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
                self.refuse(
                    default,
                    "mutable default arguments are not kept across slices; "
                    "use None and create the value in the function",
                )
            self.expr(default, None)
        is_gen = _has_yield(fn)
        generator_entry = is_gen and not method and fn.name == self.entry
        if is_gen and not generator_entry:
            self.refuse(fn, "generators are only supported as the job's entry function (a generator job)")
        if generator_entry:
            params = {x.arg for x in a.args + a.kwonlyargs}
            if "resume" not in params:
                self.refuse(
                    fn,
                    "a generator job must accept a 'resume' keyword argument "
                    "(the last state it yielded, None on the first call)",
                )
        names = local_names(fn)
        for name in sorted(names):
            if name.startswith(RESERVED_PREFIX):
                self.refuse(fn, "names starting with %r are reserved for the runtime" % RESERVED_PREFIX)
            elif name in info.functions or name in info.classes:
                self.refuse(
                    fn, "local variable %r in %s() shadows the job's function or class of that name" % (name, fn.name)
                )
        ctx = _Ctx(fn, names, method, generator_entry)
        self.block(fn.body, ctx)
        self.nested_uses(fn)
        for line, why in held_in_containers(fn, self.info, self.modules):
            self.problems.append((line, why))

    # -- nested functions and closures ----------------------------------------
    #
    # A nested def runs atomically (like a lambda consumed at once): it cannot call job functions,
    # so no frame of it is ever frozen.  Its function object may live in the outer frame across a
    # freeze: it is frozen as the values of its defaults, and a thaw runs its def statement again in
    # the resumed frame, whose variables it closes over (compiler.py: _ContinuationBuilder), so the
    # cells are shared with the outer frame as they were.  That is exact only if the object never
    # leaves the outer frame: the name is bound by its one def, and only called or passed straight to
    # a call that lets go of it (sorted(key=f), max, map(...) consumed at once).

    def nested_function(self, fn: ast.FunctionDef, ctx: "_Ctx") -> None:
        for d in fn.decorator_list:
            self.refuse(d, "decorators are not supported on nested functions")
        a = fn.args
        for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.expr(default, ctx.no_calls or "defaults of a nested function cannot call job functions", ctx)
        if _has_yield(fn):
            self.refuse(fn, "nested generators are not supported (write a loop in the outer function)")
        names = local_names(fn)
        for name in sorted(names | {fn.name}):
            if name.startswith(RESERVED_PREFIX):
                self.refuse(fn, "names starting with %r are reserved for the runtime" % RESERVED_PREFIX)
            elif name in self.info.functions or name in self.info.classes:
                self.refuse(
                    fn, "%r in nested function %s() shadows the job's function or class of that name" % (name, fn.name)
                )
        why = (
            "a nested function runs at once and cannot call job functions "
            "(make %s a top-level function, or call the job function in the outer function)" % fn.name
        )
        inner = _Ctx(fn, names, ctx.method, False, why, nested=True)
        self.block(fn.body, inner)

    def nested_uses(self, fn: ast.FunctionDef) -> None:
        """A nested function's name: bound by its one def, only called or consumed at once."""
        defs = nested_functions(fn)
        seen: Dict[str, ast.FunctionDef] = {}
        for d in defs:
            if d.name in seen:
                self.refuse(
                    d,
                    "nested function %s() is defined twice in %s() (give each definition its own name)"
                    % (d.name, fn.name),
                )
            seen[d.name] = d
        # every def nested at any depth: none of their objects may leave the frame that made it
        deep = {n.name for n in ast.walk(fn) if isinstance(n, ast.FunctionDef) and n is not fn}
        if not deep:
            return
        for node in ast.walk(fn):
            if not isinstance(node, ast.Name) or node.id not in deep:
                continue
            if not isinstance(node.ctx, ast.Load):
                self.refuse(
                    node,
                    "%r names a nested function: it may only be bound by its def (use another name)" % node.id,
                )
                continue
            parent = self.parents.get(id(node))
            if isinstance(parent, ast.Call) and parent.func is node:
                continue
            if self.consumed(node):
                continue
            self.refuse(
                node,
                "nested function %s can only be called, or passed straight to a call that uses it at once "
                "(sorted(xs, key=%s), max, map(...) consumed at once): returned or kept in a variable, "
                "a container or an object it could not be frozen; define it at the top level of the module "
                "and pass the values it needs as arguments" % (node.id, node.id),
            )

    def block(self, stmts, ctx: "_Ctx") -> None:
        for s in stmts:
            self.stmt(s, ctx)

    def stmt(self, s: ast.stmt, ctx: "_Ctx") -> None:
        no_calls = ctx.no_calls
        if isinstance(s, ast.FunctionDef):
            self.nested_function(s, ctx)
        elif isinstance(s, (ast.AsyncFunctionDef, ast.ClassDef)):
            self.refuse(
                s, "nested classes and async functions are not supported (define them at the top level of the module)"
            )
        elif isinstance(s, ast.Nonlocal) and ctx.nested:
            pass  # a nested function rebinding its outer function's variable: the cell is shared
        elif isinstance(s, (ast.Global, ast.Nonlocal)):
            self.refuse(
                s,
                "'%s' statements are not supported: pass values as arguments "
                "and return them" % type(s).__name__.lower(),
            )
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            self.refuse(s, "'with' statements are not supported")
        elif isinstance(s, ast.AsyncFor):
            self.refuse(s, "'async for' is not supported")
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            if isinstance(s, ast.ImportFrom) and s.module == "__future__":
                self.refuse(s, "from __future__ imports must be at the top of the module")
            else:
                self.import_(s)
        elif type(s).__name__ in apiversions.STATEMENTS:
            self.refuse(s, apiversions.statement(type(s).__name__))
        elif isinstance(s, ast.For):
            self.target(s.target, ctx)
            self.expr(s.iter, no_calls, ctx)
            self.block(s.body, ctx)
            self.block(s.orelse, ctx)
        elif isinstance(s, ast.While):
            self.expr(
                s.test, no_calls or "a while condition cannot call job functions (compute it in the loop body)", ctx
            )
            self.block(s.body, ctx)
            self.block(s.orelse, ctx)
        elif isinstance(s, ast.If):
            self.expr(s.test, no_calls, ctx)
            self.block(s.body, ctx)
            self.block(s.orelse, ctx)
        elif isinstance(s, ast.Try):
            self.block(s.body, ctx)
            inner = ctx.child(no_calls or "except and finally blocks cannot call job functions")
            for h in s.handlers:
                if h.type is not None:
                    self.expr(h.type, inner.no_calls, ctx)
                if h.name:
                    self.check_name_binding(h, h.name)
                self.block(h.body, inner)
            self.block(s.orelse, ctx)
            self.block(s.finalbody, inner)
        elif isinstance(s, ast.Assign):
            for t in s.targets:
                self.target(t, ctx)
            self.expr(s.value, no_calls, ctx)
        elif isinstance(s, ast.AugAssign):
            self.target(s.target, ctx)
            if not isinstance(s.target, ast.Name):
                self.expr(
                    s.value,
                    no_calls
                    or "augmented assignment to an item or attribute "
                    "cannot call a job function on the right "
                    "(assign the call to a variable first)",
                    ctx,
                )
            else:
                self.expr(s.value, no_calls, ctx)
        elif isinstance(s, ast.AnnAssign):
            self.target(s.target, ctx)
            if s.value is not None:
                self.expr(s.value, no_calls, ctx)
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.expr(s.value, no_calls, ctx)
        elif isinstance(s, ast.Expr):
            self.expr(s.value, no_calls, ctx)
        elif isinstance(s, ast.Raise):
            for e in (s.exc, s.cause):
                if e is not None:
                    self.expr(e, no_calls, ctx)
        elif isinstance(s, ast.Assert):
            self.expr(s.test, no_calls, ctx)
            if s.msg is not None:
                self.expr(s.msg, "an assert message cannot call job functions", ctx)
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                self.target(t, ctx)
        elif isinstance(s, (ast.Pass, ast.Break, ast.Continue)):
            pass
        else:
            self.refuse(s, "%s statements are not supported" % type(s).__name__)

    def target(self, t: ast.expr, ctx) -> None:
        self.expr(t, "assignment targets cannot call job functions (assign the call to a variable first)", ctx)

    # -- expressions ----------------------------------------------------------

    def expr(self, e: ast.AST, no_calls: Optional[str], ctx: "Optional[_Ctx]" = None) -> None:
        """Check expression ``e``; ``no_calls`` says why job calls are refused here."""
        funcs = self.info.functions
        todo = [(e, no_calls, False)]
        while todo:
            node, why, is_callee = todo.pop()
            if isinstance(node, (ast.Call, ast.GeneratorExp)):
                self.native_only_iterator(node)
            if isinstance(node, ast.Name):
                self.name(node, is_callee, ctx)
                continue
            if isinstance(node, ast.Attribute):
                if _is_dunder(node.attr) and not (
                    node.attr == "__init__"
                    and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name)
                    and node.value.func.id == "super"
                ):
                    self.refuse(node, "dunder attribute access (.%s) is not supported" % node.attr)
                v = node.value
                if isinstance(v, ast.Name) and v.id in self.modules:
                    names = ALLOWED_NAMES.get(self.modules[v.id])
                    if names is not None and node.attr not in names:
                        self.refuse_name(node, self.modules[v.id], node.attr, names)
                todo.append((node.value, why, False))
                continue
            if isinstance(node, ast.Call):
                f = node.func
                if self.is_maker(f) and self.made_at_run_time(node) and not self.consumed(node):
                    self.refuse(
                        node,
                        "the callable %s(...) makes cannot be kept in a variable, a container or an object "
                        "while the job runs (it could not be frozen): make it once at the top level of the module "
                        "(KEY = %s(...)), or pass it straight to the call that uses it" % (_callee(f), _callee(f)),
                    )
                if isinstance(f, ast.Name) and f.id == "print" and any(kw.arg == "file" for kw in node.keywords):
                    self.refuse(
                        node,
                        "print(file=...) is not supported: a job has no files; print() goes to the job's log"
                        " (market logs JOB) and the job's result is what it returns"
                        " (or run a pythia task: docs/tasks.md)",
                    )
                if isinstance(f, ast.Name) and f.id in funcs:
                    if why:
                        self.refuse(node, "call to job function %s(): %s" % (f.id, why))
                    elif f.id == self.entry and self.info.entry_is_generator:
                        self.refuse(node, "the generator job %s() cannot be called by the job itself" % f.id)
                    elif ctx is not None and ctx.method:
                        self.refuse(node, "methods of job classes cannot call job functions")
                    todo.append((f, why, True))
                else:
                    if (
                        isinstance(f, ast.Name)
                        and f.id in ("getattr", "setattr", "delattr", "hasattr")
                        and len(node.args) > 1
                        and isinstance(node.args[1], ast.Constant)
                        and isinstance(node.args[1].value, str)
                        and _is_dunder(node.args[1].value)
                    ):
                        self.refuse(node, "dunder attribute access via %s() is not supported" % f.id)
                    todo.append((f, why, False))  # compiler._slots: the called object is evaluated first
                for a in node.args:
                    todo.append((a, why, False))
                for kw in node.keywords:
                    todo.append((kw.value, why, False))
                continue
            if isinstance(node, ast.Lambda):
                if self.made_at_run_time(node) and not self.consumed(node):
                    self.refuse(
                        node,
                        "a lambda made while the job runs cannot be kept in a variable, a container or an object "
                        "(it could not be frozen): define it at the top level of the module (NAME = lambda ...) "
                        "or as a function, or pass it straight to the call that uses it (sorted(xs, key=lambda ...))",
                    )
                self.lambda_(node, ctx)
                continue
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                if loose_comprehension(node, self.parents.get(id(node))):
                    # the compiler makes it a for loop (compiler.desugar_comprehensions)
                    for child in ast.iter_child_nodes(node):
                        todo.append((child, why, False))
                    continue
                why = "comprehensions run atomically and cannot call job functions (use a for loop)"
                for child in ast.iter_child_nodes(node):
                    todo.append((child, why, False))
                continue
            if isinstance(node, ast.BoolOp):
                pass  # job calls in 'and'/'or' run as statements (compiler.lin_branch)
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.BitOr)
                and (_is_type(node.left) or _is_type(node.right))
            ):
                self.refuse(
                    node,
                    "'X | Y' of types is evaluated here and fails on Python 3.9 workers: write typing.Union[X, Y] "
                    "or typing.Optional[X] (in annotations, 'X | Y' is fine: they are not evaluated)",
                )
            elif isinstance(node, ast.IfExp):
                pass  # job calls in 'x if c else y' run as statements (compiler.lin_branch)
            elif isinstance(node, ast.Compare) and len(node.comparators) > 1:
                todo.append((node.left, why, False))
                todo.append((node.comparators[0], why, False))
                later = why or "job function calls in later parts of a chained comparison are not supported"
                todo.extend((c, later, False) for c in node.comparators[1:])
                continue
            elif isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
                if isinstance(node, ast.Await):
                    self.refuse(node, "'await' is not supported")
                elif isinstance(node, ast.YieldFrom):
                    self.refuse(node, "'yield from' is not supported")
                elif ctx is None or not ctx.generator_entry:
                    pass  # reported once for the whole function
            elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
                todo.append((node.value, why, False))
                todo.append((node.format_spec, why or "format specs cannot call job functions", False))
                continue
            elif type(node).__name__ in ("TemplateStr", "Interpolation"):
                self.refuse(node, "template strings are not supported")
            for child in ast.iter_child_nodes(node):
                todo.append((child, why, False))

    def name(self, node: ast.Name, is_callee: bool, ctx) -> None:
        ident = node.id
        if ident in NO_IO:
            self.refuse(node, "%r is not available to jobs: %s" % (ident, NO_IO[ident]))
        elif ident in FORBIDDEN_NAMES:
            self.refuse(node, "%r is not available to jobs" % ident)
        elif ident.startswith(RESERVED_PREFIX):
            self.refuse(node, "names starting with %r are reserved for the runtime" % RESERVED_PREFIX)
        elif _is_dunder(ident):
            self.refuse(node, "dunder names (%s) are not supported" % ident)
        elif (
            ident in self.info.functions
            and not is_callee
            and isinstance(node.ctx, ast.Load)
            and not (ctx is not None and ident in ctx.names)
        ):
            self.refuse(
                node,
                "job function %s can only be called directly, not used as a "
                "value (e.g. as a key= or map() callback)" % ident,
            )

    def is_maker(self, f: ast.expr) -> bool:
        if isinstance(f, ast.Name):
            return f.id in MAKERS and f.id not in self.info.functions and f.id not in self.info.classes
        return isinstance(f, ast.Attribute) and f.attr in MAKERS and _callee(f.value) in self.modules

    def made_at_run_time(self, node: ast.AST) -> bool:
        """Whether ``node`` is evaluated by a running function or lambda (not by the top level)."""
        child, parent = node, self.parents.get(id(node))
        while parent is not None:
            if isinstance(parent, ast.Lambda) and child is parent.body:
                return True
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and child in parent.body:
                return True
            child, parent = parent, self.parents.get(id(parent))
        return False

    def consumed(self, node: ast.AST) -> bool:
        """Whether the function ``node`` makes goes straight into a call that lets go of it."""
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.keyword):
            if parent.arg != "key":  # dict(f=...), x.update(f=...) keep it
                return False
            parent = self.parents.get(id(parent))
        if not isinstance(parent, ast.Call) or node is parent.func:
            return False
        callee = _callee(parent.func)
        if callee in _CONSUMERS:
            return True
        if callee in _HOLDERS:
            return self.consumed(parent) or self.iterated_at_once(parent)
        return False

    def native_only_iterator(self, node: ast.AST) -> None:
        """Refuse an iterator that cannot be frozen (a generator expression, iter(f, sentinel),
        groupby, tee, finditer) unless it is used up or let go of at once: kept in a variable or
        looped over by a for statement, it would stop the job at its first freeze."""
        if isinstance(node, ast.GeneratorExp):
            what = "a generator expression"
            fix = "make a list ([... for ...]) or loop over the iterable itself"
        elif isinstance(node, ast.Call) and _callee(node.func) == "iter" and isinstance(node.func, ast.Name):
            if len(node.args) != 2:
                return
            what, fix = "iter(function, sentinel)", "write a while loop that calls the function"
        elif isinstance(node, ast.Call) and _callee(node.func) in _NATIVE_ONLY:
            what = "%s(...)" % _callee(node.func)
            fix = _NATIVE_ONLY[_callee(node.func)]
        else:
            return
        if not self.made_at_run_time(node) or self.let_go_at_once(node):
            return
        self.refuse(
            node,
            "%s cannot be frozen, so it cannot be kept in a variable or looped over by a for statement "
            "(the job can stop at each iteration): %s" % (what, fix),
        )

    def let_go_at_once(self, node: ast.AST) -> bool:
        """Whether the iterator ``node`` makes is used up, or dropped, before the job can stop."""
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.Call) and node is not parent.func and node in parent.args:
            callee = _callee(parent.func)
            if callee in _USE_UP:
                return True
            if callee in _HOLDERS or callee in ("enumerate", "zip", "iter", "reversed", "islice", "chain"):
                return self.let_go_at_once(parent)
            return False
        return self.iterated_at_once(node)

    def iterated_at_once(self, node: ast.AST) -> bool:
        """Whether ``node`` is the iterable of a comprehension (which runs atomically)."""
        parent = self.parents.get(id(node))
        return isinstance(parent, ast.comprehension) and node is parent.iter

    def lambda_(self, node: ast.Lambda, ctx) -> None:
        a = node.args
        own = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
        own |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        for d in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.expr(d, "lambda defaults cannot call job functions", ctx)
        if ctx is not None and not ctx.nested:  # a nested function's frame is never frozen
            for n in ast.walk(node.body):
                if isinstance(n, ast.Name) and n.id in ctx.names and n.id not in own:
                    self.refuse(
                        n,
                        "a lambda may not capture the local variable %r "
                        "(pass it as a default argument: lambda ..., %s=%s: ...)" % (n.id, n.id, n.id),
                    )
        self.expr(node.body, "a lambda runs atomically and cannot call job functions", None)


# -- held values in containers ----------------------------------------------------------------------
#
# held.py freezes a bound method, an iterator, a re.Match, an exception... held directly in a local
# variable; inside a list, dict, tuple, set or object it cannot be frozen, and the job would stop at
# its first freeze.  The validator refuses what it can see at submission: such a value made (or held
# in a variable made from one) and put straight into a container.

# methods of the built-in types and of re's patterns: ``xs.append`` uncalled is a bound method
_BUILTIN_METHODS = frozenset(
    {"append", "extend", "insert", "pop", "remove", "add", "discard", "update", "get", "setdefault", "keys"}
    | {"values", "items", "index", "count", "appendleft", "popleft", "clear", "copy", "sort", "reverse"}
    | {"match", "search", "fullmatch", "sub", "split", "findall", "join", "format", "startswith", "endswith"}
    | {"strip", "lower", "upper", "replace", "issubset", "issuperset", "union", "intersection", "difference"}
)
_ITERATOR_MAKERS = frozenset({"iter", "enumerate", "zip", "map", "filter", "reversed"})
_ITERTOOLS = frozenset(
    {"count", "cycle", "repeat", "chain", "islice", "permutations", "combinations", "product", "accumulate"}
    | {"combinations_with_replacement", "compress", "starmap", "takewhile", "dropwhile", "zip_longest"}
)
_PUT = frozenset({"append", "insert", "add", "appendleft", "setdefault", "heappush", "push"})
_WHAT = {
    "method": ("a bound method", "keep the object instead, and call its method when needed"),
    "iter": ("an iterator", "keep a list, or an index into it, instead"),
    "match": ("a re.Match", "keep what you need of it (m.group(...), m.span(), or None) instead"),
    "exc": ("an exception", "keep its message or args (str(e), e.args) instead"),
    "view": ("a dict view", "keep the dict, or list(d.items()), instead"),
}


def _data_attributes(info: ModuleInfo) -> Set[str]:
    """The attribute names the module's functions and classes assign, and its class-level fields: an
    ``obj.items`` of these is data, not a bound method."""
    cached = getattr(info, "_data_attrs", None)
    if cached is not None:
        return cached
    out: Set[str] = set()
    for top in list(info.functions.values()) + list(info.classes.values()):
        for n in ast.walk(top):
            if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                for t in n.targets if isinstance(n, ast.Assign) else [n.target]:
                    out |= {a.attr for a in ast.walk(t) if isinstance(a, ast.Attribute)}
        if isinstance(top, ast.ClassDef):
            out |= {s.target.id for s in top.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
            out |= {t.id for s in top.body if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)}
    info._data_attrs = out  # type: ignore[attr-defined]
    return out


def held_in_containers(fn: ast.FunctionDef, info: ModuleInfo, modules: Dict[str, str]) -> List[Tuple[int, str]]:
    """Where ``fn`` puts a value held.py can only freeze in a local variable into a container."""
    facts = getattr(info, "_held_facts", None)  # once per module: a module may have 2,000 defs
    if facts is None:
        facts = info._held_facts = (  # type: ignore[attr-defined]
            {  # not a @property (or its setter): its value is data
                s.name
                for c in info.classes.values()
                for s in c.body
                if isinstance(s, ast.FunctionDef)
                and not any(
                    (isinstance(d, ast.Name) and d.id == "property") or isinstance(d, ast.Attribute)
                    for d in s.decorator_list
                )
            },
            _data_attributes(info),
            {
                name
                for name, c in info.classes.items()
                if any(isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id == "Exception") for b in c.bases)
            },
        )
    methods, data_attrs, exceptions = facts

    def kind(e: ast.AST, names: Dict[str, str]) -> Optional[str]:
        if isinstance(e, ast.Name):
            return names.get(e.id)
        if isinstance(e, ast.Attribute) and isinstance(e.ctx, ast.Load):
            if isinstance(e.value, ast.Name) and (e.value.id in modules or e.value.id in info.classes):
                return None
            if e.attr in data_attrs:
                return None
            return "method" if e.attr in _BUILTIN_METHODS or e.attr in methods else None
        if not isinstance(e, ast.Call):
            return None
        f, callee = e.func, _callee(e.func)
        if isinstance(f, ast.Name) and f.id in info.functions:
            return returns.get(f.id)  # a job function that returns such a value
        if isinstance(f, ast.Name) and f.id in info.classes.keys() - exceptions:
            return None
        if isinstance(f, ast.Name) and callee in _ITERATOR_MAKERS:
            return "iter"
        if callee in _ITERTOOLS and (isinstance(f, ast.Name) or _callee(getattr(f, "value", f)) in modules):
            return "iter"
        if isinstance(f, ast.Attribute) and callee in ("match", "search", "fullmatch"):
            return "match"
        if isinstance(f, ast.Attribute) and callee in ("keys", "values", "items") and not e.args:
            return "view"
        if isinstance(f, ast.Name) and (
            callee in exceptions
            or (
                isinstance(getattr(builtins, callee, None), type)
                and issubclass(getattr(builtins, callee), BaseException)
            )
        ):
            return "exc"
        return None

    def nodes_of(f: ast.FunctionDef) -> List[ast.AST]:
        found = getattr(f, "_tk_nodes", None)  # walked once, for the pre-pass and the check
        if found is None:
            found = f._tk_nodes = list(ast.walk(f))  # type: ignore[attr-defined]
        return found

    def bound(f: ast.FunctionDef) -> Dict[str, str]:
        """The names bound (anywhere in ``f``) to such a value; except handlers bind exceptions."""
        names: Dict[str, str] = {}
        binds = [
            n
            for n in nodes_of(f)
            if isinstance(n, ast.ExceptHandler)
            or (isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name))
        ]
        for _ in range(2):
            for n in binds:
                if isinstance(n, ast.ExceptHandler):
                    if n.name:
                        names[n.name] = "exc"
                elif isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name):
                    k = kind(n.value, names)
                    if k is not None:
                        names[n.targets[0].id] = k
        return names

    # the job functions that return such a value (once per module; two passes for one level of calls)
    returns: Dict[str, str] = getattr(info, "_held_returns", None) or {}
    if not hasattr(info, "_held_returns"):
        for _ in range(2):
            for fname, f in info.functions.items():
                fnames = bound(f)
                for n in nodes_of(f):
                    if isinstance(n, ast.Return) and n.value is not None:
                        k = kind(n.value, fnames)
                        if k is not None:
                            returns[fname] = k
        info._held_returns = returns  # type: ignore[attr-defined]
    names = bound(fn)
    out: List[Tuple[int, str]] = []

    def put(e: ast.AST, where: str) -> None:
        k = kind(e, names)
        if k is not None:
            what, fix = _WHAT[k]
            out.append(
                (
                    getattr(e, "lineno", fn.lineno),
                    "%s cannot be frozen inside %s (only directly in a local variable): %s" % (what, where, fix),
                )
            )

    unpacked = {
        id(n.value)
        for n in nodes_of(fn)
        if isinstance(n, ast.Assign)
        and isinstance(n.value, (ast.Tuple, ast.List))
        and all(isinstance(t, (ast.Tuple, ast.List)) and len(t.elts) == len(n.value.elts) for t in n.targets)
    }
    for n in nodes_of(fn):
        if isinstance(n, (ast.List, ast.Tuple, ast.Set)) and isinstance(
            n.ctx if hasattr(n, "ctx") else ast.Load(), ast.Load
        ):
            if id(n) not in unpacked:
                for x in n.elts:
                    put(x, "a list, tuple or set")
        elif isinstance(n, ast.Dict):
            for part in list(n.keys) + list(n.values):
                if part is not None:
                    put(part, "a dict")
        elif isinstance(n, (ast.ListComp, ast.SetComp)):
            put(n.elt, "a list or set")
        elif isinstance(n, ast.DictComp):
            put(n.value, "a dict")
        elif isinstance(n, ast.Call) and _callee(n.func) in _PUT and isinstance(n.func, ast.Attribute):
            for x in n.args:
                put(x, "a container")
        elif isinstance(n, ast.Call) and _callee(n.func) == "heappush":
            for x in n.args[1:]:
                put(x, "a container")
        elif isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and n.value is not None:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, (ast.Subscript, ast.Attribute)) for t in targets):
                put(n.value, "a container or an object")
    return out


class _Ctx:
    def __init__(self, fn, names, method, generator_entry, no_calls=None, nested=False):
        self.fn = fn
        self.names = names
        self.method = method
        self.generator_entry = generator_entry
        self.no_calls = no_calls
        self.nested = nested  # the body of a nested function: it runs at once, never frozen

    def child(self, no_calls):
        return _Ctx(self.fn, self.names, self.method, self.generator_entry, no_calls, self.nested)


def method_entry(tree: ast.Module, entry: str) -> str:
    """A job whose entry is ``Class.method``, a @staticmethod or @classmethod of a top-level class:
    add to ``tree`` a top-level copy of the method, ``Class__method`` (a classmethod's first parameter
    replaced by the class), and return its name, the job's entry function.  The method itself stays in
    the class (other code may call it).  Raises JobRefused for anything else."""
    cls_name, _, name = entry.partition(".")
    line = tree.body[0].lineno if tree.body else 1
    if not (cls_name.isidentifier() and name.isidentifier()):
        raise JobRefused([(line, "the entry %r is neither a function name nor Class.method" % entry)])
    klass = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    if klass is None:
        raise JobRefused([(line, "the job module has no top-level class named %r (entry %r)" % (cls_name, entry))])
    method = next((n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if method is None:
        raise JobRefused([(klass.lineno, "class %s has no method %r (entry %r)" % (cls_name, name, entry))])
    kinds = [d.id for d in method.decorator_list if isinstance(d, ast.Name)]
    if len(method.decorator_list) != 1 or kinds[:1] not in (["staticmethod"], ["classmethod"]):
        raise JobRefused(
            [
                (
                    method.lineno,
                    "%s is a plain method: a job's entry may be a function, a @staticmethod or a @classmethod; "
                    "write a top-level function that builds the %s and returns its %s(...)" % (entry, cls_name, name),
                )
            ]
        )
    fn = copy.deepcopy(method)
    fn.name = "%s__%s" % (cls_name, name)
    fn.decorator_list = []
    taken = {getattr(n, "name", None) for n in tree.body} | {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    if fn.name in taken:
        raise JobRefused([(method.lineno, "the entry %s needs the name %r, which the module uses" % (entry, fn.name))])
    if kinds == ["classmethod"]:
        a = fn.args
        first = (a.posonlyargs + a.args)[:1]
        if not first:
            raise JobRefused([(method.lineno, "the classmethod %s takes no class parameter" % entry)])
        own = first[0].arg
        if a.posonlyargs:
            a.posonlyargs = a.posonlyargs[1:]
        else:
            a.args = a.args[1:]
        for n in ast.walk(fn):
            if isinstance(n, ast.Name) and n.id == own:
                if not isinstance(n.ctx, ast.Load):
                    raise JobRefused([(n.lineno, "the classmethod entry %s may not rebind %r" % (entry, own))])
                n.id = cls_name
    # its own recursive calls (Class.method(...), cls.method(...)) become job calls of the copy
    for n in ast.walk(fn):
        for field, value in ast.iter_fields(n):
            if (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == cls_name
                and value.attr == name
            ):
                setattr(n, field, ast.copy_location(ast.Name(id=fn.name, ctx=ast.Load()), value))
    # nothing else names the method: it leaves the class, so that it may call the job's functions
    # (a method may not: it runs at once)
    inside = {id(n) for n in ast.walk(method)}
    if not any(isinstance(n, ast.Attribute) and n.attr == name and id(n) not in inside for n in ast.walk(tree)):
        klass.body = [s for s in klass.body if s is not method] or [ast.copy_location(ast.Pass(), method)]
    tree.body.append(fn)
    return fn.name


def check_module(source: str, entry: str) -> Tuple[ast.Module, ModuleInfo]:
    """Parse and check a job module; raise :class:`JobRefused` with every problem."""
    if not isinstance(source, str):
        raise JobRefused([(0, "the job source must be text")])
    try:
        tree = ast.parse(source, filename="<job>")
    except SyntaxError as exc:
        raise JobRefused([(exc.lineno or 0, "syntax error: %s" % exc.msg)]) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise JobRefused([(0, "cannot parse the job source: %s" % exc)]) from None
    if "." in entry:
        entry = method_entry(tree, entry)
    checker = _Checker(tree, entry)
    info = checker.run()
    # APIs and syntax of the market's Python that the oldest worker Python lacks (apiversions.py)
    checker.problems += apiversions.problems(tree)
    if checker.problems:
        raise JobRefused(checker.problems)
    return tree, info
