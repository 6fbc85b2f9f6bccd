"""The data-only codec: exact round trips, shared references, cycles, and
malformed input that only ever raises CodecError."""

import collections
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.tasklet import codec
from market.tasklet.codec import CodecError, PlainInstance, decode, encode

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**300), 2**300)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
values = st.recursive(
    scalars | hashables,
    lambda inner: (
        st.lists(inner, max_size=12)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=40,
)


class Node:
    def __init__(self, value):
        self.value = value
        self.next = None


CLASSES = {"Node": Node}


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip_equals_original(value):
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_deterministic(value):
    assert encode(value) == encode(value)


def test_floats_are_exact_including_nan_inf_and_negative_zero():
    data = [math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 0.1]
    assert [repr(x) for x in decode(encode(data))] == [repr(x) for x in data]
    assert math.isnan(decode(encode(math.nan)))
    assert math.copysign(1, decode(encode(-0.0))) == -1


def test_big_ints_and_bulk_lists():
    data = [2**1000, -(2**64), [1 << 62] * 20, [(1 << 63)] * 9, [0.5] * 30, ["é", "\udc80"] * 9]
    assert decode(encode(data)) == data


def test_shared_references_are_preserved():
    shared = [1, 2]
    d = decode(encode({"a": shared, "b": shared, "c": [shared]}))
    assert d["a"] is d["b"] is d["c"][0]


def test_cycles_through_lists_dicts_and_instances():
    a = []
    a.append(a)
    d = {}
    d["self"] = d
    n = Node(1)
    n.next = n
    x, y, z = decode(encode([a, d, n], CLASSES), CLASSES)
    assert x[0] is x and y["self"] is y and z.next is z and isinstance(z, Node)


def test_cycle_through_a_tuple_is_refused():
    t = ([],)
    t[0].append(t)
    with pytest.raises(CodecError, match="cycle"):
        encode(t)


def test_instances_without_classes_become_plain_dicts():
    n = Node(3)
    n.next = Node(4)
    plain = decode(encode({n: [n]}, CLASSES))
    ((key, value),) = plain.items()
    assert isinstance(key, PlainInstance) and key["__class__"] == "Node"
    assert key["value"] == 3 and key["next"]["value"] == 4 and value[0] is key


def test_decoding_with_classes_does_not_call_init():
    class Loud:
        def __init__(self):
            raise AssertionError("__init__ ran")

    obj = Loud.__new__(Loud)
    obj.x = 1
    assert decode(encode(obj, {"Loud": Loud}), {"Loud": Loud}).x == 1


def test_unknown_types_and_foreign_classes_are_refused():
    with pytest.raises(CodecError):
        encode(object())
    with pytest.raises(CodecError):
        encode(Node(1))  # not in the classes mapping
    with pytest.raises(CodecError):
        encode(len)


def test_stdlib_value_types():
    data = [
        collections.deque([1, 2], maxlen=5),
        collections.Counter("abca"),
        collections.OrderedDict(a=1),
        collections.defaultdict(list, {1: [2]}),
        Fraction(3, 7),
        2 + 3j,
        range(3, 30, 4),
        bytearray(b"xy"),
    ]
    back = decode(encode(data))
    assert back == data and back[0].maxlen == 5 and back[3].default_factory is list


def test_deep_nesting_needs_no_recursion():
    head = None
    for i in range(50000):
        head = [i, head]
    back = decode(encode(head))
    for _ in range(49999):
        back = back[1]
    assert back == [0, None]


def test_unknown_class_name_is_refused_when_classes_are_given():
    with pytest.raises(CodecError):
        decode(encode(Node(1), CLASSES), {})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_codec_error_or_decode(data):
    try:
        decode(data)
    except CodecError:
        pass


@settings(max_examples=120, deadline=None)
@given(values, st.data())
def test_mutated_encodings_never_crash(value, data):
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decode(candidate)
        except CodecError:
            pass


def test_huge_declared_lengths_do_not_allocate():
    # a list header claiming 2**60 items, then nothing
    with pytest.raises(CodecError):
        decode(bytes([codec.VERSION, 0x10]) + b"\xff" * 8 + b"\x0f")
    with pytest.raises(CodecError):
        decode(bytes([codec.VERSION, 0x17]) + b"\xff\xff\xff\x7f")


def test_trailing_bytes_and_wrong_version_are_refused():
    with pytest.raises(CodecError):
        decode(encode(1) + b"\x01")
    with pytest.raises(CodecError):
        decode(b"\x09" + encode(1)[1:])
    with pytest.raises(CodecError):
        decode("not bytes")


def test_oversized_fraction_is_refused_both_ways():
    with pytest.raises(CodecError):
        encode(Fraction(1 << 70000, 3))
    data = bytes([codec.VERSION, 0x21]) + encode(1 << 70000)[1:] + encode(3)[1:]
    with pytest.raises(CodecError):
        decode(data)


# -- the decoder's bulk paths: a container opening with a run of scalars, ASCII string lists ------

big_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, min_size=16, max_size=40)
        | st.dictionaries(scalars.filter(lambda x: x == x), inner, min_size=8, max_size=20)
        | st.sets(st.integers() | st.text(max_size=3), min_size=16, max_size=30)
        | st.lists(st.text(max_size=200), min_size=8, max_size=30)
    ),
    max_leaves=120,
)


