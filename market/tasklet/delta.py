"""Incremental freezing inside one process: re-encode only what changed since the last freeze.

A :class:`Freezer` keeps, for one state (a list, dict, set or tuple at the root), a table of its
containers ("nodes": every list, dict and set reached from the root, and every tuple that holds
one).  A list's items, and a dict's keys and values in insertion order, are cut into chunks of
``CHUNK`` items; each chunk is kept as a shallow copy (what it held, by identity) and as bytes
from :func:`codec.encode` (its leaves, with each child node replaced by the node's number).  The
next :meth:`Freezer.freeze` finds the changed chunks by comparing what each list holds now with
the copy *by identity* and re-encodes those only: what it returns, a :class:`Delta`, is the
changed chunks.  :meth:`Freezer.thaw` (or :func:`thaw` of a :class:`Store` that applied the
deltas) rebuilds the whole state from the chunks' bytes alone.

Nothing here leaves the process: the state checked in to the market is always one whole, ordinary
``codec.encode`` of the state (byte-identical to a fresh freeze; the codec's format, whatever its
version, is not known here: chunks are encoded and decoded through its public API only).

Identity, not equality: ``[1] == [True]`` and ``[0.0] == [-0.0]`` are equal but encode
differently, so an equality test could keep a stale chunk (a wrong answer after a thaw).  On
CPython the comparison is a ``memcmp`` of the lists' item pointers (checked at import on a list
whose pointers are known; the saved copies keep every compared object alive, so an equal address is
the same object).  Elsewhere (PyPy, or a layout that fails the check) it is ``operator.is_``
per item: exact, slower.

Tuples and frozensets are nodes too, not plain values: the codec writes a tuple met twice as a
reference to the first, so two chunks encoded apart must not each hold a copy of it.

What it refuses (:class:`Unsupported`; the caller freezes whole instead): anything that is not a
list, dict, set, tuple, frozenset or a value the codec writes in place (int, float, complex, str,
bytes, bool, None, range) -- job instances, deques, functions...
"""

from __future__ import annotations

import operator
import sys

from . import codec

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["CHUNK", "Delta", "Freezer", "Store", "Unsupported", "identity_compare_native"]

CHUNK = 4096  # items per chunk: one chunk re-encoded costs ~1 ms; the table stays small
# what the codec writes in place (never as a shared reference): kept in the chunks as they are
_LEAF_SCALARS = frozenset((int, float, complex, str, bytes, bool, type(None), range))
_LIST, _DICT, _SET, _TUPLE, _FROZENSET = "list", "dict", "set", "tuple", "frozenset"
_KINDS: Dict[type, str] = {list: _LIST, dict: _DICT, set: _SET, tuple: _TUPLE, frozenset: _FROZENSET}
_FIXED = frozenset((_TUPLE, _FROZENSET))  # immutable: built from their items at thaw
_EMPTY = {_LIST: list, _DICT: dict, _SET: set}


class Unsupported(ValueError):
    """The state holds something this layer does not track: freeze it whole instead."""


# -- identity comparison of two lists' item ranges ---------------------------------------------


_is = operator.is_
_SMALL = 64  # up to this many items a per-item identity test costs less than a memcmp call


def _slow_same(a: list, b: list, i: int, j: int) -> bool:
    return all(map(operator.is_, a[i:j], b[i:j]))


def _native_same() -> Optional[Callable[[list, list, int, int], bool]]:
    """memcmp of the item pointer arrays of two lists, on a CPython whose list layout is the one
    checked here; None where it is not."""
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        memcmp = ctypes.CDLL(None).memcmp
        memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        memcmp.restype = ctypes.c_int
        ptr = ctypes.sizeof(ctypes.c_void_p)
        offset = 3 * ptr  # PyObject_VAR_HEAD: refcount, type, size; then ob_item
        items_of = ctypes.c_void_p.from_address

        def items(lst: list) -> int:
            return items_of(id(lst) + offset).value or 0

        probe_a, probe_b = object(), object()
        probe = [probe_a, probe_b, probe_a]
        base = items(probe)
        pointers = (ctypes.c_void_p * 3).from_address(base)
        if [pointers[0], pointers[1], pointers[2]] != [id(probe_a), id(probe_b), id(probe_a)]:
            return None
    except (ImportError, OSError, AttributeError, ValueError, TypeError):
        return None

    def same(a: list, b: list, i: int, j: int) -> bool:
        if j <= i:
            return True
        # both lists are alive and unchanged while this runs: no Python code runs in between
        return memcmp(items(a) + i * ptr, items(b) + i * ptr, (j - i) * ptr) == 0

    if not (same(probe, [probe_a, probe_b, probe_a], 0, 3) and not same(probe, [probe_a, probe_a], 0, 2)):
        return None
    return same


_NATIVE = _native_same()
_same = _NATIVE or _slow_same


def identity_compare_native() -> bool:
    """True when chunks are compared by memcmp (fast), False for the per-item fallback."""
    return _NATIVE is not None


# -- the freezer -------------------------------------------------------------------------------


