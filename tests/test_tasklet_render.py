"""Showing encoded data within a budget (market.tasklet.codec.render, expanded_size, decode's
max_nodes): the JSON ``json.dumps`` would write, shared references counted where they appear, and
never more work than the budget, whatever the bytes hold."""

from __future__ import annotations

import collections
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import tasklet
from market.tasklet import codec
from market.tasklet.codec import CodecError, OverBudget, decode, encode, expanded_size, render

BIG = 10**9

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=40,
)


def bomb(levels: int = 40) -> bytes:
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return encode(a)


def naive_count(value) -> int:
    """Values a display writes: every item, every key, each time it appears."""
    if isinstance(value, dict):
        return 1 + sum(naive_count(k) + naive_count(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return 1 + sum(naive_count(x) for x in value)
    return 1


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]))
def test_the_text_is_what_json_dumps_writes(value, indent):
    data = encode(value)
    assert render(data, BIG, BIG, indent) == (json.dumps(value, indent=indent), True)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(0, 200))
def test_a_text_cut_at_its_budget_is_the_beginning_of_the_whole_text(value, budget):
    data = encode(value)
    whole, _ = render(data, BIG, BIG, 1)
    text, complete = render(data, budget, BIG, 1)
    assert complete == (len(whole) <= budget)
    assert text == whole[:budget]


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=8))
def test_shared_values_count_where_they_appear(parts, picks):
    shared = [parts[i % len(parts)] for i in picks]  # the same objects, referenced again and again
    value = [shared, shared, parts]
    assert expanded_size(encode(value), BIG) == naive_count(value)


def test_a_result_bomb_is_counted_on_its_bytes_and_refused_at_once():
    data = bomb(40)
    assert len(data) < 200
    began = time.monotonic()
    assert expanded_size(data, 2**50) == 2**41 - 1
    assert expanded_size(data, 10**6) == 10**6 + 1  # stops counting past the cap
    with pytest.raises(OverBudget, match="more than 1000000 values"):
        render(data, 20_000, 10**6)
    assert time.monotonic() - began < 0.1


def test_a_small_bomb_within_the_budget_is_written_out():
    text, complete = render(bomb(3), BIG, BIG)
    assert complete and json.loads(text) == [[[[], []], [[], []]], [[[], []], [[], []]]]


def test_a_cycle_is_written_once_and_marked():
    a: list = [1]
    a.append(a)
    d: dict = {"name": "loop"}
    d["self"] = d
    assert render(encode(a), BIG, BIG) == ('[1, "<cycle>"]', True)
    assert render(encode(d), BIG, BIG) == ('{"name": "loop", "self": "<cycle>"}', True)


def test_other_types_are_written_as_json_dumps_default_repr_would_and_containers_as_arrays():
    from fractions import Fraction

    value = {
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "deque": collections.deque([1, 2]),
        "bytes": b"\x00a",
        "complex": 1 + 2j,
        "fraction": Fraction(1, 3),
        "range": range(0, 10, 2),
        "counter": collections.Counter("aab"),
        "keys": {1: "int", 1.5: "float", None: "none", False: "bool", (1, 2): "tuple"},
    }
    shown = json.loads(render(encode(value), BIG, BIG)[0])
    assert shown["set"] == [1, 2, 3] and shown["tuple"] == [1, "a"] and shown["deque"] == [1, 2]
    assert shown["bytes"] == repr(b"\x00a") and shown["complex"] == "(1+2j)"
    assert shown["fraction"] == "Fraction(1, 3)" and shown["range"] == "range(0, 10, 2)"
    assert shown["counter"] == {"a": 2, "b": 1}
    assert shown["keys"] == {"1": "int", "1.5": "float", "null": "none", "false": "bool", "[1, 2]": "tuple"}


def test_an_instance_is_an_object_with_its_class_first():
    class Point:
        def __init__(self):
            self.x, self.y = 1, [2]

    text, _ = render(encode([Point()], classes={"Point": Point}), BIG, BIG)
    assert text == '[{"__class__": "Point", "x": 1, "y": [2]}]'


def test_an_integer_too_long_to_print_is_named_by_its_size():
    assert render(encode([2**100_000, 7]), BIG, BIG) == ('["<an integer of 100001 bits>", 7]', True)


def test_a_text_result_is_itself_on_request():
    assert tasklet.render_result(encode("line one\nline two"), BIG, BIG) == ("line one\nline two", True)
    assert tasklet.render_result(encode("x"), BIG, BIG, as_text=False) == ('"x"', True)


def test_a_hash_flooded_set_is_written_without_hashing():
    # integers that all share Python's hash (multiples of 2**61 - 1): building this set is quadratic
    flood = encode({(2**61 - 1) * k for k in range(1, 2000)})
    began = time.monotonic()
    text, complete = render(flood, 1_000_000, BIG)
    assert complete and text.count(",") == 1998
    assert time.monotonic() - began < 0.5


def test_deep_nesting_is_written_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    text, complete = render(encode(deep), 1000, BIG)
    assert not complete and text == "[" * 1000


def test_long_texts_and_lists_cost_only_what_is_shown():
    data = encode(["x" * 10_000_000, list(range(1_000_000))])
    began = time.monotonic()
    text, complete = render(data, 100, BIG)
    assert not complete and len(text) == 100
    assert time.monotonic() - began < 0.5


@settings(max_examples=300, deadline=None)
@given(json_values, st.binary(max_size=8), st.integers(0, 400))
def test_damaged_data_is_refused_as_codec_errors_only(value, junk, at):
    data = bytearray(encode(value))
    at = min(at, len(data))
    damaged = bytes(data[:at] + junk + data[at + len(junk) :])
    for call in (lambda: render(damaged, 10_000, 10_000), lambda: expanded_size(damaged, 10_000)):
        try:
            call()
        except CodecError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_are_refused_as_codec_errors_only(junk):
    for data in (junk, b"\x01" + junk):
        for call, budgets in ((render, (10_000, 10_000)), (expanded_size, (10_000,))):
            try:
                call(data, *budgets)
            except CodecError:
                pass


# -- a bounded decode --------------------------------------------------------------------------


def test_decode_refuses_more_values_than_its_budget_before_building_them():
    data = encode(list(range(1000)))
    assert decode(data, max_nodes=1001)[-1] == 999
    with pytest.raises(OverBudget):
        decode(data, max_nodes=1000)
    assert decode(encode(5), max_nodes=1) == 5
    # a bomb is small to decode (its parts stay shared): two items a level, and the innermost list
    assert decode(bomb(40), max_nodes=81) is not None
    with pytest.raises(OverBudget):
        decode(bomb(40), max_nodes=80)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_a_budget_that_fits_decodes_exactly_as_without_one(value):
    data = encode(value)
    assert decode(data, max_nodes=naive_count(value)) == decode(data)


def test_decode_result_takes_the_same_budget():
    with pytest.raises(tasklet.OverBudget):
        tasklet.decode_result(encode([0] * 100), max_nodes=10)
    assert codec.OverBudget is tasklet.OverBudget
