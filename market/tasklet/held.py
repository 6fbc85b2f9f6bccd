"""Values a frame's local variable may hold that are not data: frozen as what rebuilds them.

The validator cannot tell them from the text (``push = xs.append``, ``it = iter(xs)``,
``err = ValueError(...)``, ``m = LINE.match(line)``), so they are accepted; this module freezes
them, when they are held directly in a local variable at a stopping point, as an instance of the
reserved class ``_tk_held`` (plain data in its ``__dict__``, written by the codec like any
instance, so the object it refers to keeps its identity with every other reference to it in the
state):

    {"k": "method", "obj": obj, "name": name}      a bound method: its object and the method's name
    {"k": "exc", "cls": cls, "args": [...], "attrs": {...}}
                                                   an exception instance: its class (by reference),
                                                   its args and its attributes (not its traceback,
                                                   __cause__ or __context__)
    {"k": "iter", "desc": descriptor}              a builtin iterator, as iterators.py describes it
                                                   (a loop over the same iterator shares it)
    {"k": "match", "pattern", "flags", "s", "pos", "endpos", "how", "name"}
                                                   a re.Match: found again by the same call
    {"k": "pattern", "pattern", "flags", "name"}   a compiled re.Pattern (re.compile's cached one)
    {"k": "view", "d": dict, "v": 0|1|2}           d.keys() / d.values() / d.items()
    {"k": "slice", "a": [start, stop, step]}       a slice object
    {"k": "global", "name": name}                  an object() (or another value above) that is
                                                   the module's global ``name``: the same object
    {"k": "object"}                                an object() made while the job ran (a sentinel:
                                                   every reference to it thaws to one new object)
    {"k": "const", "name": "NotImplemented"|"Ellipsis"}

A value inside a container (a bound method in a list) is not covered: freezing it fails with the
codec's message, as before.  Each value held by several locals (or by a local and a loop) is one
``_tk_held`` instance, and thaws to one object.
"""

from __future__ import annotations

import gc
import re

from . import iterators
from .codec import CodecError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Callable, Dict, Optional

__all__ = ["HELD_CLASSES", "wrap_locals", "unwrap_locals", "valid"]

_PATTERN = re.compile("")
_PATTERN_TYPE = type(_PATTERN)
_MATCH = type(_PATTERN.match(""))
_SAMPLE_ITERATORS: tuple = (
    iter([]),
    iter(()),
    iter(""),
    iter(b""),
    iter(bytearray()),
    iter(range(1)),
    iter(range(1 << 70)),
    iter(set()),
    iter({}),
    iter({}.values()),
    iter({}.items()),
    enumerate([]),
    zip(),
    map(abs, []),
    filter(None, []),
    reversed([]),
    reversed(()),
    reversed({}),
    reversed({}.values()),
    reversed({}.items()),
    (c for c in ""),  # these two refuse to freeze, with iterators.py's message
    iter(int, 1),
)
_ITERATORS: frozenset[type] = frozenset(type(x) for x in _SAMPLE_ITERATORS)
_PLAIN = frozenset((int, float, str, bool, type(None), list, dict, tuple, set, frozenset, bytes))
_BUILTIN_METHOD: type = type([].append)  # CPython: builtin_function_or_method; PyPy: method


class _Probe:
    def m(self) -> None:
        pass


_METHOD = type(_Probe().m)  # a bound method of a class's function
_KINDS = frozenset({"method", "exc", "iter", "match", "pattern", "view", "slice", "global", "object", "const"})
_VIEWS = {type({}.keys()): 0, type({}.values()): 1, type({}.items()): 2}
_CONSTS = {"NotImplemented": NotImplemented, "Ellipsis": Ellipsis}


class _tk_held:
    """A held value's recipe (``__dict__``) and, once rebuilt or while frozen, the value (``_live``)."""

    __slots__ = ("__dict__", "__weakref__", "_live")
    _live: Any

    def live(self) -> Any:
        try:
            return self._live
        except AttributeError:
            pass
        self._live = value = _rebuild(self.__dict__)
        _REBUILT[id(value)] = self  # frozen again as this very object: see wrap_locals
        return value

    def __iter__(self) -> Any:  # a loop's descriptor ["obj", held]: iterators.thaw calls iter()
        return self.live()


HELD_CLASSES = {"_tk_held": _tk_held}
_REBUILT: Dict[int, _tk_held] = {}  # id of a value rebuilt this slice -> its _tk_held


def bind() -> None:
    """Start a slice."""
    _REBUILT.clear()


