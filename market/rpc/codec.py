"""Reading an XML-RPC call with bounds: a pure function, so it runs on the reactor thread for small
bodies and in a thread or a helper process for large ones (``MarketRPC``'s ``parse_large``).

``xmlrpc.client.loads`` reads whatever it is given: arrays nested a million deep (each level a
Python list on its stack; a 60 MiB body cost 1.37 GB), millions of values, and a DOCTYPE with
entities. :func:`parse_call` is the same decoder (``xmlrpc.client.Unmarshaller`` on expat) counting
as it goes, and it stops at the first value over a bound, so a refused body costs what it took to
reach the bound, not what the body would have cost. Every refusal is a
:class:`~market.core.errors.MarketError` whose kind gives its Fault: ``too-large`` (Fault 8) for a
bound, ``invalid`` (Fault 1) for anything that is not an XML-RPC ``methodCall``.

Cost, measured on this project's machines (``tests/test_rpc_codec.py`` keeps it honest): a body
of 256 KiB, the largest parsed on the reactor by default, takes at most ~30 ms whatever its shape:
a 256 KiB string 0.1 ms, a Binary 1 ms, escaped text 1.3 ms, 10,000 small ints (the default
bound) 18 ms, elements that are no values up to the bound 30 ms; nesting is refused at once. A
worker's typical ``state`` call (2 KB) takes 41 µs, xmlrpc.client.loads 47 µs.
"""

from __future__ import annotations

from typing import Any
from xml.parsers import expat
from xmlrpc.client import Fault, Unmarshaller

from market.core.errors import MarketError, TooLarge

#: the defaults of the [connections] settings max-depth and max-values (market.settings)
MAX_DEPTH = 16
MAX_VALUES = 10_000

# Elements that open an array or a struct, and one that holds a value. An element of a call sits
# under methodCall/params/param/value (4), each array or struct adds three (array/data/value,
# struct/member/value) and a scalar one more (<int>): so a call within max_depth nests elements at
# most 3 * max_depth + 5 deep, and has about 4 elements per value.
_CONTAINERS = ("array", "struct")
_SLACK = 8


class _Bounded(Unmarshaller):
    """xmlrpc.client's Unmarshaller that counts nesting, values and elements while it reads."""

    def __init__(self, max_depth: int, max_values: int):
        super().__init__(use_datetime=False, use_builtin_types=False)
        self.max_depth, self.max_values = max_depth, max_values
        self._open = 0  # elements open now
        self._deepest = 3 * max_depth + _SLACK
        self._values = 0
        self._elements = 0
        self._most_elements = 4 * max_values + _SLACK

    def start(self, tag: str, attrs: Any) -> None:
        # Unmarshaller.start, inlined with the counting (one Python call per element, as before)
        if ":" in tag:
            tag = tag.split(":")[-1]
        self._open += 1
        self._elements += 1
        if self._open > self._deepest:
            raise _deeper(self.max_depth)
        if self._elements > self._most_elements:
            raise _more(self.max_values)
        if tag == "array" or tag == "struct":
            if len(self._marks) >= self.max_depth:
                raise _deeper(self.max_depth)
            self._marks.append(len(self._stack))
        elif tag == "value":
            self._values += 1
            if self._values > self.max_values:
                raise _more(self.max_values)
        self._data = []
        if self._value and tag not in self.dispatch:
            raise MarketError(f"the request is not an XML-RPC call: unknown tag {tag[:40]!r} in a value")
        self._value = tag == "value"

    def end(self, tag: str) -> None:
        self._open -= 1
        super().end(tag)


def _deeper(depth: int) -> TooLarge:
    return TooLarge(f"the call's values are nested deeper than {depth} arrays or structs; send flatter values")


def _more(values: int) -> TooLarge:
    return TooLarge(f"the call has more than {values} values; send fewer")


def _no_doctype(*_: Any) -> None:
    raise MarketError("the request is not an XML-RPC call: a call carries no DOCTYPE or entities")


def parse_call(body: bytes, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> tuple[str, tuple[Any, ...]]:
    """``(method name, params)`` of an XML-RPC ``methodCall`` body, as ``xmlrpc.client.loads`` gives
    them (``Binary`` for base64, ``DateTime`` for dates), or a MarketError: TooLarge when the values
    nest deeper than ``max_depth`` arrays or structs or number more than ``max_values``, MarketError
    (Fault 1) for anything that is not a call. Pure: no I/O, no clock, safe in any thread or process.
    """
    target = _Bounded(max_depth, max_values)
    target.xml("", None)  # no encoding: expat hands over text, there is nothing to decode
    parser = expat.ParserCreate(None, None)
    # one text callback per megabyte rather than per line: a 16 MiB Binary in ~17 pieces, not 200,000
    parser.buffer_text = True
    parser.buffer_size = 1 << 20
    parser.StartElementHandler = target.start
    parser.EndElementHandler = target.end
    parser.CharacterDataHandler = target.data
    parser.StartDoctypeDeclHandler = _no_doctype
    parser.EntityDeclHandler = _no_doctype
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
        params = target.close()
    except MarketError:
        raise
    except Fault:  # a methodResponse carrying a fault
        raise MarketError("the request is not an XML-RPC methodCall") from None
    except Exception as e:  # expat, or a value xmlrpc.client cannot decode
        detail = str(e)[:200] or "not a methodCall"
        raise MarketError(f"the request is not an XML-RPC call: {detail}") from None
    finally:
        # break the parser <-> unmarshaller cycle at once: a refused 16 MiB body should not wait
        # for the cycle collector
        parser.StartElementHandler = parser.EndElementHandler = parser.CharacterDataHandler = None
    name = target.getmethodname()
    if not isinstance(name, str):  # a methodResponse, say
        raise MarketError("the request is not an XML-RPC methodCall")
    return name, params