@settings(max_examples=150, deadline=None)
@given(big_values)
def test_big_containers_round_trip_and_reencode_identically(value):
    back = decode(encode(value))
    assert back == value and encode(back) == encode(value)


def test_a_mapping_whose_scalar_run_stops_at_a_key_takes_the_next_value():
    d = {0: [1, 2]}
    d.update((i, i * 2) for i in range(1, 20))
    d[20] = {"x": [3]}
    d[21] = 5
    assert decode(encode(d)) == d and list(decode(encode(d))) == list(d)
    run_then_container = {i: i for i in range(10)}
    run_then_container["tail"] = [run_then_container and 1]
    assert decode(encode(run_then_container)) == run_then_container


def test_counter_and_ordered_dict_keep_their_own_item_assignment():
    od = collections.OrderedDict((str(i), i) for i in range(30))
    od.move_to_end("0")
    c = collections.Counter({i: 1 for i in range(30)})
    back_od, back_c = decode(encode([od, c]))
    assert list(back_od.items()) == list(od.items())
    back_od.move_to_end("1")  # the linked list of an OrderedDict filled through dict.update breaks here
    assert list(back_od)[-1] == "1" and len(back_od) == 30
    assert back_c == c and type(back_c) is collections.Counter


def test_instance_with_many_attributes_and_a_bad_attribute_name():
    n = Node(1)
    for i in range(20):
        setattr(n, "a%d" % i, i)
    back = decode(encode(n, CLASSES), CLASSES)
    assert vars(back) == vars(n)
    # an instance of 20 scalar attributes whose first name is an int, written by hand
    items = b"".join(encode(k)[1:] + encode(i)[1:] for i, k in enumerate([7] + ["a%d" % i for i in range(19)]))
    data = bytes([codec.VERSION, 0x16]) + encode("Node")[1:] + bytes([20]) + items
    with pytest.raises(CodecError, match="attribute names"):
        decode(data, CLASSES)


def test_string_lists_with_long_and_non_ascii_items():
    for data in (["a" * 200, "b"] * 10, ["é", "x", "\udc80y"] * 10, ["plain%d" % i for i in range(50)], [""] * 9):
        assert decode(encode(data)) == data


def _reference_int(n):
    """The format's integer as the format describes it: tag, zigzag, LEB128 varint."""
    z = (n << 1) if n >= 0 else ((-n << 1) - 1)
    out = bytearray([0x04])
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


BASES = (0, 63, 64, 8191, 8192, 1 << 13, 1 << 19, 1 << 20, 1 << 27)
EDGES = sorted({s * (b + d) for b in BASES for d in (-1, 0, 1) for s in (1, -1)})


def test_ints_near_every_varint_length_encode_as_the_format_says():
    for n in EDGES:
        assert encode(n) == bytes([codec.VERSION]) + _reference_int(n), n
        assert encode((n, "x")) == bytes([codec.VERSION, 0x29, 2]) + _reference_int(n) + b"\x07\x01x", n
    mixed = EDGES + ["s"] * 3
    assert decode(encode(mixed)) == mixed and decode(encode(tuple(mixed))) == tuple(mixed)
    inside = {n: [n] for n in EDGES}  # a dict run: keys read in the scalar run, values one by one
    assert decode(encode(inside)) == inside