def _recipe(v: Any, ns: Dict[str, Any], name_of: Callable[[object], Optional[str]]) -> Optional[Dict[str, Any]]:
    t = type(v)
    if t in _PLAIN:
        return None
    if t in _ITERATORS or t is iterators._SetRest:
        return {"k": "iter", "desc": iterators.describe(v, ns)}
    if t is object or t is _PATTERN_TYPE:
        # the module's own (a sentinel _MISSING = object(), LINE = re.compile(...)), by its name
        name = next((k for k, x in ns.items() if x is v and not k.startswith("_tk_")), "")
        if t is object:
            return {"k": "global", "name": name} if name else {"k": "object"}
        return {"k": "pattern", "pattern": v.pattern, "flags": _flags(v), "name": name}
    view = _VIEWS.get(t)
    if view is not None:
        d = next((x for x in gc.get_referents(v) if isinstance(x, dict)), None)
        return None if d is None else {"k": "view", "d": d, "v": view}
    if t is slice:
        return {"k": "slice", "a": [v.start, v.stop, v.step]}
    if v is NotImplemented or v is Ellipsis:
        return {"k": "const", "name": "NotImplemented" if v is NotImplemented else "Ellipsis"}
    if t is _MATCH:
        return _match_recipe(v, ns)
    if isinstance(v, BaseException):
        attrs = getattr(v, "__dict__", {})
        if type(attrs) is not dict or getattr(v, "__notes__", None):
            return None
        return {"k": "exc", "cls": t, "args": list(v.args), "attrs": dict(attrs)}
    if t is not _BUILTIN_METHOD and t is not _METHOD:  # (never __getattr__ of a job's class)
        return None
    owner = getattr(v, "__self__", None)
    method_name: Optional[str] = getattr(v, "__name__", None)
    if (
        owner is not None
        and callable(v)
        and isinstance(method_name, str)
        and not method_name.startswith("_")
        and type(owner) is not type(re)  # a module's function (max): by reference
        and name_of(v) is None  # named by refs.py (the job's random.choice...)
    ):
        try:
            same = getattr(owner, method_name) == v
        except Exception:
            same = False
        if same:
            return {"k": "method", "obj": owner, "name": method_name}
    return None


def _match_recipe(m: Any, ns: Dict[str, Any]) -> Dict[str, Any]:
    p = m.re
    # the module's own pattern (LINE = re.compile(...)) by its name, so that m.re is LINE stays true
    name = next((k for k, v in ns.items() if v is p and not k.startswith("_tk_")), "")
    flags = _flags(p)
    for how in ("search", "fullmatch"):  # search also finds what match() found
        again = getattr(p, how)(m.string, m.pos, m.endpos)
        if again is not None and again.regs == m.regs:
            return {
                "k": "match",
                "pattern": p.pattern,
                "flags": flags,
                "s": m.string,
                "pos": m.pos,
                "endpos": m.endpos,
                "how": how,
                "name": name,
            }
    raise iterators.FreezeError(
        "a re.Match that is not the first match from its pos (finditer's) cannot be frozen in a "
        "local variable: keep what you need of it (m.group(...), m.span()) in variables instead"
    )


def _flags(p: Any) -> int:
    """The flags to give re.compile for ``p`` (a str pattern's re.UNICODE left out: its cache key)."""
    return int(p.flags & ~re.UNICODE if type(p.pattern) is str else p.flags)


def _pattern(r: Dict[str, Any]) -> Any:
    p = iterators._NS.get(r["name"]) if r["name"] else None
    if type(p) is not _PATTERN_TYPE or p.pattern != r["pattern"]:
        p = re.compile(r["pattern"], r["flags"])
    return p


def _rebuild(r: Dict[str, Any]) -> Any:
    k = r["k"]
    if k == "pattern":
        return _pattern(r)
    if k == "view":
        d = r["d"]
        return d.keys() if r["v"] == 0 else d.values() if r["v"] == 1 else d.items()
    if k == "slice":
        return slice(*r["a"])
    if k == "global":
        if type(iterators._NS.get(r["name"])) is not object:
            raise ValueError("the module has no object() named %r" % r["name"])
        return iterators._NS[r["name"]]
    if k == "object":
        return object()
    if k == "const":
        return _CONSTS[r["name"]]
    if k == "iter":
        return iterators.thaw(r["desc"], iterators._NS)
    if k == "match":
        p = _pattern(r)
        return getattr(p, r["how"])(r["s"], r["pos"], r["endpos"])
    if k == "exc":
        cls, args = r["cls"], tuple(r["args"])
        e = cls.__new__(cls, *args)
        e.args = args
        e.__dict__.update(r["attrs"])
        return e
    return getattr(r["obj"], r["name"])


