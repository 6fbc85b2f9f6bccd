"""Loop iterators frozen as their own position, never as the items they would still give.

A ``for`` loop's iterator is described, when (and only when) the job is frozen, as a small
plain-data descriptor that shares the live objects it iterates (the codec keeps shared
references, so after a thaw the list in the descriptor is the very list in the frame's locals):

    ["range", current, stop, step]
    ["seq", sequence, index]            list/tuple/str/bytes/bytearray iterators
    ["rev", sequence, index]            reversed(list/tuple); index -1 when exhausted
    ["enum", inner, count]              enumerate
    ["zip", [inner, ...], strict]       zip
    ["map", function, [inner, ...]]     map
    ["filter", function-or-None, inner] filter
    ["dict", dict, view, consumed]      iterators over a dict or its keys/values/items views
    ["rest", [item, ...]]               set/frozenset iterators (a set cannot change while it is
                                        iterated, so its remaining items are exact) and iterators
                                        of unknown types (materialized: finite ones only)

where ``inner`` is again a descriptor and ``function`` a reference by name: ["b", name] (a
builtin), ["g", name] (a job function or class of the module), ["m", module, name] (operator,
math).  Builtin iterators are read through their ``__reduce__``, which CPython and PyPy both keep
for these types (only itertools' pickling is going away); range iterators take both interpreters'
forms; dict iterators are found through ``gc.get_referents`` and positioned by how many entries
they have given, which is exact because a dict cannot change size while it is iterated.
"""

from __future__ import annotations

import builtins
import collections
import gc
import itertools as _itertools
import math
import operator

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Dict, List, Tuple

__all__ = ["FreezeError", "freeze_loop", "thaw_loop", "describe", "thaw", "valid"]

KINDS = frozenset({"range", "seq", "rev", "enum", "zip", "map", "filter", "dict", "rest"})
_SEQUENCES = (list, tuple, str, bytes, bytearray)
_DICT_ITERATORS: Dict[type, int] = {
    type(iter({}.keys())): 0,
    type(iter({}.values())): 1,
    type(iter({}.items())): 2,
}
_SET_ITERATOR: type = type(iter(set()))
_RANGE_ITERATOR = type(iter(range(1)))
_LONGRANGE_ITERATOR = type(iter(range(1 << 70)))
_MODULES = {"operator": operator, "math": math}


class FreezeError(ValueError):
    """A loop iterator that cannot be described exactly (the message says which and why)."""


def _function_ref(f: Any, ns: Dict[str, Any]) -> Any:
    if f is None:
        return None
    name = getattr(f, "__name__", None)
    if type(name) is str:
        if getattr(builtins, name, None) is f:
            return ["b", name]
        if ns.get(name) is f:
            return ["g", name]
        for mname, module in _MODULES.items():
            if getattr(module, name, None) is f:
                return ["m", mname, name]
    raise FreezeError(
        "a loop over map()/filter() of %r cannot be frozen: only the module's own functions, builtins "
        "and operator/math functions can be (name the function at the top level of the module)" % (f,)
    )


def _function(ref: Any, ns: Dict[str, Any]) -> Any:
    if ref is None:
        return None
    if ref[0] == "b":
        return getattr(builtins, ref[1])
    if ref[0] == "g":
        return ns[ref[1]]
    return getattr(_MODULES[ref[1]], ref[2])


def _range(cur: int, stop: int, step: int) -> List[Any]:
    return ["range", cur, stop, step]


def describe(it: Any, ns: Dict[str, Any]) -> List[Any]:
    """The descriptor of the live iterator ``it`` (it is not advanced)."""
    t = type(it)
    kind = _DICT_ITERATORS.get(t)
    if kind is not None:
        d = next(x for x in gc.get_referents(it) if type(x) is dict)
        return ["dict", d, kind, len(d) - operator.length_hint(it)]
    if t is _SET_ITERATOR:
        return ["rest", list(it.__reduce__()[1][0])]
    try:
        r = it.__reduce__()
    except Exception:
        r = None
    if type(r) is tuple and len(r) >= 2:
        maker, args = r[0], r[1]
        state = r[2] if len(r) > 2 else None
        if maker is builtins.iter and len(args) == 1:
            seq = args[0]
            if type(seq) is range:  # CPython's range iterators: the range and an index
                i = state or 0
                return _range(seq.start + i * seq.step, seq.stop, seq.step)
            if type(seq) in _SEQUENCES and t is not _SET_ITERATOR:
                return ["seq", seq, state if state is not None else len(seq)]
        name = getattr(maker, "__name__", "")
        if name == "intrangeiter_new":  # PyPy: (current, remaining, step)
            cur, remaining, step = args
            return _range(cur, cur + remaining * step, step)
        if name == "longrangeiter_new":  # PyPy: (start, step, length), state = index
            start, step, length = args[:3]
            i = state or 0
            return _range(start + i * step, start + length * step, step)
        if maker is enumerate:
            return ["enum", describe(args[0], ns), args[1]]
        if maker is zip:
            return ["zip", [describe(x, ns) for x in args], bool(state)]
        if maker is map:
            return ["map", _function_ref(args[0], ns), [describe(x, ns) for x in args[1:]]]
        if maker is filter:
            return ["filter", _function_ref(args[0], ns), describe(args[1], ns)]
        if maker is reversed:
            seq = args[0]
            return ["rev", seq, state if state is not None else -1]
    if t is _RANGE_ITERATOR or t is _LONGRANGE_ITERATOR:
        raise FreezeError("a range iterator of this interpreter cannot be read")
    # unknown kinds (generator expressions...): their remaining items, as before this module
    return ["rest", list(it)]


