"""market.tasklet.delta: base + deltas thaw to exactly the state a whole freeze would give.

The check is byte-level: ``codec.encode`` of the state rebuilt from the deltas' bytes must equal
``codec.encode`` of the live state (same values, same types, same sharing and cycles), after every
mutation of a random schedule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from market.tasklet import codec, delta

SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, True, False, 0.0, -0.0, 1.0, float("nan"), None, 1j]),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.tuples(st.integers(-3, 3), st.text(max_size=2)),
)

# one mutation: (operation, which container, position, scalar, which other container)
OPS = st.tuples(
    st.sampled_from(
        ["set", "append", "insert", "delete", "alias", "cycle", "new_list", "dict_set", "dict_del", "set_add", "tuple"]
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    SCALARS,
    st.integers(0, 10**6),
)


def _containers(root):
    """Every list, dict and set reachable from root (through lists, dict values and tuples)."""
    seen, out, todo = set(), [], [root]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if type(x) in (list, dict, set):
            out.append(x)
        if type(x) is list or type(x) is tuple:
            todo.extend(y for y in x if type(y) in (list, dict, set, tuple))
        elif type(x) is dict:
            todo.extend(y for y in x.values() if type(y) in (list, dict, set, tuple))
    return out


def _mutate(root, op):
    kind, which, pos, value, other = op
    boxes = _containers(root)
    box = boxes[which % len(boxes)]
    mate = boxes[other % len(boxes)]
    lists = [b for b in boxes if type(b) is list]
    lst = lists[which % len(lists)]
    dicts = [b for b in boxes if type(b) is dict]
    sets = [b for b in boxes if type(b) is set]
    if kind == "set" and lst:
        lst[pos % len(lst)] = value
    elif kind == "append":
        lst.append(value)
    elif kind == "insert":
        lst.insert(pos % (len(lst) + 1), value)
    elif kind == "delete" and lst:
        del lst[pos % len(lst)]
    elif kind == "alias":
        lst.insert(pos % (len(lst) + 1), mate)  # shared, possibly a cycle
    elif kind == "cycle":
        lst.append(lst)
    elif kind == "new_list":
        lst.insert(pos % (len(lst) + 1), [value] * (pos % 7))
    elif kind == "dict_set" and dicts:
        d = dicts[which % len(dicts)]
        d[value if type(value) is not float else str(value)] = mate if pos % 3 == 0 else value
    elif kind == "dict_del" and dicts:
        d = dicts[which % len(dicts)]
        if d:
            del d[list(d)[pos % len(d)]]
    elif kind == "set_add" and sets:
        s = sets[which % len(sets)]
        if pos % 2 and s:
            s.discard(next(iter(s)))
        else:
            # only members the codec writes sorted: a set of complex or None is written in its
            # iteration order, which a rebuilt set does not keep (a whole thaw neither)
            s.add(value if type(value) in (int, str, bytes, bool, tuple) else 0)
    elif kind == "tuple":
        lst.insert(pos % (len(lst) + 1), (mate, value))
    del box


def _state():
    return [list(range(40)), {"a": [1, 2.5, "x"], "b": {3, 4}}, {5, "six"}, ["s"] * 30, 7]


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=25), st.sampled_from([1, 3, 8, 64]))
def test_base_plus_deltas_thaw_to_the_whole_freeze(ops, chunk):
    root = _state()
    freezer, store = delta.Freezer(chunk=chunk), delta.Store()
    store.apply(freezer.freeze(root))
    for op in ops:
        _mutate(root, op)
        store.apply(freezer.freeze(root))
        assert codec.encode(store.thaw()) == codec.encode(root)
    # the freezer's own table adds up to the same state as the deltas did
    assert codec.encode(freezer.store().thaw()) == codec.encode(root)


def test_an_equal_value_of_another_type_is_a_change():
    """1 == True == 1.0 and 0.0 == -0.0: an equality test would keep the stale chunk."""
    for old, new in ((1, True), (1, 1.0), (0.0, -0.0), (2**80, 2**80 + 0.0)):
        root = [old] * 100
        freezer, store = delta.Freezer(chunk=16), delta.Store()
        store.apply(freezer.freeze(root))
        root[50] = new
        d = freezer.freeze(root)
        assert list(d.nodes[d.root][2]) == [3]  # exactly the chunk holding position 50
        store.apply(d)
        assert codec.encode(store.thaw()) == codec.encode(root)


def test_only_the_changed_chunks_are_in_the_delta():
    root = [list(range(10_000)), {str(i): i for i in range(5_000)}]
    freezer = delta.Freezer(chunk=1000)
    full = freezer.freeze(root).size()
    root[0][4321] = -1
    root[1]["77"] = "changed"
    d = freezer.freeze(root)
    assert sorted(len(c) for _, _, c in d.nodes.values()) == [1, 1]
    assert d.size() < full / 5  # 2 chunks of 15
    assert freezer.freeze(root).nodes == {}  # nothing changed: nothing to encode


def test_a_nested_change_under_an_unchanged_chunk_is_found():
    inner = [0] * 10
    root = [[i] for i in range(500)] + [inner]
    freezer, store = delta.Freezer(chunk=64), delta.Store()
    store.apply(freezer.freeze(root))
    inner[3] = "deep"
    d = freezer.freeze(root)
    assert list(d.nodes) != [d.root] and d.root not in d.nodes
    store.apply(d)
    assert store.thaw()[-1][3] == "deep"


def test_what_it_cannot_track_is_refused_and_the_table_reset():
    class Job:
        pass

    freezer = delta.Freezer()
    freezer.freeze([1, 2])
    try:
        freezer.freeze([1, Job()])
    except delta.Unsupported as exc:
        assert "Job" in str(exc)
    else:
        raise AssertionError("an instance was accepted")
    assert freezer.store().nodes == {}
    try:
        freezer.freeze({(1, (2, Job)): 1})
    except delta.Unsupported as exc:
        assert "type" in str(exc)
    else:
        raise AssertionError("a class inside a dict key was accepted")


def test_both_comparisons_agree():
    a, b = [object() for _ in range(10)], []
    b.extend(a)
    b[7] = object()
    for same in filter(None, (delta._NATIVE, delta._slow_same)):
        assert same(a, a[:], 0, 10)
        assert same(a, b, 0, 7) and not same(a, b, 0, 8) and same(a, b, 8, 10)


def test_the_per_item_comparison_gives_the_same_deltas(monkeypatch):
    """Where memcmp is not available (PyPy, another list layout) the slow comparison runs."""
    import random

    rng = random.Random(18)
    kinds = ["set", "append", "insert", "delete", "alias", "cycle", "new_list", "dict_set", "dict_del", "tuple"]
    values = [0, 1, True, 0.0, -0.0, 1.0, "s", b"b", None, (1, "x"), 2**70]
    schedule = [
        (rng.choice(kinds), rng.randrange(10**6), rng.randrange(10**6), rng.choice(values), rng.randrange(10**6))
        for _ in range(300)
    ]
    results = []
    for same in (delta._slow_same, delta._same):
        monkeypatch.setattr(delta, "_same", same)
        root = _state()
        freezer, store = delta.Freezer(chunk=4), delta.Store()
        store.apply(freezer.freeze(root))
        sizes = []
        for op in schedule:
            _mutate(root, op)
            d = freezer.freeze(root)
            store.apply(d)
            sizes.append(d.size())
            assert codec.encode(store.thaw()) == codec.encode(root)
        results.append(sizes)
    assert results[0] == results[1]