def valid(h: Any) -> bool:
    """Whether ``h`` (a _tk_held from a decoded state) is a recipe this module could have made."""
    r = getattr(h, "__dict__", None)
    if type(h) is not _tk_held or type(r) is not dict or r.get("k") not in _KINDS:
        return False
    k = r["k"]
    if k == "iter":
        return set(r) == {"k", "desc"} and iterators.valid(r["desc"])
    if k == "match":
        return (
            set(r) == {"k", "pattern", "flags", "s", "pos", "endpos", "how", "name"}
            and type(r["name"]) is str
            and type(r["pattern"]) in (str, bytes)
            and type(r["s"]) is type(r["pattern"])
            and all(type(r[x]) is int for x in ("flags", "pos", "endpos"))
            and r["how"] in ("search", "fullmatch")
        )
    if k == "pattern":
        return (
            set(r) == {"k", "pattern", "flags", "name"}
            and type(r["pattern"]) in (str, bytes)
            and type(r["flags"]) is int
            and type(r["name"]) is str
        )
    if k == "view":
        return set(r) == {"k", "d", "v"} and isinstance(r["d"], dict) and r["v"] in (0, 1, 2)
    if k == "slice":
        return set(r) == {"k", "a"} and type(r["a"]) is list and len(r["a"]) == 3
    if k == "global":
        return set(r) == {"k", "name"} and type(r["name"]) is str
    if k == "object":
        return set(r) == {"k"}
    if k == "const":
        return set(r) == {"k", "name"} and r["name"] in _CONSTS
    if k == "exc":
        return (
            set(r) == {"k", "cls", "args", "attrs"}
            and isinstance(r["cls"], type)
            and issubclass(r["cls"], BaseException)
            and type(r["args"]) is list
            and type(r["attrs"]) is dict
            and all(type(a) is str and not a.startswith("__") for a in r["attrs"])
        )
    return set(r) == {"k", "obj", "name"} and type(r["name"]) is str and not r["name"].startswith("_")


def wrap_locals(
    local_vars: Dict[str, Any], memo: Dict[int, Any], ns: Dict[str, Any], name_of: Callable[[object], Optional[str]]
) -> Dict[str, Any]:
    """``local_vars`` with each held value replaced by its ``_tk_held`` (one per value, in ``memo``
    across the frames); a held iterator is registered with iterators.py, so that a loop over it
    (or an enumerate of it...) is described as the same ``_tk_held``."""
    out = {}
    for name, v in local_vars.items():
        h = memo.get(id(v))
        if h is None:
            recipe = _recipe(v, ns, name_of)
            if recipe is not None:
                # a value thawed from a _tk_held that an outer frame (not thawed yet) still holds
                # is that same _tk_held, with its recipe brought up to date
                h = _REBUILT.get(id(v))
                if h is None or getattr(h, "_live", None) is not v:
                    h = _tk_held()
                    h._live = v
                _remember(h, recipe, memo)
        out[name] = v if h is None else h
    return out


def _remember(h: _tk_held, recipe: Dict[str, Any], memo: Dict[int, Any]) -> None:
    h.__dict__.clear()
    h.__dict__.update(recipe)
    memo[id(h._live)] = h
    if recipe["k"] == "iter":
        iterators.hold(h._live, h)


def refresh_pending(frames: Any, memo: Dict[int, Any], ns: Dict[str, Any], name_of: Any) -> None:
    """Bring up to date the recipes of the held values rebuilt this slice that the frames not
    thawed yet (``frames``, as decoded) hold: the frame that rebuilt one may have changed it."""
    for fr in frames:
        for v in fr[2].values():
            if type(v) is _tk_held and hasattr(v, "_live") and id(v._live) not in memo:
                recipe = _recipe(v._live, ns, name_of)
                if recipe is None:  # cannot happen: it was made from such a recipe
                    raise CodecError("a held value changed kind")
                _remember(v, recipe, memo)


def unwrap_locals(local_vars: Dict[str, Any]) -> Dict[str, Any]:
    """The frame's locals with each ``_tk_held`` rebuilt (once: shared ones stay one object)."""
    if not any(type(v) is _tk_held for v in local_vars.values()):
        return local_vars
    try:
        return {k: v.live() if type(v) is _tk_held else v for k, v in local_vars.items()}
    except (TypeError, ValueError, AttributeError, KeyError, re.error) as exc:
        raise CodecError("a held value cannot be rebuilt: %s: %s" % (type(exc).__name__, exc)) from None


iterators.HELD_VALID = valid  # iterators.valid checks a loop over a held iterator with it
