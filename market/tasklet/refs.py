"""Functions, classes and modules frozen by reference.

A job may hold a builtin (``f = max``), a function or class of an allowed module
(``OPS = {"+": operator.add}``), one of its own classes, a module, or a lambda
written at the module's top level, in a local variable or a module-level
container.  None of these is data; each is frozen as a name and thawed to the
same object of the freshly loaded module:

* ``job:Name`` - a class of the job module; ``job:Name.method`` - a function of its body;
* ``lambda:K`` - the K-th lambda (or itemgetter(...), partial(...)...) the top level made (the compiler
  wraps each top-level lambda in ``_tk_lambda(...)``; the top level is
  deterministic, so it creates them in the same order every slice);
* ``mod:name`` - an allowed module;
* ``name:attr`` - a public attribute of ``builtins`` or of an allowed module the
  job imports (``operator:add``); ``builtins:str.lower`` - a method of a builtin type.

Names are looked up in a fixed order (the job's own objects, modules, builtins,
then modules by name), so the same state gets the same bytes in every process.
"""

from __future__ import annotations

import builtins
import importlib
import sys

from .codec import CodecError
from .validator import FORBIDDEN_NAMES

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Dict, Iterable, List, Optional, Tuple

__all__ = ["References"]

_FUNCTION = type(lambda: None)
_DATA = (int, float, complex, str, bytes, bool, type(None), tuple, list, dict, set, frozenset)


class References:
    """The names of the values a job may hold by reference (built on first use)."""

    def __init__(self, ns: Dict[str, Any], classes: Iterable[str], modules: Iterable[str]) -> None:
        self.ns = ns
        self.classes = tuple(classes)
        self.modules = tuple(sorted(set(modules)))  # the allowed modules the job imports
        self.lambdas: List[Any] = []
        self._names: Optional[Dict[int, Tuple[object, str]]] = None

    def register(self, fn: Any) -> Any:
        """``_tk_lambda``: remember a lambda made by the module's top level."""
        self.lambdas.append(fn)
        return fn

    def _table(self) -> Dict[int, Tuple[object, str]]:
        names: Dict[int, Tuple[object, str]] = {}

        def add(obj: object, name: str) -> None:
            if id(obj) not in names:
                names[id(obj)] = (obj, name)

        for cname in self.classes:
            cls = self.ns.get(cname)
            if isinstance(cls, type):
                add(cls, "job:" + cname)
                for attr in sorted(vars(cls)):  # Class.method, a plain function (staticmethods too)
                    if not attr.startswith("__") and type(getattr(cls, attr, None)) is _FUNCTION:
                        add(getattr(cls, attr), "job:%s.%s" % (cname, attr))
        for k, fn in enumerate(self.lambdas):
            add(fn, "lambda:%d" % k)
        loaded = [(m, self.module(m)) for m in self.modules]
        for m, mod in loaded:
            add(mod, "mod:" + m)
        for m, mod in [("builtins", builtins)] + loaded:
            for attr in sorted(dir(mod)):
                if attr.startswith("_") or attr in FORBIDDEN_NAMES:
                    continue
                value = getattr(mod, attr, None)
                if callable(value) or type(value) is type(sys):
                    add(value, "%s:%s" % (m, attr))
        return names

    def module(self, name: str) -> object:
        """An allowed module; ``random`` is the job's own generator (jobrandom.py)."""
        if name == "random":
            return self.ns["_tk_random"]
        if name == "itertools":  # the job's itertools: the one whose iterators freeze as their state
            from .iterators import ITERTOOLS

            return ITERTOOLS
        return importlib.import_module(name)

    def name_of(self, obj: object) -> Optional[str]:
        """The reference name of ``obj``, or None when it has none (the codec's ``name_of``)."""
        if isinstance(obj, _DATA):
            return None
        if self._names is None:
            self._names = self._table()
        hit = self._names.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        # a method of a builtin type (str.lower): a method_descriptor on CPython, a function on PyPy
        qualname = getattr(obj, "__qualname__", None)
        if type(qualname) is not str or qualname.count(".") != 1:
            return None
        owner_name, _, method = qualname.partition(".")
        owner = getattr(builtins, owner_name, None)
        if owner_name in FORBIDDEN_NAMES or method.startswith("_"):
            return None
        if isinstance(owner, type) and vars(owner).get(method) is obj:
            return "builtins:" + qualname
        return None

    def resolve(self, name: str) -> object:
        """The object ``name`` refers to in this slice's module (the codec's ``resolve``)."""
        kind, _, rest = name.partition(":")
        try:
            cname, _, attr = rest.partition(".")
            if kind == "job" and cname in self.classes:
                cls = self.ns[cname]
                if attr and type(getattr(cls, attr)) is _FUNCTION and not attr.startswith("__"):
                    return getattr(cls, attr)
                if not attr:
                    return cls
            if kind == "lambda":
                return self.lambdas[int(rest)]
            if kind == "mod" and rest in self.modules:
                return self.module(rest)
            if (kind == "builtins" or kind in self.modules) and rest.split(".")[0] not in FORBIDDEN_NAMES:
                obj: object = builtins if kind == "builtins" else self.module(kind)
                for part in rest.split("."):
                    if part.startswith("_"):
                        break
                    obj = getattr(obj, part)
                else:
                    return obj
        except (KeyError, IndexError, ValueError, AttributeError, ImportError):
            pass
        raise CodecError("the state refers to %r, which this Python or this job does not have" % name)
