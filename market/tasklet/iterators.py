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
    ["dict", dict, view, consumed, size] iterators over a dict or its keys/values/items views
                                        (consumed -1: the dict changed size, the next step raises;
                                        size: its size then, so that a change made before the loop's
                                        frame is thawed — a callee's frame resumes first — raises too)
    ["set", set, [item, ...], size]     set/frozenset iterators: the set, its remaining items and its
                                        size at the freeze (size -1: it changed size, the next step
                                        raises; a thawed loop raises RuntimeError, as CPython does, once
                                        the set's size differs from the size it had: _SetRest)
    ["drev", dict, view, consumed, size] reversed() of a dict or of its views, as "dict" (PyPy's
                                        has the forward type: told apart by the items it has left)
    ["rest", [item, ...]]               an exhausted dict or set iterator (older states: a set's items)
    ["obj", instance]                   the job's itertools objects (below)

Any other iterator (a generator, iter(callable, sentinel)) refuses to freeze (FreezeError): its
remaining items, computed at the freeze, could differ from what the loop would have seen.

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
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["FreezeError", "freeze_loop", "thaw_loop", "describe", "thaw", "valid"]

KINDS = frozenset({"range", "seq", "rev", "enum", "zip", "map", "filter", "dict", "drev", "set", "rest", "obj"})
_SEQUENCES = (list, tuple, str, bytes, bytearray)
_DICT_ITERATORS: Dict[type, int] = {
    type(iter({}.keys())): 0,
    type(iter({}.values())): 1,
    type(iter({}.items())): 2,
}
_DICT_REVERSED: Dict[type, int] = {}
_DICT_BOTH_WAYS = set()  # forward iterator types that reversed() makes too (PyPy's key iterator)
for _view, _make in enumerate((lambda d: d.keys(), lambda d: d.values(), lambda d: d.items())):
    _rt = type(reversed(_make({})))
    if _rt not in _DICT_ITERATORS:  # CPython: types of their own
        _DICT_REVERSED[_rt] = _view
    else:
        _DICT_BOTH_WAYS.add(_rt)
_SET_ITERATOR: type = type(iter(set()))
_GENERATOR: type = type(c for c in "")
_RANGE_ITERATOR = type(iter(range(1)))
_LONGRANGE_ITERATOR = type(iter(range(1 << 70)))
_NATIVE_ONLY = frozenset({_itertools.groupby, type(_itertools.tee(())[0])})
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
    if isinstance(it, _Shim):
        return ["obj", it]
    held = _HELD.get(id(it))
    if held is not None and held[0] is it:
        return ["obj", held[1]]
    if t in _NATIVE_ONLY:
        raise FreezeError(
            "a loop over itertools.%s cannot be frozen: iterate over a list of its groups instead" % t.__name__
        )
    kind = _DICT_ITERATORS.get(t)
    if kind is None:
        kind = _DICT_REVERSED.get(t)
    if kind is not None:
        d = next((x for x in gc.get_referents(it) if type(x) is dict), None)
        if d is None:  # exhausted: it let go of its dict
            return ["rest", []]
        # A dict that changed size under its iterator makes the next step raise RuntimeError:
        # CPython's __reduce__ raises it already, PyPy's counts the entries now left, while the
        # length hint still counts from the size the iteration started with.
        try:
            left = list(it.__reduce__()[1][0])
        except RuntimeError:
            return ["dict", d, kind, -1]
        remaining = len(left)
        if remaining != operator.length_hint(it):
            return ["dict", d, kind, -1]
        tag = "drev" if t in _DICT_REVERSED else "dict"
        if remaining and t in _DICT_BOTH_WAYS:  # forward or reversed?
            entries = list(d.keys() if kind == 0 else d.values() if kind == 1 else d.items())
            if entries[len(d) - remaining :] != left and entries[:remaining][::-1] == left:
                tag = "drev"
        return [tag, d, kind, len(d) - remaining, len(d)]
    if t is _SET_ITERATOR or t is _SetRest:
        return _describe_set(it)
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
            if type(args[0]) is list:  # PyPy, enumerate(a_list) from 0: (the list, the index)
                return ["enum", ["seq", args[0], args[1]], args[1]]
            return ["enum", describe(args[0], ns), args[1]]
        if maker is zip:
            return ["zip", [describe(x, ns) for x in args], bool(state)]
        if maker is map and args[0] is _FIRST and len(args) == 2 and type(args[1]) is zip:
            counter = args[1].__reduce__()[1][-1]
            shim = next((x for x in gc.get_referents(counter) if isinstance(x, _Replayed)), None)
            if shim is not None:
                return ["obj", shim]
        if maker is map:
            return ["map", _function_ref(args[0], ns), [describe(x, ns) for x in args[1:]]]
        if maker is filter:
            return ["filter", _function_ref(args[0], ns), describe(args[1], ns)]
        if maker is reversed:
            seq = args[0]
            return ["rev", seq, state if state is not None else -1]
    if t is _RANGE_ITERATOR or t is _LONGRANGE_ITERATOR:
        raise FreezeError("a range iterator of this interpreter cannot be read")
    # Generators (generator expressions) and iter(callable, sentinel): their remaining items would
    # be computed now, from data the loop's body may still change (a wrong answer), or forever.
    raise FreezeError(
        "a loop over a %s cannot be frozen: loop over a list (a list comprehension) or over the "
        "iterable itself instead" % ("generator expression" if t is _GENERATOR else t.__name__)
    )


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
        if consumed < 0:  # it was broken by a size change: so is the thawed one
            return _broken_dict_iterator(view)
        if len(desc) > 4 and len(d) != desc[4]:  # it changed size after the freeze: the next step raises
            return _broken_dict_iterator(view)
        it = iter(d.keys() if view == 0 else d.values() if view == 1 else d.items())
        collections.deque(_itertools.islice(it, consumed), maxlen=0)
        return it
    if kind == "set":
        return _SetRest(desc[1], desc[2], desc[3])
    if kind == "drev":
        d, view, consumed = desc[1], desc[2], desc[3]
        if len(d) != desc[4]:  # it changed size after the freeze: the next step raises
            return _broken_dict_iterator(view)
        it = reversed(d.keys() if view == 0 else d.values() if view == 1 else d.items())
        collections.deque(_itertools.islice(it, consumed), maxlen=0)
        return it
    if kind == "obj":
        return iter(desc[1])  # a replayed object's counted view, or the object itself
    return iter(desc[1])  # "rest"


def _describe_set(it: Any) -> List[Any]:
    """["set", the set, its remaining items, its size now] (size -1: it changed size under ``it``)."""
    if type(it) is _SetRest:
        if it.size < 0 or len(it.s) != it.size:
            return ["set", it.s, [], -1]
        return ["set", it.s, list(it.rest), it.size]
    s = next((x for x in gc.get_referents(it) if type(x) is set or type(x) is frozenset), None)
    if s is None:  # exhausted: it let go of its set
        return ["rest", []]
    # as for dicts: CPython's __reduce__ raises after a size change, PyPy's lists what is there now
    try:
        remaining = list(it.__reduce__()[1][0])
    except RuntimeError:
        return ["set", s, [], -1]
    if len(remaining) != operator.length_hint(it):
        return ["set", s, [], -1]
    return ["set", s, remaining, len(s)]


class _SetRest:
    """A thawed set iterator: the items the native one had still to give, and like it a
    RuntimeError at the next step once the set's size is not the size it had."""

    __slots__ = ("s", "rest", "size")

    def __init__(self, s: Any, items: List[Any], size: int) -> None:
        self.s, self.rest, self.size = s, iter(items), size

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        if self.size < 0 or len(self.s) != self.size:
            self.size = -1  # stays broken, as CPython's does
            raise RuntimeError("Set changed size during iteration")
        return next(self.rest)

    def __length_hint__(self) -> int:
        return operator.length_hint(self.rest)


def _broken_dict_iterator(view: int) -> Any:
    """An iterator whose next step raises RuntimeError, as after a size change under it."""
    d: Dict[Any, Any] = {}
    it = iter(d.keys() if view == 0 else d.values() if view == 1 else d.items())
    d[None] = None
    return it


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
    if desc[0] == "seq" or desc[0] == "obj":
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
        return (
            n in (4, 5)
            and type(desc[1]) is dict
            and desc[2] in (0, 1, 2)
            and all(type(x) is int and x >= -1 for x in desc[3:])
        )
    if kind == "drev":
        return (
            n == 5
            and type(desc[1]) is dict
            and desc[2] in (0, 1, 2)
            and all(type(x) is int and x >= 0 for x in desc[3:])
        )
    if kind == "set":
        return (
            n == 4
            and type(desc[1]) in (set, frozenset)
            and type(desc[2]) is list
            and type(desc[3]) is int
            and desc[3] >= -1
        )
    if kind == "obj":
        if n == 2 and type(desc[1]).__name__ == "_tk_held":
            return HELD_VALID is not None and HELD_VALID(desc[1])
        return n == 2 and SHIMS.get(type(desc[1]).__name__) is type(desc[1])
    return n == 2 and type(desc[1]) is list  # "rest"


# held.py (which builds on this module) registers its check of a held value's recipe here
HELD_VALID: "Optional[Callable[[Any], bool]]" = None


# -- the job's itertools ------------------------------------------------------
#
# CPython's pickling of itertools objects is deprecated (3.12) and gone in 3.14, and PyPy's
# differs, so jobs get these instead: the algorithms of the itertools documentation's "roughly
# equivalent" code, as classes whose state is plain data in __dict__ (the codec writes them as
# instances, by their reserved names).  Live inner iterators and functions sit in slots, out of
# the codec's sight; before a state is encoded, prepare() writes their descriptors into
# ``src``/``fnref``, and after a thaw the first use rebuilds them (__getattr__ on the empty slot).

_FIRST = operator.itemgetter(0)  # a replayed object's counted view: see _Replayed
_MANY = sys.maxsize
_NS: Dict[str, Any] = {}
_HELD: Dict[int, Any] = {}  # id -> (iterator, its held.py _tk_held) of the iterators frame locals hold
_LIVE: Any = None  # weakref.WeakSet of the shim objects with live inner iterators, this slice


def bind(ns: Dict[str, Any]) -> None:
    """Start a slice: job functions named by thawed iterators are looked up in ``ns``."""
    import weakref

    global _NS, _LIVE, _HELD
    _NS = ns
    _LIVE = weakref.WeakSet()
    _HELD = {}


def hold(it: Any, held: Any) -> None:
    """``it`` is held by a local variable, frozen as ``held`` (held.py): a loop over it, or an
    iterator made from it, is described as ["obj", held], so that all thaw to one iterator."""
    _HELD[id(it)] = (it, held)


def prepare() -> None:
    """Write the state of every live shim into its attributes: once, when the slice ends, just
    before the state is encoded (the replayed objects add up their views' counts)."""
    for shim in list(_LIVE or ()):
        if isinstance(shim, _Replayed):
            shim._sync()
            continue
        shim.src = [describe(x, _NS) for x in shim._live]
        if type(shim) is _tk_islice:
            shim._sync()


class _Shim:
    __slots__ = ("__dict__", "__weakref__", "_live", "_fn")

    def _start(self, inner: List[Any], fn: Any = None, has_fn: bool = False) -> None:
        self._live = inner
        self.src: Any = None
        if has_fn:
            self._fn = fn
            try:
                self.fnref = _function_ref(fn, _NS)
            except FreezeError:
                self.fnref = fn  # not plain data: freezing this object fails, with the codec's message
        if _LIVE is not None:
            _LIVE.add(self)

    def __getattr__(self, name: str) -> Any:
        if name == "_live":
            if self.__dict__.get("src") is None:
                raise AttributeError(name)
            live = self._live = [thaw(d, _NS) for d in self.src]
            if _LIVE is not None:
                _LIVE.add(self)
            return live
        if name == "_fn" and "fnref" in self.__dict__:
            fn = self._fn = _function(self.fnref, _NS)
            return fn
        raise AttributeError(name)

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:  # pragma: no cover - every shim defines its own
        raise StopIteration


class _Replayed(_Shim):
    """An itertools object whose inputs are plain data once it exists (pools, a start): the native
    object does the work at native speed, and the state is only how many items it has given.

    ``for`` loops and other consumers get ``iter(self)``: a counted view over the native object,
    ``map(_FIRST, zip(native, repeat(self, _MANY)))``, all in C; the repeat object keeps this
    object alive and counts (its length hint) the items the view took, read when the job is
    frozen.  A thaw rebuilds the native object and skips that many items (in C; the cost grows
    with the position).
    """

    __slots__ = ("_nat", "_views")

    def _native(self, skip: int) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _begin(self) -> None:
        self.n = 0
        self._nat = self._native(0)
        self._views: List[Any] = []
        if _LIVE is not None:
            _LIVE.add(self)

    def __getattr__(self, name: str) -> Any:
        if name == "_nat" and "n" in self.__dict__:
            nat = self._nat = self._native(self.n)
            self._views = []
            if _LIVE is not None:
                _LIVE.add(self)
            return nat
        if name == "_views":
            self._nat  # noqa: B018 - rebuilds the native object (and the list of views)
            return self._views
        return _Shim.__getattr__(self, name)

    def __iter__(self) -> Any:
        counter = _itertools.repeat(self, _MANY)
        self._views.append(counter)
        return map(_FIRST, zip(self._nat, counter))

    def __next__(self) -> Any:
        v = next(self._nat)
        self.n += 1
        return v

    def _sync(self) -> None:
        self.n += sum(_MANY - operator.length_hint(c) for c in self._views)
        self._views = []


def _skip(it: Any, n: int) -> Any:
    if n:
        collections.deque(_itertools.islice(it, n), maxlen=0)
    return it


class _tk_count(_Replayed):
    def __init__(self, start: Any = 0, step: Any = 1) -> None:
        _itertools.count(start, step)  # the native checks and errors
        self.start, self.step = start, step
        self._begin()

    def _native(self, skip: int) -> Any:
        if type(self.start) is int and type(self.step) is int:
            return _itertools.count(self.start + skip * self.step, self.step)
        return _skip(_itertools.count(self.start, self.step), skip)  # floats: the same additions


class _tk_repeat(_Replayed):
    def __init__(self, obj: Any, times: Any = None) -> None:
        _itertools.repeat(obj, *(() if times is None else (times,)))
        self.obj, self.times = obj, None if times is None else max(0, operator.index(times))
        self._begin()

    def _native(self, skip: int) -> Any:
        if self.times is None:
            return _itertools.repeat(self.obj)
        return _itertools.repeat(self.obj, max(0, self.times - skip))

    def __length_hint__(self) -> int:
        return operator.length_hint(self._nat)


class _tk_permutations(_Replayed):
    def __init__(self, iterable: Any, r: Any = None) -> None:
        self.pool = tuple(iterable)
        self.r = r
        _itertools.permutations((), r)  # the native checks and errors
        self._begin()

    def _native(self, skip: int) -> Any:
        return _skip(_itertools.permutations(self.pool, self.r), skip)


class _tk_combinations(_Replayed):
    def __init__(self, iterable: Any, r: Any) -> None:
        self.pool = tuple(iterable)
        self.r = r
        _itertools.combinations((), r)
        self._begin()

    def _native(self, skip: int) -> Any:
        return _skip(_itertools.combinations(self.pool, self.r), skip)


class _tk_combinations_with_replacement(_Replayed):
    def __init__(self, iterable: Any, r: Any) -> None:
        self.pool = tuple(iterable)
        self.r = r
        _itertools.combinations_with_replacement((), r)
        self._begin()

    def _native(self, skip: int) -> Any:
        return _skip(_itertools.combinations_with_replacement(self.pool, self.r), skip)


class _tk_product(_Replayed):
    def __init__(self, *iterables: Any, repeat: Any = 1) -> None:
        _itertools.product(repeat=repeat)
        self.pools = [tuple(p) for p in iterables]
        self.repeat = repeat
        self._begin()

    def _native(self, skip: int) -> Any:
        return _skip(_itertools.product(*self.pools, repeat=self.repeat), skip)


class _tk_cycle(_Shim):
    def __init__(self, iterable: Any) -> None:
        self._start([iter(iterable)])
        self.saved: List[Any] = []
        self.i, self.inner_done = 0, False

    def __next__(self) -> Any:
        if not self.inner_done:
            try:
                v = next(self._live[0])
            except StopIteration:
                self.inner_done = True
            else:
                self.saved.append(v)
                return v
        if not self.saved:
            raise StopIteration
        v = self.saved[self.i]
        self.i = (self.i + 1) % len(self.saved)
        return v


class _tk_islice(_Shim):
    """Native islice over a counted view of its inner iterator: its whole state follows from how
    many items it took from the inner one (it yields the item at index ``cnt - 1``, and next
    looks at ``cnt - 1 + step``), so a thaw builds a native islice with the indices left."""

    __slots__ = ("_nat", "_counter", "_cbase")

    def __init__(self, iterable: Any, *args: Any) -> None:
        _itertools.islice((), *args)  # the native checks and errors
        sl = slice(*args)
        self.start, self.stop, self.step = sl.start or 0, sl.stop, sl.step or 1
        self.cnt = 0
        self._start([iter(iterable)])
        self._build(self._live[0], self.start, self.stop)

    def _build(self, inner: Any, start: int, stop: Any) -> None:
        self._cbase = self.cnt
        self._counter = _itertools.repeat(self, _MANY)
        self._nat = _itertools.islice(map(_FIRST, zip(inner, self._counter)), start, stop, self.step)

    def _sync(self) -> None:
        self.cnt = self._cbase + _MANY - operator.length_hint(self._counter)

    def __getattr__(self, name: str) -> Any:
        if name == "_nat" and "cnt" in self.__dict__:
            cnt, start, stop = self.cnt, self.start, self.stop
            nxt = max(start, cnt - 1 + self.step) if cnt else start
            if stop is not None and nxt > stop:
                nxt = stop
            self._build(self._live[0], nxt - cnt, None if stop is None else stop - cnt)
            return self._nat
        return _Shim.__getattr__(self, name)

    def __next__(self) -> Any:
        return next(self._nat)


class _tk_chain(_Shim):
    def __init__(self, *iterables: Any) -> None:
        # live: [the active iterator, the arguments' iterators not reached yet...]; each
        # argument's iterator is taken now (natively: when the chain reaches it)
        self._start([iter(())] + [iter(x) for x in iterables])
        self.k, self.lazy = 1, False

    @classmethod
    def from_iterable(cls, iterable: Any) -> Any:
        self = cls.__new__(cls)
        self._start([iter(()), iter(iterable)])
        self.k, self.lazy = 1, True
        return self

    def __next__(self) -> Any:
        live = self._live
        while True:
            try:
                return next(live[0])
            except StopIteration:
                if self.lazy:
                    live[0] = iter(next(live[1]))  # StopIteration here ends the chain
                    continue
                if self.k >= len(live):
                    raise
                live[0], live[self.k] = live[self.k], iter(())
                self.k += 1


class _tk_accumulate(_Shim):
    def __init__(self, iterable: Any, func: Any = None, *, initial: Any = None) -> None:
        self._start([iter(iterable)], func, True)
        self.total, self.started, self.pending = initial, initial is not None, initial is not None

    def __next__(self) -> Any:
        if self.pending:
            self.pending = False
            return self.total
        v = next(self._live[0])
        if not self.started:
            self.started = True
            self.total = v
        elif self._fn is None:
            self.total = self.total + v
        else:
            self.total = self._fn(self.total, v)
        return self.total


class _tk_zip_longest(_Shim):
    def __init__(self, *iterables: Any, fillvalue: Any = None) -> None:
        self._start([iter(x) for x in iterables])
        self.fill, self.dead, self.active = fillvalue, [False] * len(iterables), len(iterables)

    def __next__(self) -> Any:
        if not self.active:
            raise StopIteration
        out = []
        for k, it in enumerate(self._live):
            if self.dead[k]:
                out.append(self.fill)
                continue
            try:
                out.append(next(it))
            except StopIteration:
                self.active -= 1
                if not self.active:
                    raise
                self.dead[k] = True
                out.append(self.fill)
        return tuple(out)


class _tk_starmap(_Shim):
    def __init__(self, function: Any, iterable: Any) -> None:
        self._start([iter(iterable)], function, True)

    def __next__(self) -> Any:
        return self._fn(*next(self._live[0]))


class _tk_takewhile(_Shim):
    def __init__(self, predicate: Any, iterable: Any) -> None:
        self._start([iter(iterable)], predicate, True)
        self.done = False

    def __next__(self) -> Any:
        if self.done:
            raise StopIteration
        v = next(self._live[0])
        if self._fn(v):
            return v
        self.done = True
        raise StopIteration


class _tk_dropwhile(_Shim):
    def __init__(self, predicate: Any, iterable: Any) -> None:
        self._start([iter(iterable)], predicate, True)
        self.dropping = True

    def __next__(self) -> Any:
        it = self._live[0]
        while self.dropping:
            v = next(it)
            if not self._fn(v):
                self.dropping = False
                return v
        return next(it)


class _tk_filterfalse(_Shim):
    def __init__(self, predicate: Any, iterable: Any) -> None:
        self._start([iter(iterable)], predicate, True)

    def __next__(self) -> Any:
        it, fn = self._live[0], self._fn
        while True:
            v = next(it)
            if not (bool(v) if fn is None else fn(v)):
                return v


class _tk_compress(_Shim):
    def __init__(self, data: Any, selectors: Any) -> None:
        self._start([iter(data), iter(selectors)])

    def __next__(self) -> Any:
        data, selectors = self._live
        while True:
            d = next(data)
            if next(selectors):
                return d


class _tk_pairwise(_Shim):
    def __init__(self, iterable: Any) -> None:
        self._start([iter(iterable)])
        self.old, self.started, self.done = None, False, False

    def __next__(self) -> Any:
        if self.done:
            raise StopIteration
        it = self._live[0]
        try:
            if not self.started:
                self.old = next(it)
                self.started = True
            new = next(it)
        except StopIteration:
            self.done = True
            raise
        pair = (self.old, new)
        self.old = new
        return pair


SHIMS: Dict[str, type] = {
    c.__name__: c
    for c in (
        _tk_count,
        _tk_repeat,
        _tk_cycle,
        _tk_islice,
        _tk_chain,
        _tk_accumulate,
        _tk_permutations,
        _tk_combinations,
        _tk_combinations_with_replacement,
        _tk_product,
        _tk_zip_longest,
        _tk_starmap,
        _tk_takewhile,
        _tk_dropwhile,
        _tk_filterfalse,
        _tk_compress,
        _tk_pairwise,
    )
}


def _itertools_module() -> Any:
    import types

    module = types.ModuleType("itertools", "The job's itertools: iterators that freeze as their own state.")
    for name in dir(_itertools):  # groupby, tee...: the native ones (a loop over them cannot be frozen)
        if not name.startswith("_"):
            setattr(module, name, getattr(_itertools, name))
    for cls in SHIMS.values():
        setattr(module, cls.__name__[len("_tk_") :], cls)
    return module


ITERTOOLS = _itertools_module()
