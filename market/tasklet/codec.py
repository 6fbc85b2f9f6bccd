"""Data-only codec for frozen job states and results.

The format is a compact, deterministic binary stream (``VERSION`` byte, one
value, nothing after it).  It keeps shared references and cycles: every
container gets an index the first time it is written, later occurrences are
written as a back reference.  Decoding never imports or calls anything that
came with the data: class names are looked up in the ``classes`` mapping the
caller passes (the job module's own classes, inside the sandbox) and without
it instances come back as :class:`PlainInstance` dictionaries (the server).

Both directions are iterative, so deep structures (a linked list of 10**5
nodes) do not hit the recursion limit, and every length read from the input
is checked against the bytes that remain, so malformed input raises
:class:`CodecError` instead of allocating without bound.

Homogeneous lists of machine-size ints, of floats and of strings take a bulk
path (one ``array``/``join`` call instead of one Python step per element):
that is what keeps a 1 MB numeric state well inside the freeze budget.

Two versions are written: version 1 (``mkt-bin-1``, the default of :func:`encode`: results and
the states made before version 2) and version 2 (``mkt-bin-2``: version 1 plus columnar blocks,
see the comment before ``NAME2``). :func:`decode` reads both; a slice writes its next state in
the version of the state it thawed (a replay must write the honest slice's bytes), new jobs
start in :data:`STATE_VERSION`. :func:`render` and :func:`expanded_size` read version 1 only
(results).
"""

from __future__ import annotations

import collections
import gc
import struct
import sys
from array import array
from itertools import accumulate, repeat
from operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import (
        Any,
        Callable,
        Dict,
        Iterable,
        Iterator,
        List,
        Mapping,
        NoReturn,
        Optional,
        Sequence,
        Set,
        Tuple,
        Type,
    )

    # the bases below, as the checker sees them (at run time: plain dict)
    _Attributes = Dict[str, Any]
    _EncodedInts = Dict[int, bytes]
else:
    _Attributes = _EncodedInts = dict

__all__ = [
    "CodecError",
    "OverBudget",
    "PlainInstance",
    "encode",
    "decode",
    "expanded_size",
    "render",
    "NAME",
    "NAME2",
    "STATE_VERSION",
    "version_named",
    "version_of",
]

NAME = "mkt-bin-1"
VERSION = 1

# Tags (one byte each).
_NONE, _TRUE, _FALSE = 0x01, 0x02, 0x03
_INT, _BIGINT, _FLOAT, _STR, _BYTES = 0x04, 0x05, 0x06, 0x07, 0x08
_REF = 0x09
_LIST, _TUPLE, _DICT, _SET, _FROZENSET, _BYTEARRAY = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
_INST = 0x16
_LIST_I64, _LIST_F64, _LIST_STR = 0x17, 0x18, 0x19
_COMPLEX, _FRACTION, _RANGE = 0x20, 0x21, 0x22
_DEQUE, _COUNTER, _ODICT, _DDICT = 0x23, 0x24, 0x25, 0x26
_LIST_BOOL, _LIST_S, _TUPLE_S = 0x27, 0x28, 0x29  # bools as bytes; lists/tuples of scalars
_FUNC = 0x2A  # a function, class or module frozen by reference: its name (see encode's name_of)

_DDICT_FACTORIES: Dict[str, Callable[[], object]] = {
    "int": int,
    "float": float,
    "str": str,
    "list": list,
    "dict": dict,
    "set": set,
    "tuple": tuple,
    "bool": bool,
}
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_FRACTION_BITS = 1 << 16  # normalising a Fraction costs a gcd: quadratic in the size
_BULK_MIN = 8  # below this, the per-element path is as fast
_PACK_D = struct.Struct("<d")
_MID = 1 << 20  # ints in [-_MID, _MID) beyond the small-int table are three varint bytes
_PACK_INT3 = struct.Struct("<4B").pack  # such an int's tag and its three bytes
_BIG = sys.byteorder == "big"


class CodecError(ValueError):
    """Raised for values that cannot be encoded and for malformed input."""


class OverBudget(CodecError):
    """The data holds more values than the caller's budget allows (see :func:`decode`,
    :func:`render`): refused before the values are built or shown."""


class PlainInstance(_Attributes):
    """An instance of a job class, decoded without the job's classes.

    It is a plain ``dict`` of the attributes plus ``"__class__"`` (the class
    name), hashable by identity so it can stand where the original object
    was a dict key or set member.
    """

    # dict declares __hash__ = None; identity hashing is the point, in C (no Python-level call)
    __hash__ = object.__hash__  # type: ignore[assignment]

    @property
    def class_name(self) -> str:
        name: str = self["__class__"]
        return name