class _Node:
    """One tracked container: the object (kept alive: its id is its key), its shallow copy and the
    bytes of each chunk."""

    __slots__ = ("obj", "kind", "num", "saved", "saved_vals", "chunks", "kids")

    def __init__(self, obj: Any, kind: str, num: int) -> None:
        self.obj, self.kind, self.num = obj, kind, num
        self.saved: Optional[list] = None  # list items / dict keys / tuple items, as last encoded
        self.saved_vals: Optional[list] = None  # dict values
        self.chunks: List[bytes] = []
        self.kids: List[Tuple[List[int], List[int]]] = []  # per chunk: positions of its child keys, values


class Delta:
    """What one :meth:`Freezer.freeze` changed: ``root`` node number; ``nodes``: number ->
    (kind, chunk count, {chunk index: bytes}) for each new or changed node; ``gone``: numbers of
    the nodes no longer reached."""

    __slots__ = ("root", "nodes", "gone")

    def __init__(self, root: int, nodes: Dict[int, Tuple[str, int, Dict[int, bytes]]], gone: List[int]) -> None:
        self.root, self.nodes, self.gone = root, nodes, gone

    def size(self) -> int:
        """Bytes of chunk data in this delta."""
        return sum(len(b) for _, _, chunks in self.nodes.values() for b in chunks.values())


