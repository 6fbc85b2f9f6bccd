"""Codec version 2 (``mkt-bin-2``): columnar blocks for lists and dicts of one shape (issue 18).

Round trips (values, sharing, re-encoding byte for byte), version 1 still read and still
written on request, states keep their codec version slice after slice (so a replay writes the
bytes the honest slice wrote), and hostile bytes aimed at the columns.
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import tasklet
from market.tasklet import codec, envelope
from market.tasklet.codec import CodecError, OverBudget, PlainInstance, decode, encode
from tests.test_tasklet_codec import values

V2 = codec.VERSION2


class Item:
    def __init__(self, i, name, weight, tags=None):
        self.id = i
        self.name = name
        self.weight = weight
        self.tags = tags


CLASSES = {"Item": Item}

ints = st.integers(-(2**70), 2**70)
column_scalars = st.one_of(
    ints, st.floats(allow_nan=False), st.text(), st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1)
)


def same_kind(strategy, size):
    return st.lists(strategy, min_size=size, max_size=size)


@st.composite
def shaped(draw):
    """A list or dict of one shape (what version 2 writes as columns), sometimes spoiled."""
    n = draw(st.integers(0, 40))
    kind = draw(
        st.sampled_from(["ints", "floats", "strs", "mixed", "tuples", "items", "dict", "tdict", "nested", "records"])
    )
    pick = {"ints": ints, "floats": st.floats(), "strs": st.text(), "mixed": column_scalars}
    if kind in pick:
        out = draw(same_kind(pick[kind], n))
    elif kind == "tuples":
        k = draw(st.integers(1, 4))
        cols = [
            draw(same_kind(draw(st.sampled_from([ints, st.text(), st.floats(), column_scalars])), n)) for _ in range(k)
        ]
        out = list(zip(*cols)) if n else []
    elif kind == "nested":  # lists of [scalar, (scalar, [scalar])]: blocks inside blocks
        a, b, c = (draw(same_kind(column_scalars, n)) for _ in range(3))
        out = [[x, (y, [z])] for x, y, z in zip(a, b, c)]
    elif kind == "records":  # dicts with the same keys in the same order
        keys = draw(st.lists(st.text() | ints, min_size=1, max_size=4, unique=True))
        out = [dict(zip(keys, draw(same_kind(column_scalars, len(keys))))) for _ in range(n)]
    elif kind == "items":
        out = [Item(draw(ints), draw(st.text()), draw(st.floats()), draw(st.none() | st.booleans())) for _ in range(n)]
    elif kind == "dict":
        out = draw(st.dictionaries(st.text() | ints, column_scalars, min_size=n, max_size=n))
    else:
        keys = draw(st.lists(st.tuples(ints, st.text()), min_size=n, max_size=n, unique=True))
        out = dict(zip(keys, draw(same_kind(column_scalars, n))))
    if n and draw(st.booleans()):  # spoil it: one item of another kind, or shared
        spoil = draw(st.sampled_from(["value", "share"]))
        if isinstance(out, list):
            out[draw(st.integers(0, n - 1))] = draw(values) if spoil == "value" else out[0]
        else:
            out[next(iter(out))] = draw(values)
    return out


def ordered_alike(x):
    """A value sets are ordered by without job code (``codec._canonical_key``)."""
    if isinstance(x, (tuple, frozenset)):
        return all(ordered_alike(y) for y in x)
    return type(x) in (type(None), bool, int, float, complex, str, bytes)


def has_set(value, depth=0):
    """A set holding an instance anywhere: sets of instances are written in iteration order
    (ordering them would call job code), so re-encoding a thawed one may give other bytes. Sets
    of anything else are written in one canonical order (``_set_order``)."""
    if isinstance(value, (set, frozenset)):
        return not all(ordered_alike(x) for x in value) or any(has_set(x, depth + 1) for x in value)
    if depth > 50:
        return False
    if isinstance(value, (list, tuple)):
        return any(has_set(x, depth + 1) for x in value)
    if isinstance(value, dict):
        return any(has_set(x, depth + 1) for x in list(value) + list(value.values()))
    if isinstance(value, Item):
        return has_set(vars(value), depth + 1)
    return False


def equal(a, b):
    """Equality that also holds for NaN and compares instances by class and attributes."""
    if isinstance(a, Item):
        return type(b) is Item and equal(vars(a), vars(b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(equal, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(equal(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=300, deadline=None)
@given(shaped())
def test_v2_round_trip_is_equal_and_reencodes_to_the_same_bytes(value):
    data = encode(value, CLASSES, version=V2)
    assert data[0] == V2
    back = decode(data, CLASSES)
    assert equal(value, back)
    assert encode(value, CLASSES, version=V2) == data  # deterministic
    if not has_set(value):
        assert encode(back, CLASSES, version=V2) == data
        assert encode(back, CLASSES) == encode(value, CLASSES)  # version 1 of the same value too


@settings(max_examples=200, deadline=None)
@given(values)
def test_v2_round_trips_every_value_version_1_does(value):
    data = encode(value, version=V2)
    back = decode(data)
    assert decode(encode(value)) == back
    if not has_set(value):
        assert encode(back, version=V2) == data


def test_columns_are_used_and_smaller_than_version_1_for_one_shape():
    objs = [Item(i, "item%d" % i, i * 0.5) for i in range(1000)]
    for value in (objs, [(i, "k%d" % i, i * 0.25) for i in range(1000)], {"key%d" % i: i for i in range(1000)}):
        v2 = encode(value, CLASSES, version=V2)
        assert v2[1] in (codec._COL_LIST, codec._COL_DICT)
        assert len(v2) < 2 * len(encode(value, CLASSES))


def test_sharing_and_identity_survive_columns():
    t = (1, "a", 2.0)
    shared = [(i, "x") for i in range(30)]
    items = [Item(i, "n", 0.5) for i in range(30)]
    value = {
        "tuples": shared,
        "again": shared[3],  # a tuple of a block, met later: a back reference
        "items": items,
        "pick": [items[0], items[29]],
        "by_id": {i: items[i] for i in range(30)},  # instances met again in a dict's values
        "twice": [t] * 20,  # the same tuple twenty times: no block, references
        "lst": shared,
    }
    back = decode(encode(value, CLASSES, version=V2), CLASSES)
    assert back["again"] is back["tuples"][3]
    assert back["pick"][0] is back["items"][0] and back["pick"][1] is back["items"][29]
    assert all(back["by_id"][i] is back["items"][i] for i in range(30))
    assert all(x is back["twice"][0] for x in back["twice"])
    assert back["lst"] is back["tuples"]
    assert type(back["items"][5]) is Item and back["items"][5].id == 5


def test_nested_blocks_keep_every_list_its_own_and_shared_ones_shared():
    rows = [[i, "x", [i, (i, "t")]] for i in range(40)]
    value = {"rows": rows, "inner": rows[5][2], "pair": rows[7][2][1], "same": [rows[0]] * 3}
    data = encode(value, version=V2)
    assert codec._C_LST in data
    back = decode(data)
    assert back == value
    assert back["inner"] is back["rows"][5][2] and back["pair"] is back["rows"][7][2][1]
    assert back["same"][0] is back["rows"][0]
    back["rows"][1][2].append(9)  # each list is its own object after a thaw
    assert back["rows"][2][2] == [2, (2, "t")] and len(back["rows"][1][2]) == 3
    assert encode(back, version=V2) != data and encode(decode(data), version=V2) == data


def test_a_list_holding_itself_is_not_a_block_and_still_round_trips():
    rows = [[i, None] for i in range(20)]
    rows[3][1] = rows
    back = decode(encode(rows, version=V2))
    assert back[3][1] is back and back[4] == [4, None]


def test_instances_without_classes_are_plain_dicts_with_the_class_first():
    items = [Item(i, "n%d" % i, i / 3) for i in range(20)]
    back = decode(encode(items, CLASSES, version=V2))
    assert type(back[0]) is PlainInstance and list(back[7]) == ["__class__", "id", "name", "weight", "tags"]
    assert back[7] == {"__class__": "Item", "id": 7, "name": "n7", "weight": 7 / 3, "tags": None}
    with pytest.raises(CodecError, match="unknown class"):
        decode(encode(items, CLASSES, version=V2), {})


def test_strings_with_nul_non_ascii_and_surrogates():
    for strs in (["a\x00b"] * 3 + ["c"] * 20, ["é%d" % i for i in range(30)], ["\ud800x"] * 20, [""] * 20):
        data = encode(strs, version=V2)
        assert decode(data) == strs and encode(decode(data), version=V2) == data


def test_ints_too_big_for_64_bits_and_bools_in_columns():
    value = [(2**70 + i, True, -(2**63)) for i in range(20)] + [(0, False, 2**63 - 1)]
    back = decode(encode(value, version=V2))
    assert back == value and type(back[0][1]) is bool


def test_version_1_bytes_still_decode_and_version_1_is_still_written_on_request():
    value = {"xs": [(i, "k%d" % i) for i in range(50)], "d": {i: i * 0.5 for i in range(50)}}
    v1 = encode(value)
    assert v1[0] == codec.VERSION and codec._COL_LIST not in v1[:2]
    assert decode(v1) == decode(encode(value, version=V2)) == value
    assert codec.version_of(v1) == 1 and codec.version_of(encode(value, version=V2)) == V2
    with pytest.raises(CodecError):
        encode(value, version=3)


def test_column_tags_are_refused_in_version_1_data():
    data = bytearray(encode(list(range(20)), version=V2))
    data[0] = codec.VERSION
    with pytest.raises(CodecError, match="unknown tag"):
        decode(bytes(data))


def test_render_refuses_version_2_clearly():
    with pytest.raises(CodecError, match="version"):
        codec.render(encode([1, 2], version=V2), 100, 100)


# ---- hostile bytes aimed at the columns ----


def big_sample():
    return {
        "t": [(i, "k%d" % i, i * 0.25, None) for i in range(40)],
        "o": [Item(i, "n", 1.5) for i in range(30)],
        "d": {"key%d" % i: i for i in range(30)},
    }


def test_every_truncation_of_a_columnar_state_is_refused():
    data = encode(big_sample(), CLASSES, version=V2)
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:cut], CLASSES)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_columnar_bytes_raise_codec_error_or_decode(data):
    raw = bytearray(encode(big_sample(), CLASSES, version=V2))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(raw), CLASSES, max_nodes=10_000)
    except CodecError:
        pass


def uv(n):
    out = bytearray()
    codec._uvarint(n, out)
    return bytes(out)


@pytest.mark.parametrize(
    "body",
    [
        bytes([0x30]) + uv(2**60) + bytes([0x01]),  # a list of 2**60 ints, no bytes
        bytes([0x30]) + uv(10) + bytes([0x01]) + b"\x00" * 79,  # ints column one byte short
        bytes([0x30]) + uv(3) + bytes([0x03]) + uv(2**40) + b"a\x00b",  # blob length lies
        bytes([0x30]) + uv(3) + bytes([0x03]) + uv(3) + b"a\x00b",  # 2 strings where 3 are said
        bytes([0x30]) + uv(2) + bytes([0x05]) + uv(2**50) + bytes([0x01]) + b"\x00" * 16,  # k huge
        bytes([0x30]) + uv(2) + bytes([0x05]) + uv(0),  # tuples of no columns
        bytes([0x30]) + uv(2) + bytes([0x04, 0x28]) + uv(3) + bytes([1, 1, 1]),  # run of 3 for 2
        bytes([0x30]) + uv(2) + bytes([0x04, 0x28]) + uv(2) + bytes([1, 0x10]),  # not a scalar
        bytes([0x30]) + uv(2) + bytes([0x09]) + b"\x00" * 16,  # unknown column
        bytes([0x31]) + uv(2) + bytes([0x01]) + b"\x00" * 16,  # dict without its values
        bytes([0x30]) + uv(2) + bytes([0x06, 0x07, 1]) + b"X" + uv(1) + bytes([0x04, 0x28]) + uv(1) + bytes([1]),
        bytes([0x30]) + uv(2) + (bytes([0x05]) + uv(1)) * 7 + bytes([0x07]) + b"\x00" * 8,  # nested too deep
        bytes([0x30]) + uv(2) + (bytes([0x08]) + uv(1)) * 3 + bytes([0x07]) + b"\x00" * 7,  # inner column short
    ],
)
def test_lying_columns_fail_cheaply(body):
    t0 = time.process_time()
    with pytest.raises(CodecError):
        decode(bytes([V2]) + body, CLASSES)
    assert time.process_time() - t0 < 0.05


def test_attribute_names_must_be_strings():
    names = bytes([0x04, 0x28]) + uv(1) + bytes([0x04, 0x02])  # one name: the int 1
    body = (
        bytes([0x30]) + uv(1) + bytes([0x06, 0x07, 4]) + b"Item" + uv(1) + names + bytes([0x01]) + b"\x07" + b"\x00" * 7
    )
    with pytest.raises(CodecError, match="attribute names"):
        decode(bytes([V2]) + body, CLASSES)
    good = body.replace(names, bytes([0x03]) + uv(2) + b"id")
    assert decode(bytes([V2]) + good, CLASSES)[0].id == 7


def test_budget_refuses_a_big_block_before_building_it():
    data = encode([(i, i) for i in range(10_000)], version=V2)
    with pytest.raises(OverBudget):
        decode(data, max_nodes=20_000)
    assert len(decode(data, max_nodes=30_001)) == 10_000
    items = encode([Item(i, "n", 0.5) for i in range(1000)], CLASSES, version=V2)
    with pytest.raises(OverBudget):
        decode(items, CLASSES, max_nodes=5000)


def test_bounded_expansion_per_byte():
    # every item of a column costs a byte or more: a short input cannot ask for many values
    for value in ([None] * 10_000, [""] * 10_000, [("", None)] * 1 + [("", None) for _ in range(9_999)]):
        data = encode(value, version=V2)
        assert len(data) >= len(value) - 1


# ---- states keep their codec version ----

SRC = "def count(n):\n    t = []\n    for i in range(n):\n        t.append((i, 'x%d' % i))\n    return len(t)\n"


def test_state_zero_is_version_2_and_slices_keep_the_version_they_thawed():
    s0 = tasklet.start(SRC, "count", [10**6], {})
    header, payload = envelope.open_envelope(s0, SRC)
    assert header.codec == codec.NAME2 and payload[0] == V2
    out = tasklet.run_slice(s0, SRC, 60.0, budget=50)
    header, payload = envelope.open_envelope(out.envelope, SRC)
    assert header.codec == codec.NAME2 and payload[0] == V2
    # an old state (version 1) goes on in version 1: a replay of it writes what the honest slice wrote
    old_header = header._replace(codec=codec.NAME)
    v1 = envelope.make_envelope(old_header, encode(decode(payload), version=codec.VERSION))
    out1 = tasklet.run_slice(v1, SRC, 60.0, budget=50)
    h1, p1 = envelope.open_envelope(out1.envelope, SRC)
    assert h1.codec == codec.NAME and p1[0] == codec.VERSION
    sha, mark = envelope.inspect(out1.envelope)[1], h1.mark
    r = tasklet.replay_slice(v1, SRC, target_payload_sha256=sha, target_mark=mark, max_steps=200)
    assert r.matched and r.envelope == out1.envelope


@settings(max_examples=150, deadline=None)
@given(shaped())
def test_bytes_are_the_same_without_reference_counts(value):
    """CPython skips memo entries for block items nothing else refers to (reference counts);
    PyPy has no such counts and makes them: both must write the same bytes."""
    fast = encode(value, CLASSES, version=V2)
    saved, codec._REFCOUNT = codec._REFCOUNT, None
    try:
        slow = encode(value, CLASSES, version=V2)
    finally:
        codec._REFCOUNT = saved
    assert fast == slow


def test_a_block_item_referred_to_from_elsewhere_stays_shared():
    rows = [(i, "r") for i in range(30)]
    elsewhere = {"one": rows[4]}  # a second reference: not unshared, so it gets its memo entry
    back = decode(encode([rows, elsewhere, rows[9]], version=V2))
    assert back[1]["one"] is back[0][4] and back[2] is back[0][9]


def test_records_are_one_block_and_stay_separate_dicts():
    recs = [{"id": i, "name": "n%d" % i, 3: i * 0.5} for i in range(40)]
    data = encode({"recs": recs, "again": recs[2]}, version=V2)
    assert bytes([codec._C_DICT]) in data and len(data) < len(encode(recs))
    back = decode(data)
    assert back["recs"] == recs and back["again"] is back["recs"][2]
    back["recs"][0]["id"] = -1
    assert back["recs"][1]["id"] == 1
    assert [list(r) for r in back["recs"][:2]] == [["id", "name", 3]] * 2  # key order kept


def test_a_record_block_with_a_key_twice_is_refused():
    keys = bytes([0x03]) + uv(3) + b"a\x00a"
    body = bytes([0x30]) + uv(1) + bytes([0x09]) + uv(2) + keys + (bytes([0x07]) + b"\x00" * 4) * 2
    with pytest.raises(CodecError, match="twice"):
        decode(bytes([V2]) + body)
    good = body.replace(b"a\x00a", b"a\x00b")
    assert decode(bytes([V2]) + good) == [{"a": 0, "b": 0}]