def thaw(desc: List[Any], ns: Dict[str, Any]) -> Any:
    """A live iterator at the position ``desc`` describes."""
    kind = desc[0]
    if kind == "range":
        return iter(range(desc[1], desc[2], desc[3]))
    if kind == "seq":
        seq, index = desc[1], desc[2]
        it = iter(seq)
        if index:
            try:
                it.__setstate__(index)
            except (AttributeError, TypeError):
                collections.deque(_itertools.islice(it, index), maxlen=0)
        return it
    if kind == "rev":
        it = reversed(desc[1])
        it.__setstate__(desc[2])
        return it
    if kind == "enum":
        return enumerate(thaw(desc[1], ns), desc[2])
    if kind == "zip":
        inner = [thaw(d, ns) for d in desc[1]]
        return zip(*inner, strict=True) if desc[2] else zip(*inner)
    if kind == "map":
        return map(_function(desc[1], ns), *[thaw(d, ns) for d in desc[2]])
    if kind == "filter":
        return filter(_function(desc[1], ns), thaw(desc[2], ns))
    if kind == "dict":
        d, view, consumed = desc[1], desc[2], desc[3]
        it = iter(d.keys() if view == 0 else d.values() if view == 1 else d.items())
        collections.deque(_itertools.islice(it, consumed), maxlen=0)
        return it
    return iter(desc[1])  # "rest"


def freeze_loop(seq: Any, it: Any, ns: Dict[str, Any]) -> List[Any]:
    """The descriptor of a for loop's iterator ``it`` over ``seq`` (the loop's iterable)."""
    t = type(seq)
    if t is range:
        index = len(seq) - operator.length_hint(it)
        return _range(seq.start + index * seq.step, seq.stop, seq.step)
    if t in _SEQUENCES and it is not seq:
        return ["seq", seq, len(seq) - operator.length_hint(it)]
    return describe(it, ns)


def thaw_loop(desc: List[Any], ns: Dict[str, Any]) -> Tuple[Any, Any]:
    """(iterable, iterator) of a for loop, as :func:`freeze_loop` described it."""
    if desc[0] == "range":
        seq = range(desc[1], desc[2], desc[3])
        return seq, iter(seq)
    if desc[0] == "seq":
        return desc[1], thaw(desc, ns)
    it = thaw(desc, ns)
    return it, it


def _valid_ref(ref: Any) -> bool:
    if ref is None:
        return True
    if type(ref) is not list or not ref or not all(type(x) is str for x in ref):
        return False
    if ref[0] in ("b", "g"):
        return len(ref) == 2 and (ref[0] == "g" or hasattr(builtins, ref[1]))
    return ref[0] == "m" and len(ref) == 3 and ref[1] in _MODULES and hasattr(_MODULES[ref[1]], ref[2])


def valid(desc: Any, depth: int = 0) -> bool:
    """Whether ``desc`` is a descriptor this module could have made."""
    if type(desc) is not list or not desc or desc[0] not in KINDS or depth > 100:
        return False
    kind, n = desc[0], len(desc)
    if kind == "range":
        return n == 4 and all(type(x) is int for x in desc[1:]) and desc[3] != 0
    if kind == "seq":
        return n == 3 and type(desc[1]) in _SEQUENCES and type(desc[2]) is int and desc[2] >= 0
    if kind == "rev":
        return n == 3 and type(desc[1]) in (list, tuple) and type(desc[2]) is int and desc[2] >= -1
    if kind == "enum":
        return n == 3 and type(desc[2]) is int and valid(desc[1], depth + 1)
    if kind == "zip":
        return n == 3 and type(desc[1]) is list and type(desc[2]) is bool and all(valid(d, depth + 1) for d in desc[1])
    if kind == "map":
        return (
            n == 3
            and _valid_ref(desc[1])
            and desc[1] is not None
            and type(desc[2]) is list
            and all(valid(d, depth + 1) for d in desc[2])
        )
    if kind == "filter":
        return n == 3 and _valid_ref(desc[1]) and valid(desc[2], depth + 1)
    if kind == "dict":
        return n == 4 and type(desc[1]) is dict and desc[2] in (0, 1, 2) and type(desc[3]) is int and desc[3] >= 0
    return n == 2 and type(desc[1]) is list  # "rest"
