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
"""

from __future__ import annotations

import collections
import struct
import sys
from array import array

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

__all__ = ["CodecError", "PlainInstance", "encode", "decode", "NAME"]

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
_BIG = sys.byteorder == "big"


class CodecError(ValueError):
    """Raised for values that cannot be encoded and for malformed input."""


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
        for r in raws:
            _uvarint(len(r), out)
        out += b"".join(raws)
        return True
    return _scalar_run(_LIST_S, obj, {first}, out)


_SCALARS = frozenset((int, float, str, bool, type(None)))


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


def encode(obj: Any, classes: Optional[Mapping[str, type]] = None) -> bytes:
    """Encode ``obj`` to bytes; raises :class:`CodecError` for foreign types.

    ``classes`` maps names to the job module's classes whose instances may be
    encoded (by class name and ``__dict__``).
    """
    classes = classes or {}
    out = bytearray([VERSION])
    memo: Dict[int, int] = {}
    keep: List[object] = []  # temporaries whose id() must stay unique while encoding
    open_immutables: Set[Optional[int]] = set()  # memo indices of the tuples and frozensets being written
    stack: List[Iterator[Any]] = [iter((obj,))]
    owners: List[Optional[int]] = [None]  # memo index of each open container (None: the top level)
    children: Iterator[Any]
    while stack:
        for x in stack[-1]:
            t = type(x)
            if t is int:
                if -_SMALL <= x < _SMALL:
                    out += _SMALL_INTS[x]
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
            index = len(memo)
            memo[id(x)] = index
            keep.append(x)
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
                out.append(_INST)
                _str(t.__name__, out)
                _uvarint(len(attrs), out)
                children = _pairs(attrs)
            else:
                raise CodecError(
                    "a value of type %s cannot be frozen (only plain data "
                    "and instances of the job's own classes)" % t.__name__
                )
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


_SORTABLE = (int, float, str, bytes)


def _set_order(s: Iterable[Any]) -> List[Any]:
    """Sets of scalars are written sorted so equal sets encode equally."""
    items = list(s)
    kinds = {type(x) for x in items}
    if len(kinds) == 1 and kinds.pop() in _SORTABLE:
        try:
            items.sort()
        except TypeError:
            pass
    return items


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


def decode(data: bytes, classes: Optional[Mapping[str, type]] = None) -> Any:
    """Decode bytes made by :func:`encode`.

    With ``classes`` (name -> class), job instances are rebuilt without
    calling ``__init__``; without it they become :class:`PlainInstance`.
    Raises :class:`CodecError` for anything malformed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("expected bytes, got %s" % type(data).__name__)
    data = bytes(data)
    if not data or data[0] != VERSION:
        raise CodecError("unknown codec version")
    try:
        value, pos = _decode(data, classes)
    except CodecError:
        raise
    except IndexError:
        raise CodecError("malformed data: unexpected end") from None
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError, struct.error, UnicodeDecodeError) as exc:
        # e.g. an unhashable value where a dict key was expected
        raise CodecError("malformed data: %s" % exc) from None
    if pos != len(data):
        raise CodecError("%d unexpected bytes after the value" % (len(data) - pos))
    return value


def _decode(data: bytes, classes: Optional[Mapping[str, type]]) -> Tuple[Any, int]:
    end = len(data)
    pos = 1
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
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            v = []
            append = v.append
            for _ in range(n):
                t = data[pos]
                if t == _INT:
                    z = data[pos + 1]
                    if z < 0x80:
                        pos += 2
                    else:
                        z, pos = _varint_at(data, pos + 1)
                    append((z >> 1) if not z & 1 else -((z + 1) >> 1))
                elif t == _STR:
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
            lengths = []
            for _ in range(n):
                ln, pos = _varint_at(data, pos)
                lengths.append(ln)
            total = sum(lengths)
            if pos + total > end:
                _fail(pos, "length exceeds the remaining data")
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
            v = _EMPTY[tag]()
            memo.append(v)
            push = [tag, v, n * (2 if tag in _KEYED else 1), _UNSET, -1, v]
        elif tag == _TUPLE or tag == _FROZENSET:
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
            memo.append(_UNSET)  # unfinished until all items are read
            push = [tag, [], n, _UNSET, len(memo) - 1, None]
        elif tag == _DEQUE:
            maxlen, pos = _varint_at(data, pos)
            n, pos = _varint_at(data, pos)
            if n > end - pos or maxlen > end:
                _fail(pos, "length exceeds the remaining data")
            v = collections.deque(maxlen=None if maxlen == 0 else maxlen - 1)
            memo.append(v)
            push = [tag, v, n, _UNSET, -1, v]
        elif tag == _DDICT or tag == _INST:
            if data[pos] != _STR:
                _fail(pos, "expected a name")
            ln, pos = _varint_at(data, pos + 1)
            if pos + ln > end:
                _fail(pos, "length exceeds the remaining data")
            name = data[pos : pos + ln].decode("utf-8", "surrogatepass")
            pos += ln
            n, pos = _varint_at(data, pos)
            if n > end - pos:
                _fail(pos, "length exceeds the remaining data")
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
        else:
            _fail(pos - 1, "unknown tag 0x%02x" % tag)

        if push is not None:
            if push[2] > 0:
                stack.append(push)
                continue
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


def _close(frame: List[Any], memo: List[Any]) -> Any:
    kind, obj = frame[0], frame[1]
    if kind == _TUPLE or kind == _FROZENSET:
        value = tuple(obj) if kind == _TUPLE else frozenset(obj)
        memo[frame[4]] = value
        return value
    return frame[5]