class Freezer:
    """Incremental freezes of one state (see the module's docstring)."""

    def __init__(self, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.chunk = chunk
        self._nodes: Dict[int, _Node] = {}  # id(obj) -> node
        self._next = 0
        self._root = -1

    def _node(self, obj: Any, reached: Dict[int, _Node], todo: List[_Node]) -> int:
        """The number of ``obj``'s node (made on first sight), queued to be visited this freeze."""
        key = id(obj)
        node = reached.get(key)
        if node is not None:
            return node.num
        node = self._nodes.get(key)
        if node is None:
            kind = _KINDS.get(type(obj))
            if kind is None:
                raise Unsupported("cannot track a %s incrementally" % type(obj).__name__)
            node = _Node(obj, kind, self._next)
            self._next += 1
        reached[key] = node
        todo.append(node)
        return node.num

    def _refs(self, items: list, reached: Dict[int, _Node], todo: List[_Node]) -> Tuple[list, List[int], List[int]]:
        """(items with each child node as None, the children's positions, their node numbers)."""
        pos: List[int] = []
        nums: List[int] = []
        out = items
        for k, x in enumerate(items):
            if type(x) in _LEAF_SCALARS:
                continue
            if out is items:
                out = items[:]
            nums.append(self._node(x, reached, todo))
            pos.append(k)
            out[k] = None
        return out, pos, nums

    def _encode(
        self, keys: Optional[list], items: list, reached: Dict[int, _Node], todo: List[_Node]
    ) -> Tuple[bytes, Tuple[List[int], List[int]]]:
        """One chunk's bytes: keys (or None) and items, each with its child nodes as numbers; and
        the positions of those children."""
        vals, vpos, vnums = self._refs(items, reached, todo)
        if keys is None:
            return codec.encode((None, (), (), vals, vpos, vnums)), ([], vpos)
        ks, kpos, knums = self._refs(keys, reached, todo)
        return codec.encode((ks, kpos, knums, vals, vpos, vnums)), (kpos, vpos)

    def _unchanged(
        self, keys: Optional[list], vals: list, kids: Tuple[List[int], List[int]], i: int, reached, todo
    ) -> None:
        """Queue the children of an unchanged chunk starting at ``i`` (their insides may have changed)."""
        kpos, vpos = kids
        for p in vpos:
            self._node(vals[i + p], reached, todo)
        if keys is not None:
            for p in kpos:
                self._node(keys[i + p], reached, todo)

    def _visit(self, node: _Node, reached: Dict[int, _Node], todo: List[_Node], changed: Dict[int, bytes]) -> bool:
        """Re-encode the node's changed chunks into ``changed``; True if its chunk count changed.
        The children of its unchanged chunks are queued from the positions kept for them."""
        obj, size = node.obj, self.chunk
        old = node.saved
        if (
            type(obj) is list
            and old is not None
            and len(obj) == len(old) <= min(_SMALL, size)
            and all(map(_is, obj, old))
        ):
            # a small list (one chunk), unchanged: the common case of nested data
            for p in node.kids[0][1] if node.kids else ():
                self._node(obj[p], reached, todo)
            return False
        if node.kind == _DICT:
            keys: Optional[list] = list(obj)
            vals = list(obj.values())
            old_keys, old = node.saved or [], node.saved_vals
        else:
            keys, old_keys, old = None, [], node.saved
            # a set's members in its iteration order: the codec orders them itself
            vals = obj if node.kind == _LIST else list(obj)
        n = len(vals)
        count = (n + size - 1) // size
        before = len(node.chunks)
        kids = node.kids
        if (
            old is not None
            and len(old) == n
            and _same(vals, old, 0, n)
            and (keys is None or _same(keys, old_keys, 0, n))
        ):
            for c in range(count):  # nothing of its own changed; its children may have
                self._unchanged(keys, vals, kids[c], c * size, reached, todo)
            return False
        chunks = node.chunks
        del chunks[count:]
        del kids[count:]
        done: List[Tuple[int, int]] = []
        for c in range(count):
            i, j = c * size, min(n, (c + 1) * size)
            if (
                old is not None
                and c < before
                and j <= len(old)
                and (j - i == size or len(old) == n)  # a last chunk that grew or shrank: changed
                and _same(vals, old, i, j)
                and (keys is None or _same(keys, old_keys, i, j))
            ):
                self._unchanged(keys, vals, kids[c], i, reached, todo)
                continue
            data, pos = self._encode(keys[i:j] if keys is not None else None, vals[i:j], reached, todo)
            if c < len(chunks):
                chunks[c], kids[c] = data, pos
            else:
                chunks.append(data)
                kids.append(pos)
            changed[c] = data
            done.append((i, j))
        if node.kind == _LIST:
            if old is None:
                node.saved = vals[:]
            else:  # in place: a copy of the whole list would cost as much as the scan saves
                for i, j in done:
                    old[i:j] = vals[i:j]
                del old[n:]
        else:
            node.saved = keys if keys is not None else vals
            node.saved_vals = vals if keys is not None else None
        return old is None or count != before

    def freeze(self, root: Any) -> Delta:
        """Freeze ``root``; the :class:`Delta` holds only the chunks changed since the last freeze
        (all of them the first time).  Raises :class:`Unsupported` (the freezer is then reset)."""
        reached: Dict[int, _Node] = {}
        todo: List[_Node] = []
        try:
            root_num = self._node(root, reached, todo)
            nodes: Dict[int, Tuple[str, int, Dict[int, bytes]]] = {}
            while todo:
                node = todo.pop()
                changed: Dict[int, bytes] = {}
                resized = self._visit(node, reached, todo, changed)
                if changed or resized:
                    nodes[node.num] = (node.kind, len(node.chunks), changed)
        except Unsupported:
            self._nodes, self._next, self._root = {}, 0, -1
            raise
        gone = [n.num for k, n in self._nodes.items() if k not in reached]
        self._nodes, self._root = reached, root_num
        return Delta(root_num, nodes, gone)

    def store(self) -> "Store":
        """A :class:`Store` holding every node's current chunks (what all deltas so far add up to)."""
        s = Store()
        s.root = self._root
        for node in self._nodes.values():
            s.nodes[node.num] = (node.kind, list(node.chunks))
        return s


class Store:
    """Chunks of a state as deltas build them up: ``apply`` each :class:`Delta` in order, then
    :meth:`thaw` rebuilds the state from bytes alone (what a worker would keep between freezes)."""

    def __init__(self) -> None:
        self.root = -1
        self.nodes: Dict[int, Tuple[str, List[bytes]]] = {}

    def apply(self, delta: Delta) -> None:
        for num in delta.gone:
            self.nodes.pop(num, None)
        for num, (kind, count, changed) in delta.nodes.items():
            old = self.nodes.get(num)
            chunks = list(old[1]) if old is not None and old[0] == kind else []
            del chunks[count:]
            chunks.extend([b""] * (count - len(chunks)))
            for c, data in changed.items():
                chunks[c] = data
            if any(not b for b in chunks):
                raise ValueError("delta for node %d leaves a chunk missing" % num)
            self.nodes[num] = (kind, chunks)
        self.root = delta.root

    def thaw(self) -> Any:
        """The state the applied deltas describe, rebuilt from their bytes."""
        if self.root not in self.nodes:
            raise ValueError("no state: no delta applied")
        decoded: Dict[int, List[Any]] = {n: [codec.decode(b) for b in chunks] for n, (_, chunks) in self.nodes.items()}
        made: Dict[int, Any] = {}
        for num, (kind, _) in self.nodes.items():
            if kind in _EMPTY:
                made[num] = _EMPTY[kind]()
        building: set = set()

        def get(num: int) -> Any:
            if num in made:
                return made[num]
            kind = self.nodes[num][0]
            if kind not in _FIXED or num in building:  # a cycle through tuples alone cannot be built
                raise ValueError("malformed delta store at node %d" % num)
            building.add(num)
            made[num] = (tuple if kind == _TUPLE else frozenset)(items(num)[1])
            return made[num]

        def resolved(vals: Any, pos: Any, nums: Any) -> list:
            out = list(vals)
            for p, child in zip(pos, nums):
                out[p] = get(child)
            return out

        def items(num: int) -> Tuple[List[Any], List[Any]]:
            keys: List[Any] = []
            vals: List[Any] = []
            for ks, kpos, knums, vs, vpos, vnums in decoded[num]:
                if ks is not None:
                    keys.extend(resolved(ks, kpos, knums))
                vals.extend(resolved(vs, vpos, vnums))
            return keys, vals

        for num, (kind, _) in self.nodes.items():
            if kind == _LIST:
                made[num].extend(items(num)[1])
            elif kind == _SET:
                made[num].update(items(num)[1])
            elif kind == _DICT:
                keys, vals = items(num)
                made[num].update(zip(keys, vals))
        return get(self.root)


def thaw(store: Store) -> Any:
    """``store.thaw()``: the whole state from the chunks."""
    return store.thaw()