def _uvarint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _int(n: int, out: bytearray) -> None:
    if -(1 << 62) <= n < (1 << 62):
        out.append(_INT)
        _uvarint((n << 1) if n >= 0 else ((-n << 1) - 1), out)
    else:
        out.append(_BIGINT)
        raw = abs(n).to_bytes((abs(n).bit_length() + 7) // 8, "little")
        out.append(1 if n < 0 else 0)
        _uvarint(len(raw), out)
        out += raw


class _SmallInts(_EncodedInts):
    """Encoded small ints, filled on first use: building all 16k at import cost ~5 ms of every
    sandboxed slice's start-up, while a lookup that hits stays a plain dict lookup."""

    def __missing__(self, n: int) -> bytes:
        buf = bytearray([_INT])
        _uvarint((n << 1) if n >= 0 else ((-n << 1) - 1), buf)
        value = self[n] = bytes(buf)
        return value


_SMALL = 1 << 13
_SMALL_INTS = _SmallInts()  # saves a Python call per int once warm


def _str(s: str, out: bytearray) -> None:
    raw = s.encode("utf-8", "surrogatepass")
    out.append(_STR)
    _uvarint(len(raw), out)
    out += raw


def _bulk_list(obj: List[Any], out: bytearray) -> bool:
    """Write ``obj`` as one typed block if it is homogeneous; True if done."""
    kinds = set(map(type, obj))
    if len(kinds) != 1:
        return _scalar_run(_LIST_S, obj, kinds, out)
    first = kinds.pop()
    if first is bool:
        out.append(_LIST_BOOL)
        _uvarint(len(obj), out)
        out += bytes(obj)
        return True
    if first is int:
        try:
            arr = array("q", obj)
        except OverflowError:
            return False
        if _BIG:
            arr.byteswap()
        out.append(_LIST_I64)
        _uvarint(len(obj), out)
        out += arr.tobytes()
        return True
    if first is float:
        arr = array("d", obj)
        if _BIG:
            arr.byteswap()
        out.append(_LIST_F64)
        _uvarint(len(obj), out)
        out += arr.tobytes()
        return True
    if first is str:
        raws = [s.encode("utf-8", "surrogatepass") for s in obj]
        out.append(_LIST_STR)
        _uvarint(len(raws), out)
        lengths = list(map(len, raws))
        if max(lengths) < 0x80:  # every length is a one-byte varint: the table is those bytes
            out += bytes(lengths)
        else:
            for n in lengths:
                _uvarint(n, out)
        out += b"".join(raws)
        return True
    return _scalar_run(_LIST_S, obj, {first}, out)


_SCALARS = frozenset((int, float, str, bool, type(None)))
_COMMON_CONTAINERS = frozenset((list, tuple, dict))


def _scalar_run(tag: int, items: Sequence[Any], kinds: Optional[Set[type]], out: bytearray) -> bool:
    """Write a list or tuple of scalars inline (no per-item container work).

    ``kinds`` may be None (not known yet): then a non-scalar item undoes the
    partial write and the caller falls back to the general path.
    """
    if kinds is not None and not kinds <= _SCALARS:
        return False
    mark = len(out)
    out.append(tag)
    _uvarint(len(items), out)
    small, table, pack = _SMALL, _SMALL_INTS, _PACK_D.pack
    for x in items:
        t = type(x)
        if t is int:
            if -small <= x < small:
                out += table[x]
            elif -_MID <= x < _MID:
                z = (x << 1) if x >= 0 else ((-x << 1) - 1)
                out += _PACK_INT3(_INT, (z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14)
            else:
                _int(x, out)
        elif t is str:
            raw = x.encode("utf-8", "surrogatepass")
            if len(raw) < 0x80:
                out.append(_STR)
                out.append(len(raw))
                out += raw
            else:
                _str(x, out)
        elif t is float:
            out.append(_FLOAT)
            out += pack(x)
        elif x is None:
            out.append(_NONE)
        elif t is bool:
            out.append(_TRUE if x else _FALSE)
        else:
            del out[mark:]
            return False
    return True


def encode(
    obj: Any,
    classes: Optional[Mapping[str, type]] = None,
    name_of: Optional[Callable[[object], Optional[str]]] = None,
    version: int = VERSION,
) -> bytes:
    """Encode ``obj`` to bytes; raises :class:`CodecError` for foreign types.

    ``classes`` maps names to the job module's classes whose instances may be
    encoded (by class name and ``__dict__``).  ``name_of`` names the other
    values that may be frozen by reference (a builtin, a function of an allowed
    module, a module-level lambda...): it returns a name the decoder's
    ``resolve`` turns back into the same object, or None.
    """
    if version != VERSION and version != VERSION2:
        raise CodecError("unknown codec version %r" % (version,))
    cols = version == VERSION2
    classes = classes or {}
    out = bytearray([version])
    memo: Dict[int, int] = {}
    keep: List[object] = []  # temporaries whose id() must stay unique while encoding
    open_immutables: Set[Optional[int]] = set()  # memo indices of the tuples and frozensets being written
    # block items given a memo index but no entry: nothing else refers to them (see _unshared)
    unlisted = [0]
    stack: List[Iterator[Any]] = [iter((obj,))]
    owners: List[Optional[int]] = [None]  # memo index of each open container (None: the top level)
    children: Iterator[Any]
    while stack:
        for x in stack[-1]:
            t = type(x)
            if t is int:
                if -_SMALL <= x < _SMALL:
                    out += _SMALL_INTS[x]
                elif -_MID <= x < _MID:  # three varint bytes, inline (a call costs more)
                    z = (x << 1) if x >= 0 else ((-x << 1) - 1)
                    out += _PACK_INT3(_INT, (z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14)
                else:
                    _int(x, out)
                continue
            if t is str:
                raw = x.encode("utf-8", "surrogatepass")
                if len(raw) < 0x80:
                    out.append(_STR)
                    out.append(len(raw))
                    out += raw
                else:
                    _str(x, out)
                continue
            if t is float:
                out.append(_FLOAT)
                out += _PACK_D.pack(x)
                continue
            if x is None:
                out.append(_NONE)
                continue
            if t is bool:
                out.append(_TRUE if x else _FALSE)
                continue
            if t not in _COMMON_CONTAINERS:  # the rarer scalars: not memoised, written in place
                if t is bytes:
                    out.append(_BYTES)
                    _uvarint(len(x), out)
                    out += x
                    continue
                if t is complex:
                    out.append(_COMPLEX)
                    out += _PACK_D.pack(x.real)
                    out += _PACK_D.pack(x.imag)
                    continue
                if t.__name__ == "Fraction" and t is getattr(sys.modules.get("fractions"), "Fraction", None):
                    if max(abs(x.numerator), x.denominator).bit_length() > _FRACTION_BITS:
                        raise CodecError("fractions over %d bits cannot be frozen" % _FRACTION_BITS)
                    out.append(_FRACTION)
                    _int(x.numerator, out)
                    _int(x.denominator, out)
                    continue
                if t is range:
                    out.append(_RANGE)
                    _int(x.start, out)
                    _int(x.stop, out)
                    _int(x.step, out)
                    continue
            ref = memo.get(id(x))
            if ref is not None:
                if ref in open_immutables:
                    raise CodecError("a cycle runs through a tuple or frozenset; such a value cannot be frozen")
                out.append(_REF)
                _uvarint(ref, out)
                continue
            index = len(memo) + unlisted[0]
            memo[id(x)] = index
            keep.append(x)
            if (
                cols
                and (t is list or t is dict)
                and len(x) >= _COL_MIN
                and _columns(x, t, out, memo, classes, unlisted)
            ):
                continue
            if t is list:
                if len(x) >= _BULK_MIN and _bulk_list(x, out):
                    continue
                out.append(_LIST)
                _uvarint(len(x), out)
                children = iter(x)
            elif t is tuple:
                if _scalar_run(_TUPLE_S, x, None, out):
                    continue
                out.append(_TUPLE)
                _uvarint(len(x), out)
                children = iter(x)
                open_immutables.add(index)
            elif t is dict:
                out.append(_DICT)
                _uvarint(len(x), out)
                children = _pairs(x)
            elif t is set or t is frozenset:
                out.append(_SET if t is set else _FROZENSET)
                items = _set_order(x)
                _uvarint(len(items), out)
                children = iter(items)
                if t is frozenset:
                    open_immutables.add(index)
            elif t is bytearray:
                out.append(_BYTEARRAY)
                _uvarint(len(x), out)
                out += x
                continue
            elif t is collections.deque:
                out.append(_DEQUE)
                _uvarint(0 if x.maxlen is None else x.maxlen + 1, out)
                _uvarint(len(x), out)
                children = iter(list(x))
            elif t is collections.Counter or t is collections.OrderedDict:
                out.append(_COUNTER if t is collections.Counter else _ODICT)
                _uvarint(len(x), out)
                children = _pairs(x)
            elif t is collections.defaultdict:
                factory = x.default_factory
                fname = "" if factory is None else getattr(factory, "__name__", "?")
                if factory is not None and _DDICT_FACTORIES.get(fname) is not factory:
                    raise CodecError(
                        "a defaultdict's factory must be None or one of " + ", ".join(sorted(_DDICT_FACTORIES))
                    )
                out.append(_DDICT)
                _str(fname, out)
                _uvarint(len(x), out)
                children = _pairs(x)
            elif classes.get(t.__name__) is t:
                attrs = getattr(x, "__dict__", None)
                if type(attrs) is not dict:
                    raise CodecError("instance of %s has no plain __dict__" % t.__name__)
                if isinstance(x, BaseException):  # a job exception class: its args too (_close)
                    attrs = dict(attrs)
                    attrs["_tk_args"] = list(x.args)
                    keep.append(attrs)
                out.append(_INST)
                _str(t.__name__, out)
                _uvarint(len(attrs), out)
                children = _pairs(attrs)
            else:
                ref_name = name_of(x) if name_of is not None else None
                if ref_name is None:
                    raise CodecError(
                        "a value of type %s cannot be frozen (only plain data "
                        "and instances of the job's own classes)" % t.__name__
                    )
                # by reference; it keeps its memo index, so later occurrences are back references
                out.append(_FUNC)
                _str(ref_name, out)
                continue
            stack.append(children)
            owners.append(index)
            break
        else:
            stack.pop()
            open_immutables.discard(owners.pop())
    return bytes(out)


def _pairs(d: Mapping[Any, Any]) -> Iterator[Any]:
    for k, v in d.items():
        yield k
        yield v


def _set_order(s: Iterable[Any]) -> List[Any]:
    """Sets of scalars and of tuples of scalars are written sorted (by type name then value when
    the types are mixed); other sets of values that need no job code to compare (None, complex,
    NaN, frozensets, tuples mixing types) by :func:`_canonical_key`; sets holding instances in
    iteration order. Equal sets encode equally whatever their history (a set rebuilt by a thaw
    iterates in another order than one never frozen, ``hash(None)`` differs between processes on
    CPython 3.11, and a replay must produce the honest slice's bytes)."""
    items = list(s)
    if len(items) < 2:
        return items
    if all(_plain(x, 0) for x in items):
        try:
            items.sort()
            return items
        except TypeError:
            try:
                items.sort(key=_type_then_value)
                return items
            except TypeError:
                pass
    try:
        keys = [_canonical_key(x, 0) for x in items]
    except TypeError:
        return items  # instances may define __lt__ (job code): never called while freezing
    order = sorted(range(len(items)), key=keys.__getitem__)
    return [items[i] for i in order]


_PLAIN = (int, float, str, bytes, bool)


def _plain(x: Any, depth: int) -> bool:
    """A scalar (not NaN, which sorts by its position), or a tuple of them (nested a little): what
    sorting compares without job code, the same way on every interpreter."""
    t = type(x)
    if t in _PLAIN:
        return t is not float or x == x
    return t is tuple and depth < 4 and all(_plain(y, depth + 1) for y in x)


_ORDER_DEPTH = 32  # tuples nested deeper than this are written in iteration order


def _canonical_key(x: Any, depth: int) -> Tuple[Any, ...]:
    """A total order over values compared without job code: type first, then value; NaNs after
    every number of their place; TypeError for anything else (instances, containers that can
    change) or nesting deeper than the codec's own limit."""
    t = type(x)
    if depth > _ORDER_DEPTH:
        raise TypeError("nested too deeply to order")
    if x is None:
        return (0,)
    if t is bool:
        return (1, int(x))
    if t is int:
        return (2, x)
    if t is float:
        return (3, 1, x.hex()) if x != x else (3, 0, x)
    if t is complex:
        return (4, _canonical_key(x.real, depth + 1), _canonical_key(x.imag, depth + 1))
    if t is str:
        return (5, x)
    if t is bytes:
        return (6, x)
    if t is tuple:
        return (7, tuple(_canonical_key(y, depth + 1) for y in x))
    if t is frozenset:
        return (8, tuple(sorted(_canonical_key(y, depth + 1) for y in x)))
    raise TypeError("not ordered without job code: %s" % t.__name__)


def _type_then_value(x: Any) -> Tuple[str, Any]:
    return (type(x).__name__, x)


def _fail(pos: int, why: str) -> NoReturn:
    raise CodecError("malformed data at byte %d: %s" % (pos, why))


def _varint_at(data: bytes, pos: int) -> Tuple[int, int]:
    """Read an unsigned varint at ``pos``; returns (value, new position)."""
    shift = result = 0
    while True:
        b = data[pos]  # IndexError at the end is turned into CodecError by decode()
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            _fail(pos, "number too long")


def _int_at(data: bytes, pos: int, end: int) -> Tuple[int, int]:
    tag = data[pos]
    pos += 1
    if tag == _INT:
        z, pos = _varint_at(data, pos)
        return ((z >> 1) if not z & 1 else -((z + 1) >> 1)), pos
    if tag == _BIGINT:
        sign = data[pos]
        n, pos = _varint_at(data, pos + 1)
        if pos + n > end:
            _fail(pos, "length exceeds the remaining data")
        value = int.from_bytes(data[pos : pos + n], "little")
        return (-value if sign else value), pos + n
    _fail(pos, "expected an integer")


_UNSET = object()
_KEYED = frozenset((_DICT, _COUNTER, _ODICT, _DDICT, _INST))
_EMPTY = {_LIST: list, _DICT: dict, _SET: set, _COUNTER: collections.Counter, _ODICT: collections.OrderedDict}


def _name_at(data: bytes, pos: int, end: int) -> Tuple[str, int]:
    """(name, position after it) of the string a class, a factory or a reference is named by."""
    if data[pos] != _STR:
        _fail(pos, "expected a name")
    ln, pos = _varint_at(data, pos + 1)
    if pos + ln > end:
        _fail(pos, "length exceeds the remaining data")
    return data[pos : pos + ln].decode("utf-8", "surrogatepass"), pos + ln


def decode(
    data: bytes,
    classes: Optional[Mapping[str, type]] = None,
    max_nodes: Optional[int] = None,
    resolve: Optional[Callable[[str], object]] = None,
) -> Any:
    """Decode bytes made by :func:`encode`.

    With ``classes`` (name -> class), job instances are rebuilt without
    calling ``__init__``; without it they become :class:`PlainInstance`.
    ``resolve`` turns the name of a value frozen by reference back into the
    object (it raises CodecError for an unknown name); without it such data is
    refused.
    Raises :class:`CodecError` for anything malformed.

    ``max_nodes`` bounds the values built (every item of every container, and the
    containers): over it, :class:`OverBudget` is raised as soon as a container's
    header says so, before its items are built. A shared reference is built once and
    costs one value here; what it costs to *show* is :func:`expanded_size`'s.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes, got %s" % type(data).__name__)
    data = bytes(data)
    version_of(data)
    try:
        value, pos = _decode(data, classes, _NO_BUDGET if max_nodes is None else max_nodes, resolve)
    except CodecError:
        raise
    except IndexError:
        raise CodecError("malformed data: unexpected end") from None
    except (
        TypeError,
        ValueError,
        OverflowError,
        RecursionError,
        MemoryError,
        struct.error,
        UnicodeDecodeError,
        AttributeError,
    ) as exc:
        # e.g. an unhashable value where a dict key was expected, a class without a __dict__
        raise CodecError("malformed data: %s" % exc) from None
    if pos != len(data):
        raise CodecError("%d unexpected bytes after the value" % (len(data) - pos))
    return value


_NO_BUDGET = 1 << 62


def _over(budget: int) -> NoReturn:
    raise OverBudget("the data holds more than %d values" % budget)


def _decode(
    data: bytes,
    classes: Optional[Mapping[str, type]],
    max_nodes: int,
    resolve: Optional[Callable[[str], object]] = None,
) -> Tuple[Any, int]:
    end = len(data)
    pos = 1
    # values left to build after the top one; only container headers charge it (each says how many
    # items follow, a dict's keys and values both), so the common path of a scalar pays nothing
    budget = max_nodes - 1
    memo: List[Any] = []
    # Each open container: [kind, target, remaining, pending_key, memo_index, value]
    stack: List[List[Any]] = []
    push: Optional[List[Any]]
    v: Any  # the value just read: whatever the data holds
    target: Any  # where an instance's or a defaultdict's items go
    unpack_d = _PACK_D.unpack_from
    while True:
        tag = data[pos]
        pos += 1
        push = None
        if tag == _INT:
            z = data[pos]
            if z < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:  # two and three bytes inline: a call costs more than the read
                z = (z & 0x7F) | (data[pos + 1] << 7)
                pos += 2
            elif data[pos + 2] < 0x80:
                z = (z & 0x7F) | ((data[pos + 1] & 0x7F) << 7) | (data[pos + 2] << 14)
                pos += 3
            else:
                z, pos = _varint_at(data, pos)
            v = (z >> 1) if not z & 1 else -((z + 1) >> 1)
        elif tag == _STR:
            n = data[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint_at(data, pos)
            if pos + n > end:
                _fail(pos, "length exceeds the remaining data")
            v = data[pos : pos + n].decode("utf-8", "surrogatepass")
            pos += n
        elif tag == _FLOAT:
            if pos + 8 > end:
                _fail(pos, "unexpected end")
            v = unpack_d(data, pos)[0]
            pos += 8
        elif tag == _LIST_S or tag == _TUPLE_S:
            n = data[pos]
            if n < 0x80:  # a short tuple's length, without a call
                pos += 1
            else:
                n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            v, pos = _read_scalars(data, pos, end, n)
            if len(v) != n:
                _fail(pos, "expected a scalar")
            if tag == _TUPLE_S:
                v = tuple(v)
            memo.append(v)
        elif tag == _REF:
            i, pos = _varint_at(data, pos)
            if i >= len(memo) or memo[i] is _UNSET:
                _fail(pos, "reference to an unknown or unfinished value")
            v = memo[i]
        elif tag == _NONE:
            v = None
        elif tag == _TRUE:
            v = True
        elif tag == _FALSE:
            v = False
        elif tag == _BIGINT:
            v, pos = _int_at(data, pos - 1, end)
        elif tag == _BYTES:
            n, pos = _varint_at(data, pos)
            if pos + n > end:
                _fail(pos, "length exceeds the remaining data")
            v = data[pos : pos + n]
            pos += n
        elif tag == _COMPLEX:
            if pos + 16 > end:
                _fail(pos, "unexpected end")
            v = complex(unpack_d(data, pos)[0], unpack_d(data, pos + 8)[0])
            pos += 16
        elif tag == _FRACTION:
            num, pos = _int_at(data, pos, end)
            den, pos = _int_at(data, pos, end)
            if den <= 0 or max(abs(num), den).bit_length() > _FRACTION_BITS:
                _fail(pos, "bad fraction")  # the size cap keeps Fraction's gcd cheap
            from fractions import Fraction  # lazily: most states have none, and it costs ~6 ms

            v = Fraction(num, den)
        elif tag == _FUNC:
            name, pos = _name_at(data, pos, end)
            if resolve is None:
                _fail(pos, "a value frozen by reference needs the job's module")
            v = resolve(name)
            memo.append(v)
        elif tag == _RANGE:
            start, pos = _int_at(data, pos, end)
            stop, pos = _int_at(data, pos, end)
            step, pos = _int_at(data, pos, end)
            if step == 0:
                _fail(pos, "bad range")
            v = range(start, stop, step)
        elif tag == _LIST_I64 or tag == _LIST_F64:
            n, pos = _varint_at(data, pos)
            if pos + 8 * n > end:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            arr = array("q" if tag == _LIST_I64 else "d")
            arr.frombytes(data[pos : pos + 8 * n])
            pos += 8 * n
            if _BIG:
                arr.byteswap()
            v = arr.tolist()
            memo.append(v)
        elif tag == _LIST_BOOL:
            n, pos = _varint_at(data, pos)
            if pos + n > end:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            chunk = data[pos : pos + n]
            if chunk.strip(b"\x00\x01"):
                _fail(pos, "bad boolean")
            v = list(map(bool, chunk))
            pos += n
            memo.append(v)
        elif tag == _LIST_STR:
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            table = data[pos : pos + n]
            if table.isascii():  # every length is a one-byte varint
                lengths: Sequence[int] = table
                pos += n
            else:
                lengths = []
                for _ in range(n):
                    ln, pos = _varint_at(data, pos)
                    lengths.append(ln)
            total = sum(lengths)
            if pos + total > end:
                _fail(pos, "length exceeds the remaining data")
            block = data[pos : pos + total]
            if block.isascii():  # one decode, then slices: byte offsets are character offsets
                text = block.decode("ascii")
                bounds = list(accumulate(lengths, initial=0))
                v = list(map(text.__getitem__, map(slice, bounds, bounds[1:])))
                pos += total
            else:
                v = []
                for ln in lengths:
                    v.append(data[pos : pos + ln].decode("utf-8", "surrogatepass"))
                    pos += ln
            memo.append(v)
        elif tag == _BYTEARRAY:
            n, pos = _varint_at(data, pos)
            if pos + n > end:
                _fail(pos, "length exceeds the remaining data")
            v = bytearray(data[pos : pos + n])
            pos += n
            memo.append(v)
        elif tag in _EMPTY:
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= n * (2 if tag in _KEYED else 1)
            if budget < 0:
                _over(max_nodes)
            v = _EMPTY[tag]()
            memo.append(v)
            push = [tag, v, n * (2 if tag in _KEYED else 1), _UNSET, -1, v]
        elif tag == _TUPLE or tag == _FROZENSET:
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            memo.append(_UNSET)  # unfinished until all items are read
            push = [tag, [], n, _UNSET, len(memo) - 1, None]
        elif tag == _DEQUE:
            maxlen, pos = _varint_at(data, pos)
            n, pos = _varint_at(data, pos)
            if n > end - pos or maxlen > end:
                _fail(pos, "length exceeds the remaining data")
            budget -= n
            if budget < 0:
                _over(max_nodes)
            v = collections.deque(maxlen=None if maxlen == 0 else maxlen - 1)
            memo.append(v)
            push = [tag, v, n, _UNSET, -1, v]
        elif tag == _DDICT or tag == _INST:
            name, pos = _name_at(data, pos, end)
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= 2 * n
            if budget < 0:
                _over(max_nodes)
            if tag == _DDICT:
                if name and name not in _DDICT_FACTORIES:
                    _fail(pos, "unknown defaultdict factory")
                v = target = collections.defaultdict(_DDICT_FACTORIES.get(name))
            else:
                cls: Optional[Type[object]] = classes.get(name) if classes is not None else None
                if classes is not None and not isinstance(cls, type):
                    _fail(pos, "unknown class %r" % name)
                if cls is None:
                    v = target = PlainInstance(__class__=name)
                else:
                    v = cls.__new__(cls)
                    target = v.__dict__
            memo.append(v)
            push = [tag, target, 2 * n, _UNSET, -1, v]
        elif tag in _COLS_TAGS and data[0] == VERSION2:
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            budget -= n * (2 if tag == _COL_DICT else 1)
            if budget < 0:
                _over(max_nodes)
            index = len(memo)
            memo.append(_UNSET)  # its items come after it in the memo
            # a block builds its tuples and lists in a few calls: the collector, woken by every
            # 700 of them, would walk all the values built so far again and again (a third of
            # the thaw of a dict of tuples); it is switched back on when the block is built
            collecting = gc.isenabled()
            gc.disable()
            try:
                if tag == _COL_LIST:
                    v, pos, budget = _read_block(data, pos, end, n, classes, memo, budget, max_nodes)
                else:
                    keys, pos, budget = _read_block(data, pos, end, n, classes, memo, budget, max_nodes, 0, False)
                    values, pos, budget = _read_block(data, pos, end, n, classes, memo, budget, max_nodes, 0, False)
                    v = dict(zip(keys, values))
            finally:
                if collecting:
                    gc.enable()
            memo[index] = v
        else:
            _fail(pos - 1, "unknown tag 0x%02x" % tag)

        if push is not None:
            if push[2] > 0:
                stack.append(push)
                if push[2] < _RUN_MIN or data[pos] not in _SCALAR_TAGS:
                    continue
                # the container opens with a run of scalars: read them in one tight loop and add
                # them in one call (the same values in the same order as one by one)
                vals, pos = _read_scalars(data, pos, end, push[2])
                _fill(push, vals, pos)
                if push[2] > 0:
                    continue
                stack.pop()
            v = _close(push, memo)
        # deliver v to the innermost open container, closing finished ones
        while True:
            if not stack:
                return v, pos
            top = stack[-1]
            kind, obj = top[0], top[1]
            if kind == _LIST or kind == _TUPLE or kind == _FROZENSET or kind == _DEQUE:
                obj.append(v)
            elif kind == _SET:
                obj.add(v)
            elif top[3] is _UNSET:
                if kind == _INST and type(v) is not str:
                    _fail(pos, "attribute names must be strings")
                top[3] = v
            else:
                obj[top[3]] = v
                top[3] = _UNSET
            top[2] -= 1
            if top[2] > 0:
                break
            stack.pop()
            v = _close(top, memo)


_RUN_MIN = 16  # below this many items, reading a container's scalars one by one is as fast
_SCALAR_TAGS = frozenset((_INT, _STR, _FLOAT, _NONE, _TRUE, _FALSE, _BIGINT))
_SEQUENCES = frozenset((_LIST, _TUPLE, _FROZENSET, _DEQUE))
_PLAIN_DICTS = frozenset((_DICT, _DDICT, _INST))  # dict.update is their item assignment


def _read_scalars(data: bytes, pos: int, end: int, n: int) -> Tuple[List[Any], int]:
    """(values, position after) of up to ``n`` tagged scalars at ``pos``, stopping before the
    first value that is not a scalar."""
    v: List[Any] = []
    append = v.append
    unpack_d = _PACK_D.unpack_from
    for _ in range(n):
        t = data[pos]
        if t == _INT:
            z = data[pos + 1]
            if z < 0x80:
                pos += 2
            elif data[pos + 2] < 0x80:
                z = (z & 0x7F) | (data[pos + 2] << 7)
                pos += 3
            elif data[pos + 3] < 0x80:
                z = (z & 0x7F) | ((data[pos + 2] & 0x7F) << 7) | (data[pos + 3] << 14)
                pos += 4
            else:
                z, pos = _varint_at(data, pos + 1)
            append((z >> 1) if not z & 1 else -((z + 1) >> 1))
        elif t == _STR:
            ln = data[pos + 1]
            if ln < 0x80:
                pos += 2
            else:
                ln, pos = _varint_at(data, pos + 1)
            if pos + ln > end:
                _fail(pos, "length exceeds the remaining data")
            append(data[pos : pos + ln].decode("utf-8", "surrogatepass"))
            pos += ln
        elif t == _FLOAT:
            if pos + 9 > end:
                _fail(pos, "unexpected end")
            append(unpack_d(data, pos + 1)[0])
            pos += 9
        elif t == _NONE or t == _TRUE or t == _FALSE:
            append(None if t == _NONE else t == _TRUE)
            pos += 1
        elif t == _BIGINT:
            x, pos = _int_at(data, pos, end)
            append(x)
        else:
            break
    return v, pos


def _fill(frame: List[Any], vals: List[Any], pos: int) -> None:
    """Add ``vals`` to the open container ``frame`` (see :func:`_decode`'s stack) as the deliver
    loop would one by one: a mapping's pending key first, then key/value pairs, then a new
    pending key if one is left over."""
    kind, obj = frame[0], frame[1]
    frame[2] -= len(vals)
    if kind in _SEQUENCES:
        obj.extend(vals)
        return
    if kind == _SET:
        obj.update(vals)
        return
    i = 0
    if frame[3] is not _UNSET:
        obj[frame[3]] = vals[0]
        frame[3] = _UNSET
        i = 1
    stop = i + ((len(vals) - i) & ~1)
    keys = vals[i:stop:2]
    if kind == _INST and not all(type(k) is str for k in keys):
        _fail(pos, "attribute names must be strings")
    if kind in _PLAIN_DICTS:
        dict.update(obj, zip(keys, vals[i + 1 : stop : 2]))
    else:  # Counter, OrderedDict: their own item assignment
        for k, x in zip(keys, vals[i + 1 : stop : 2]):
            obj[k] = x
    if stop < len(vals):
        frame[3] = vals[stop]


def _close(frame: List[Any], memo: List[Any]) -> Any:
    kind, obj = frame[0], frame[1]
    if kind == _TUPLE or kind == _FROZENSET:
        value = tuple(obj) if kind == _TUPLE else frozenset(obj)
        memo[frame[4]] = value
        return value
    if kind == _INST and isinstance(frame[5], BaseException) and "_tk_args" in frame[1]:
        args = frame[1].pop("_tk_args")
        frame[5].args = tuple(args) if type(args) is list else ()
    return frame[5]


# -- showing data without building it ------------------------------------------------------------
#
# A value of a few hundred bytes can stand for 2**40 values: a list that holds the same list twice,
# forty levels deep, is written once and referenced. Decoding keeps it small (references stay
# shared), but any *display* of it (JSON, repr) walks every reference where it appears. So showing
# data is bounded by what the display would cost, counted on the encoded bytes before anything is
# shown: :func:`expanded_size` counts the values with every shared reference expanded, in one pass
# over the bytes, and :func:`render` writes JSON text straight from the bytes (no value is built,
# so no set or dict is hashed) and stops at a budget of characters.


def _skip_int(data: bytes, pos: int, end: int) -> int:
    """The position after the integer (``_INT`` or ``_BIGINT``) at ``pos``."""
    tag = data[pos]
    if tag == _INT:
        return _varint_at(data, pos + 1)[1]
    if tag == _BIGINT:
        n, pos = _varint_at(data, pos + 2)
        if pos + n > end:
            _fail(pos, "length exceeds the remaining data")
        return pos + n
    _fail(pos, "expected an integer")


def _skip_scalars(data: bytes, pos: int, end: int, n: int) -> int:
    """The position after the ``n`` inline scalars of a ``_LIST_S``/``_TUPLE_S`` at ``pos``."""
    for _ in range(n):
        t = data[pos]
        if t == _INT or t == _BIGINT:
            pos = _skip_int(data, pos, end)
        elif t == _STR:
            ln, pos = _varint_at(data, pos + 1)
            pos += ln
        elif t == _FLOAT:
            pos += 9
        elif t == _NONE or t == _TRUE or t == _FALSE:
            pos += 1
        else:
            _fail(pos, "expected a scalar")
        if pos > end:
            _fail(pos, "length exceeds the remaining data")
    return pos


_CONTAINERS = frozenset((_LIST, _DICT, _SET, _COUNTER, _ODICT, _TUPLE, _FROZENSET, _DEQUE, _DDICT, _INST))
_BULK = frozenset((_LIST_S, _TUPLE_S, _LIST_I64, _LIST_F64, _LIST_BOOL, _LIST_STR))


def _header(data: bytes, pos: int, end: int) -> Tuple[int, int, int, str]:
    """(items, position of the first item, position after the header, name) of the container whose
    tag is at ``pos``; ``items`` counts a mapping's keys and values both. ``name`` is an instance's
    class or a defaultdict's factory ("" for the others)."""
    tag = data[pos]
    pos += 1
    name = ""
    if tag == _DEQUE:
        pos = _varint_at(data, pos)[1]  # maxlen
    elif tag == _DDICT or tag == _INST:
        name, pos = _name_at(data, pos, end)
    n, pos = _varint_at(data, pos)
    if n > end - pos:
        _fail(pos, "length exceeds the remaining data")
    if tag in _KEYED:
        n *= 2
    return n, pos, pos, name


def _skip_bulk(data: bytes, pos: int, end: int) -> Tuple[int, int]:
    """(elements, position after) of the bulk list whose tag is at ``pos``."""
    tag = data[pos]
    n, pos = _varint_at(data, pos + 1)
    if tag == _LIST_I64 or tag == _LIST_F64:
        pos += 8 * n
    elif tag == _LIST_BOOL:
        pos += n
    elif tag == _LIST_STR:
        if n > end - pos:
            _fail(pos, "length exceeds the remaining data")
        total = 0
        for _ in range(n):
            ln, pos = _varint_at(data, pos)
            total += ln
        pos += total
    else:
        if n > end - pos:
            _fail(pos, "length exceeds the remaining data")
        pos = _skip_scalars(data, pos, end, n)
    if pos > end:
        _fail(pos, "length exceeds the remaining data")
    return n, pos


def _skip_scalar(data: bytes, pos: int, end: int) -> int:
    """The position after the scalar (not a container, not a reference) at ``pos``."""
    tag = data[pos]
    if tag == _NONE or tag == _TRUE or tag == _FALSE:
        return pos + 1
    if tag == _INT or tag == _BIGINT:
        return _skip_int(data, pos, end)
    if tag == _FLOAT:
        pos += 9
    elif tag == _COMPLEX:
        pos += 17
    elif tag == _STR or tag == _BYTES or tag == _BYTEARRAY:
        n, pos = _varint_at(data, pos + 1)
        pos += n
    elif tag == _FRACTION:
        pos = _skip_int(data, _skip_int(data, pos + 1, end), end)
    elif tag == _RANGE:
        pos = _skip_int(data, _skip_int(data, _skip_int(data, pos + 1, end), end), end)
    else:
        _fail(pos, "unknown tag 0x%02x" % tag)
    if pos > end:
        _fail(pos, "length exceeds the remaining data")
    return pos


def _scan(data: bytes, cap: int) -> Tuple[int, List[int]]:
    """(values with shared references expanded, offset of each referable value by memo index).

    One pass over the bytes, checking their structure as :func:`decode` does. A reference costs what
    its target costs (counted once, when the target was closed); one to a value still open (a
    cycle) costs one. Stops as soon as the count passes ``cap`` and returns ``cap + 1``: the work
    is bounded by ``cap`` values and the length of the data.
    """
    end = len(data)
    pos = 1
    offsets: List[int] = []  # memo index -> offset of the value's tag
    sizes: List[int] = []  # memo index -> expanded values (0 while the value is open)
    stack: List[List[int]] = []  # open containers: [memo index, items left, expanded values so far]
    total = 0
    while True:
        tag = data[pos]
        if tag == _REF:
            i, pos = _varint_at(data, pos + 1)
            if i >= len(offsets):
                _fail(pos, "reference to an unknown value")
            value = sizes[i] or 1
        elif tag in _CONTAINERS:
            items, first, _, _ = _header(data, pos, end)
            offsets.append(pos)
            sizes.append(0)
            pos = first
            total += 1
            if items:
                stack.append([len(sizes) - 1, items, 1])
                if total > cap:
                    return cap + 1, offsets
                continue
            value = sizes[-1] = 1
            total -= 1  # counted below, as any finished value
        elif tag in _BULK:
            offsets.append(pos)
            n = _varint_at(data, pos + 1)[0]
            if total + n + 1 > cap:  # before walking the elements: a list's header says its length
                return cap + 1, offsets
            n, pos = _skip_bulk(data, pos, end)
            value = n + 1
            sizes.append(value)
        else:
            if tag == _BYTEARRAY:
                offsets.append(pos)
                sizes.append(1)
            pos = _skip_scalar(data, pos, end)
            value = 1
        total += value
        if total > cap:
            return cap + 1, offsets
        while stack:
            top = stack[-1]
            top[2] += value
            top[1] -= 1
            if top[1]:
                break
            stack.pop()
            value = sizes[top[0]] = top[2]
        if not stack:
            break
    if pos != end:
        raise CodecError("%d unexpected bytes after the value" % (end - pos))
    return total, offsets


def _checked(data: bytes) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes, got %s" % type(data).__name__)
    data = bytes(data)
    if data[:1] == bytes([VERSION2]):
        raise CodecError("codec version 2 (frozen states) is not rendered here: results are written in version 1")
    if not data or data[0] != VERSION:
        raise CodecError("unknown codec version")
    return data


def expanded_size(data: bytes, cap: int) -> int:
    """How many values showing ``data`` would write: every value, with each shared reference
    counted in full where it appears (a list referenced twice counts twice); a reference that
    closes a cycle counts one. Past ``cap`` it stops and returns ``cap + 1``.

    Reads the bytes once and builds nothing: O(len(data)) time, memory for one offset per
    referable value. Raises :class:`CodecError` for malformed data.
    """
    data = _checked(data)
    try:
        return _scan(data, cap)[0]
    except IndexError:
        raise CodecError("malformed data: unexpected end") from None


class _Full(Exception):
    """The text reached its budget of characters."""


_INT_DIGITS_BITS = 14_000  # ~4,200 digits: str() of more is refused by CPython and quadratic anyway


def _int_text(n: int) -> str:
    if n.bit_length() > _INT_DIGITS_BITS:
        return "<an integer of %d bits>" % n.bit_length()
    return str(n)


def _float_text(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), -float("inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


class _Renderer:
    """Writes the JSON text of encoded data (the shape ``json.dumps(value, default=repr)`` gives the
    decoded value), reading the bytes directly, until ``room`` characters are written.

    Lists, tuples, sets and deques are arrays; dicts, Counters, defaultdicts and instances are
    objects (an instance's first key is ``"__class__"``); keys that are not text are written as
    ``json.dumps`` writes them (``1`` -> ``"1"``) or, for containers, as their compact JSON text;
    bytes, complex numbers, fractions and ranges are their ``repr`` as a string; a reference that
    closes a cycle is the string ``"<cycle>"``; an integer too long to print is
    ``"<an integer of N bits>"``.
    """

    def __init__(self, data: bytes, offsets: List[int], room: int, quote: Callable[[str], str]) -> None:
        self.data = data
        self.end = len(data)
        self.offsets = offsets
        self.room = room
        self.quote = quote
        self.showing: Set[int] = set()  # offsets of the containers being written (a cycle's mark)

    def emit(self, out: List[str], text: str) -> None:
        self.room -= len(text)
        if self.room < 0:
            out.append(text[: len(text) + self.room])
            raise _Full
        out.append(text)

    def text_at(self, pos: int, n: int) -> str:
        """The text of the ``n`` UTF-8 bytes at ``pos``, or as much of it as the room can show."""
        if pos + n > self.end:
            _fail(pos, "length exceeds the remaining data")
        if n > 4 * self.room + 16:  # more than fits: a prefix (with a character cut in two, at worst)
            return self.data[pos : pos + 4 * self.room + 16].decode("utf-8", "replace")
        return self.data[pos : pos + n].decode("utf-8", "surrogatepass")

    def scalar(self, pos: int) -> Tuple[str, int, Optional[str]]:
        """(JSON text, position after, key) of the scalar at ``pos``: ``key`` is the text
        ``json.dumps`` makes of it as a dict key, None where the JSON text serves as the key."""
        data, end = self.data, self.end
        tag = data[pos]
        if tag == _INT or tag == _BIGINT:
            n, pos = _int_at(data, pos, end)
            text = _int_text(n)
            return (text if text[0] != "<" else self.quote(text)), pos, text
        if tag == _STR:
            n, pos = _varint_at(data, pos + 1)
            s = self.text_at(pos, n)
            return self.quote(s), pos + n, s
        if tag == _FLOAT:
            if pos + 9 > end:
                _fail(pos, "unexpected end")
            text = _float_text(_PACK_D.unpack_from(data, pos + 1)[0])
            return text, pos + 9, text
        if tag == _NONE or tag == _TRUE or tag == _FALSE:
            text = "null" if tag == _NONE else "true" if tag == _TRUE else "false"
            return text, pos + 1, text
        if tag == _BYTES or tag == _BYTEARRAY:
            n, pos = _varint_at(data, pos + 1)
            if pos + n > end:
                _fail(pos, "length exceeds the remaining data")
            raw = repr(data[pos : pos + min(n, self.room + 1)])
            return self.quote(raw if tag == _BYTES else "bytearray(%s)" % raw), pos + n, None
        if tag == _COMPLEX:
            if pos + 17 > end:
                _fail(pos, "unexpected end")
            value = complex(_PACK_D.unpack_from(data, pos + 1)[0], _PACK_D.unpack_from(data, pos + 9)[0])
            return self.quote(repr(value)), pos + 17, None
        if tag == _FRACTION:
            num, pos = _int_at(data, pos + 1, end)
            den, pos = _int_at(data, pos, end)
            return self.quote("Fraction(%s, %s)" % (_int_text(num), _int_text(den))), pos, None
        if tag == _RANGE:
            start, pos = _int_at(data, pos + 1, end)
            stop, pos = _int_at(data, pos, end)
            step, pos = _int_at(data, pos, end)
            bounds = [_int_text(start), _int_text(stop)] + ([] if step == 1 else [_int_text(step)])
            return self.quote("range(%s)" % ", ".join(bounds)), pos, None
        _fail(pos, "unknown tag 0x%02x" % tag)

    def bulk(self, pos: int, out: List[str], level: int, indent: Optional[int]) -> int:
        """Write the bulk list at ``pos`` as an array; returns the position after it."""
        data, end = self.data, self.end
        tag = data[pos]
        n, pos = _varint_at(data, pos + 1)
        if not n:
            self.emit(out, "[]")
            return pos
        if n > end - pos:
            _fail(pos, "length exceeds the remaining data")
        close = self.open(out, "[", level, indent)
        sep = self.separator(level, indent)
        if tag == _LIST_S or tag == _TUPLE_S:
            for i in range(n):
                if i:
                    self.emit(out, sep)
                text, pos, _ = self.scalar(pos)
                self.emit(out, text)
        elif tag == _LIST_I64 or tag == _LIST_F64:
            if pos + 8 * n > end:
                _fail(pos, "length exceeds the remaining data")
            arr = array("q" if tag == _LIST_I64 else "d")
            arr.frombytes(data[pos : pos + 8 * min(n, self.room // 2 + 1)])  # each takes 2+ characters
            if _BIG:
                arr.byteswap()
            texts = map(str, arr) if tag == _LIST_I64 else map(_float_text, arr)
            self.emit(out, next(texts))
            for text in texts:
                self.emit(out, sep)
                self.emit(out, text)
            pos += 8 * n
        elif tag == _LIST_BOOL:
            chunk = data[pos : pos + n]
            if chunk.strip(b"\x00\x01"):
                _fail(pos, "bad boolean")
            for i, b in enumerate(chunk):
                if i:
                    self.emit(out, sep)
                self.emit(out, "true" if b else "false")
            pos += n
        else:  # _LIST_STR: the lengths, then the texts
            lengths = []
            for _ in range(n):
                ln, pos = _varint_at(data, pos)
                lengths.append(ln)
            for i, ln in enumerate(lengths):
                if i:
                    self.emit(out, sep)
                self.emit(out, self.quote(self.text_at(pos, ln)))
                pos += ln
        self.emit(out, close)
        return pos

    def open(self, out: List[str], bracket: str, level: int, indent: Optional[int]) -> str:
        """Write an opening bracket and the first item's indentation; returns the closing text."""
        closer = "]" if bracket == "[" else "}"
        if indent is None:
            self.emit(out, bracket)
            return closer
        self.emit(out, bracket + "\n" + " " * (indent * (level + 1)))
        return "\n" + " " * (indent * level) + closer

    @staticmethod
    def separator(level: int, indent: Optional[int]) -> str:
        return ", " if indent is None else ",\n" + " " * (indent * (level + 1))

    def key(self, pos: int, out: List[str]) -> int:
        """Write the dict key at ``pos`` and ``": "``; returns the position after the key."""
        tag = self.data[pos]
        if tag in _CONTAINERS or tag in _BULK or tag == _REF:
            inner: List[str] = []
            pos = self.value(pos, inner, 0, None)
            text = self.quote("".join(inner))
        else:
            shown, pos, key = self.scalar(pos)
            text = shown if key is None else self.quote(key)
        self.emit(out, text + ": ")
        return pos

    def value(self, pos: int, out: List[str], level: int, indent: Optional[int], as_text: bool = False) -> int:
        """Write the one value at ``pos`` (a string as itself if ``as_text``); returns the position
        after it. Nested containers are written without recursion; only a key that is a container
        recurses (a dict key nested in a dict key nested in ...: the recursion limit stops it)."""
        data, end = self.data, self.end
        # each open container: [items left, its level, its offset, closing text, keyed, separator];
        # each reference followed: [-1, the position after the reference]
        stack: List[List[Any]] = []
        while True:
            tag = data[pos]
            if tag == _REF:
                i, after = _varint_at(data, pos + 1)
                if i >= len(self.offsets):
                    _fail(pos, "reference to an unknown value")
                if self.offsets[i] not in self.showing:
                    stack.append([-1, after])
                    pos = self.offsets[i]
                    continue
                self.emit(out, self.quote("<cycle>"))
                pos = after
            elif tag in _CONTAINERS:
                start = pos
                items, pos, _, name = _header(data, pos, end)
                keyed = tag in _KEYED
                if tag == _INST:
                    close = self.open(out, "{", level, indent)
                    self.emit(out, self.quote("__class__") + ": " + self.quote(name))
                    self.emit(out, self.separator(level, indent) if items else close)
                elif items:
                    close = self.open(out, "{" if keyed else "[", level, indent)
                else:
                    self.emit(out, "{}" if keyed else "[]")
                if items:
                    self.showing.add(start)
                    stack.append([items, level, start, close, keyed, self.separator(level, indent)])
                    level += 1
                    if keyed:
                        pos = self.key(pos, out)
                        stack[-1][0] -= 1
                    continue
            elif tag in _BULK:
                pos = self.bulk(pos, out, level, indent)
            elif tag == _STR and as_text and not stack:
                n, pos = _varint_at(data, pos + 1)
                self.emit(out, self.text_at(pos, n))
                pos += n
            else:
                text, pos, _ = self.scalar(pos)
                self.emit(out, text)
            # the value is written: close what it finished, then go on to the next item
            while stack:
                top = stack[-1]
                if top[0] < 0:  # back from a followed reference
                    pos = top[1]
                    stack.pop()
                    continue
                top[0] -= 1
                if top[0]:
                    self.emit(out, top[5])
                    if top[4]:
                        pos = self.key(pos, out)
                        top[0] -= 1
                    break
                self.emit(out, top[3])
                self.showing.discard(top[2])
                level = top[1]
                stack.pop()
            if not stack:
                return pos


def render(
    data: bytes, max_chars: int, max_nodes: int, indent: Optional[int] = None, as_text: bool = False
) -> Tuple[str, bool]:
    """(text, complete): the JSON text of the value ``data`` encodes, at most ``max_chars``
    characters of it (``complete`` is False when it was cut there).

    The text is what ``json.dumps(decode(data), default=repr, indent=indent)`` gives for plain
    data (see :class:`_Renderer` for the rest); with ``as_text`` a top-level string is written as
    itself. Nothing is decoded into values: the bytes are read once to count the values with
    every shared reference expanded (:func:`expanded_size`), and if that passes ``max_nodes``,
    :class:`OverBudget` is raised before anything is written; then the text is written from the
    bytes until ``max_chars``. Time and memory are bounded by ``max_nodes``, ``max_chars`` and the
    length of the data, whatever it holds. Raises :class:`CodecError` for malformed data.
    """
    from json.encoder import encode_basestring_ascii  # lazily: slices never render

    data = _checked(data)
    try:
        nodes, offsets = _scan(data, max_nodes)
        if nodes > max_nodes:
            raise OverBudget("the data expands to more than %d values" % max_nodes)
        out: List[str] = []
        renderer = _Renderer(data, offsets, max_chars, encode_basestring_ascii)
        try:
            renderer.value(1, out, 0, indent, as_text)
        except _Full:
            return "".join(out), False
        return "".join(out), True
    except IndexError:
        raise CodecError("malformed data: unexpected end") from None
    except (ValueError, OverflowError, RecursionError, MemoryError, struct.error) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError("malformed data: %s" % exc) from None


# ---------------------------------------------------------------------------------------------
# Version 2 (``mkt-bin-2``): version 1's stream plus columnar blocks (issue 18, item 4).
#
# A list or a dict whose items share one shape is written as columns: every int of a column in
# one ``array('q')``, every float in one ``array('d')``, every string of a column in one UTF-8 blob
# joined by NUL (split in one call when read back), tuples of scalars as one column per position,
# instances of one job class with the same attribute names as one column per attribute. Anything
# else is written exactly as version 1 writes it. Tuples and instances written in a block take
# their memo indices in order, as version 1 gives them, and are only written so when each is
# met for the first time (a shared one falls back to the general path): references keep working.
#
#   _COL_LIST n block            a list of n items
#   _COL_DICT n keyblock block   a dict of n items (keys in one block, values in another)
#   block:   _C_I32 4n bytes | _C_I64 8n bytes | _C_F64 8n bytes | _C_STR len blob
#          | _C_ANY (a _LIST_S block)
#          | _C_TUP k block*k | _C_LST k block*k | _C_INST name knames(_C_STR block) block*k
#          | _C_DICT k keys(a scalar block) block*k   (dicts with the same keys in the same order)
#   (k >= 1; tuples or lists of k items, instances of k attributes: one block per position, of
#   the same n items, nested _COL_DEPTH deep at most; the scalar blocks are the columns:
#   _C_I32, _C_I64, _C_F64, _C_STR, _C_ANY)
# (ints take the narrowest of _C_I32 and _C_I64 that holds them all, else _C_ANY)
# Every item of a block costs at least one byte (a blob of n strings holds n - 1 NULs), so a
# block's counts are bounded by the bytes that remain before anything is built.
# ---------------------------------------------------------------------------------------------

NAME2 = "mkt-bin-2"
VERSION2 = 2
_VERSIONS = {NAME: VERSION, NAME2: VERSION2}
# state #0 is written in this version (the market builds it); every later state in the version
# of the state it was thawed from, so a replay writes what the honest slice wrote
STATE_VERSION = VERSION2
_COL_LIST, _COL_DICT = 0x30, 0x31
_C_I64, _C_F64, _C_STR, _C_ANY, _C_TUP, _C_INST, _C_I32, _C_LST = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08
_C_DICT = 0x09
_COL_DEPTH = 6  # blocks inside blocks: tuples of tuples of ... this deep at most
_COLUMN_ARRAYS = {_C_I64: ("q", 8), _C_F64: ("d", 8), _C_I32: ("i", 4)}
_INT_COLUMNS = ((("i", _C_I32),) if array("i").itemsize == 4 else ()) + (("q", _C_I64),)
if array("i").itemsize != 4:  # no such platform runs workers today: the 4-byte column is refused
    del _COLUMN_ARRAYS[_C_I32]
_COL_MIN = 16  # below this many items, version 1's paths are as fast
_COLS_TAGS = frozenset((_COL_LIST, _COL_DICT))


def version_named(name: str) -> int:
    """The codec version an envelope header's ``codec`` field names; CodecError if unknown."""
    try:
        return _VERSIONS[name]
    except (KeyError, TypeError):
        raise CodecError("unknown codec %r (this worker knows %s)" % (name, ", ".join(sorted(_VERSIONS)))) from None


def name_of_version(version: int) -> str:
    """The name an envelope header's ``codec`` field gives codec ``version``."""
    return NAME2 if version == VERSION2 else NAME


def version_of(data: bytes) -> int:
    """The codec version ``data`` was written in (its first byte); CodecError if unknown."""
    if not data or data[0] not in (VERSION, VERSION2):
        raise CodecError("unknown codec version")
    return data[0]


def _scalar_column(col: Sequence[Any], out: bytearray, kinds: Optional[Set[type]] = None) -> bool:
    """Write ``col`` (scalars) as one column; False (nothing written) if it holds a non-scalar.
    ``kinds``: the set of the items' types, if the caller has it."""
    if kinds is None:
        kinds = set(map(type, col))
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind is int:
            for code, tag in _INT_COLUMNS:  # the narrowest that holds every value
                try:
                    arr = array(code, col)
                except OverflowError:
                    continue
                if _BIG:
                    arr.byteswap()
                out.append(tag)
                out += arr.tobytes()
                return True
        elif kind is float:
            arr = array("d", col)
            if _BIG:
                arr.byteswap()
            out.append(_C_F64)
            out += arr.tobytes()
            return True
        elif kind is str:
            blob = "\x00".join(col).encode("utf-8", "surrogatepass")
            if blob.count(b"\x00") == len(col) - 1:  # no string holds a NUL itself
                out.append(_C_STR)
                _uvarint(len(blob), out)
                out += blob
                return True
    if not kinds <= _SCALARS:
        return False
    out.append(_C_ANY)
    if kinds == _NONE_KIND or kinds == _BOOL_KIND:  # the bytes _scalar_run writes, in one call
        out.append(_LIST_S)
        _uvarint(len(col), out)
        out += bytes(len(col)).replace(b"\x00", b"\x01") if kinds == _NONE_KIND else bytes(col).translate(_BOOL_TAGS)
        return True
    return _scalar_run(_LIST_S, col, kinds, out)


_NONE_KIND, _BOOL_KIND = {type(None)}, {bool}
_BOOL_TAGS = bytes.maketrans(b"\x00\x01", bytes([_FALSE, _TRUE]))


def _first_seen(items: Sequence[Any], memo: Dict[int, int], base: int) -> Optional[Dict[int, int]]:
    """The memo entries ``items`` would take (id -> index from ``base``, in order) if each is a
    distinct object not written yet, else None."""
    entries = dict(zip(map(id, items), range(base, base + len(items))))
    if len(entries) != len(items) or not memo.keys().isdisjoint(entries.keys()):  # walks the shorter
        return None
    return entries


def _unshared(items: Sequence[Any], held: int) -> bool:
    """True if nothing but their container (and ``held`` lists of the encoder's own) refers to
    any of ``items``: then no other place of the state can hold them, none was written before
    and none will be met again, so they need no memo entries (only their indices), which saves
    an id, a hash and an entry per item. CPython only (reference counts); elsewhere False, and
    the memo entries are made (the same bytes either way)."""
    if _REFCOUNT is None:
        return False
    counts = set(map(_REFCOUNT, items))
    return len(counts) == 1 and counts.pop() == 2 + held  # + 1: the reference of the call


_REFCOUNT = getattr(sys, "getrefcount", None) if sys.implementation.name == "cpython" else None


def _block(
    items: Sequence[Any],
    out: bytearray,
    memo: Dict[int, int],
    classes: Mapping[str, type],
    unlisted: List[int],
    held: int,
    depth: int = 0,
) -> bool:
    """Write ``items`` as one block (see above); False (nothing written, memo as it was) if they
    do not fit one. Tuples, lists and instances written get their memo indices: the block's
    items first, then those of its columns, column after column. ``held``: 1 if ``items`` is a
    list the encoder built (it holds a reference to each), 0 if it is the state's own list."""
    mark = len(out)
    kinds = set(map(type, items))
    if len(kinds) != 1 or kinds <= _SCALARS:
        return _scalar_column(items, out, kinds)
    if depth >= _COL_DEPTH:
        return False
    kind = kinds.pop()
    if kind is tuple or kind is list:
        lengths = set(map(len, items))
        if len(lengths) != 1 or 0 in lengths:
            return False
        entries = _first_seen(items, memo, len(memo) + unlisted[0]) if not _unshared(items, held) else {}
        if entries is None:
            return False
        columns = [list(map(itemgetter(i), items)) for i in range(lengths.pop())]
        out.append(_C_TUP if kind is tuple else _C_LST)
        _uvarint(len(columns), out)
    elif kind is dict:  # records: every dict with the same keys in the same order
        names = set(map(tuple, items))
        if len(names) != 1:
            return False
        keys = names.pop()
        entries = _first_seen(items, memo, len(memo) + unlisted[0]) if not _unshared(items, held) else {}
        if not keys or entries is None or not set(map(type, keys)) <= _SCALARS:
            return False
        columns = [list(map(itemgetter(a), items)) for a in keys]
        out.append(_C_DICT)
        _uvarint(len(keys), out)
        _scalar_column(keys, out)
    elif classes.get(kind.__name__) is kind and not issubclass(kind, BaseException):
        try:
            attrs = list(map(vars, items))
        except TypeError:
            return False
        if set(map(type, attrs)) != {dict}:
            return False
        names = set(map(tuple, attrs))
        if len(names) != 1:
            return False
        keys = names.pop()
        entries = _first_seen(items, memo, len(memo) + unlisted[0]) if not _unshared(items, held) else {}
        if not keys or entries is None:
            return False
        columns = [list(map(itemgetter(a), attrs)) for a in keys]
        out.append(_C_INST)
        _str(kind.__name__, out)
        _uvarint(len(keys), out)
        _scalar_column(keys, out)  # attribute names: strings, always a column
    else:
        return False
    before = len(memo), unlisted[0]
    if entries:
        memo.update(entries)
    else:
        unlisted[0] += len(items)
    for column in columns:
        if not _block(column, out, memo, classes, unlisted, 1, depth + 1):
            _forget(memo, before, unlisted)
            del out[mark:]
            return False
    return True


def _columns(
    x: Any, t: type, out: bytearray, memo: Dict[int, int], classes: Mapping[str, type], unlisted: List[int]
) -> bool:
    """Write the list or dict ``x`` (its own memo index taken) as a columnar block if it fits:
    a dict's keys as one block, then its values as another."""
    mark = len(out)
    before = len(memo), unlisted[0]
    out.append(_COL_LIST if t is list else _COL_DICT)
    _uvarint(len(x), out)
    if t is list:
        if _block(x, out, memo, classes, unlisted, 0):
            return True
    elif _block(list(x), out, memo, classes, unlisted, 1) and _block(list(x.values()), out, memo, classes, unlisted, 1):
        return True
    _forget(memo, before, unlisted)
    del out[mark:]
    return False


def _forget(memo: Dict[int, int], before: Tuple[int, int], unlisted: List[int]) -> None:
    """Put the memo back as it was ``before`` (its size, the unlisted count): a block written,
    then abandoned."""
    while len(memo) > before[0]:
        memo.popitem()
    unlisted[0] = before[1]


def _read_scalar_column(data: bytes, pos: int, end: int, n: int, as_list: bool = True) -> Tuple[Sequence[Any], int]:
    """(values, position after) of the column of ``n`` scalars at ``pos``; without ``as_list``
    a column of numbers may come back as its ``array`` (iterated once, by ``zip``)."""
    tag = data[pos]
    pos += 1
    if tag in _COLUMN_ARRAYS:
        code, size = _COLUMN_ARRAYS[tag]
        if pos + size * n > end:
            _fail(pos, "column exceeds the remaining data")
        arr = array(code)
        arr.frombytes(data[pos : pos + size * n])
        if _BIG:
            arr.byteswap()
        return (arr.tolist() if as_list else arr), pos + size * n
    if tag == _C_STR:
        ln, pos = _varint_at(data, pos)
        if pos + ln > end or n > ln + 1:
            _fail(pos, "column exceeds the remaining data")
        blob = data[pos : pos + ln]
        if n == 0:
            if ln:
                _fail(pos, "strings in an empty column")
            return [], pos
        v = (blob.decode("ascii") if blob.isascii() else blob.decode("utf-8", "surrogatepass")).split("\x00")
        if len(v) != n:
            _fail(pos, "column holds %d strings, expected %d" % (len(v), n))
        return v, pos + ln
    if tag == _C_ANY:
        if data[pos] != _LIST_S:
            _fail(pos, "expected a run of scalars")
        m, pos = _varint_at(data, pos + 1)
        if m != n or n > end - pos:
            _fail(pos, "column length does not match its block")
        run = data[pos : pos + n]
        if not run.strip(b"\x01"):  # all None, or all bools: in one call
            return [None] * n, pos + n
        if not run.strip(b"\x02\x03"):
            return list(map(_TRUE.__eq__, run)), pos + n
        v, pos = _read_scalars(data, pos, end, n)
        if len(v) != n:
            _fail(pos, "expected a scalar")
        return v, pos
    _fail(pos - 1, "unknown column 0x%02x" % tag)


def _read_block(
    data: bytes,
    pos: int,
    end: int,
    n: int,
    classes: Optional[Mapping[str, type]],
    memo: List[Any],
    budget: int,
    max_nodes: int,
    depth: int = 0,
    as_list: bool = True,
) -> Tuple[Sequence[Any], int, int]:
    """(items, position after, budget left) of the block of ``n`` items at ``pos`` (a list, or
    without ``as_list`` maybe an ``array`` of numbers, for ``zip`` to read once)."""
    tag = data[pos]
    if tag != _C_TUP and tag != _C_LST and tag != _C_INST and tag != _C_DICT:
        scalars, pos = _read_scalar_column(data, pos, end, n, as_list)
        return scalars, pos, budget
    if depth >= _COL_DEPTH:
        _fail(pos, "blocks nested too deep")
    pos += 1
    name = ""
    cls: Optional[Type[object]] = None
    if tag == _C_INST:
        name, pos = _name_at(data, pos, end)
        cls = classes.get(name) if classes is not None else None
        if classes is not None and not isinstance(cls, type):
            _fail(pos, "unknown class %r" % name)
    k, pos = _varint_at(data, pos)
    if k == 0 or k > end - pos or n * k > 8 * (end - pos) + 8 * k:
        _fail(pos, "block exceeds the remaining data")
    budget -= n * k * (1 if tag == _C_TUP or tag == _C_LST else 2)
    if budget < 0:
        _over(max_nodes)
    names: List[Any] = []
    if tag == _C_INST or tag == _C_DICT:
        read, pos = _read_scalar_column(data, pos, end, k)
        names = list(read)
        if tag == _C_INST and not all(type(a) is str for a in names):
            _fail(pos, "attribute names must be strings")
        if len(set(names)) != k:
            _fail(pos, "a key is written twice")
    base = len(memo)
    memo.extend(repeat(_UNSET, n))  # the items' indices come before their columns' items
    columns = []
    for _ in range(k):
        column, pos, budget = _read_block(data, pos, end, n, classes, memo, budget, max_nodes, depth + 1, False)
        columns.append(column)
    if tag == _C_TUP:
        v: List[Any] = list(zip(*columns))
    elif tag == _C_LST:
        v = list(map(list, zip(*columns)))
    elif tag == _C_DICT:
        v = list(map(dict, map(zip, repeat(names), zip(*columns))))
    elif cls is None:
        heads = ["__class__"] + names
        v = list(map(PlainInstance, map(zip, repeat(heads), zip(repeat(name, n), *columns))))
    else:
        v = list(map(cls.__new__, repeat(cls, n)))
        for obj, values in zip(v, zip(*columns)):
            obj.__dict__.update(zip(names, values))
    memo[base : base + n] = v
    return v, pos, budget
