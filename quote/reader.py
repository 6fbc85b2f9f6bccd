"""Read what the pricing rule needs from a market report: a file, or a stream such as standard input.

The work is one streaming pass (:mod:`quote.streaming`: XPath over a block at a time, the XSD
checked by libxml2 on the same pass, never the whole document in memory). A validating read of a
large file is split into parts validated on all CPUs (:mod:`quote.split`), which falls back to one
pass whenever it cannot vouch for the result; the one pass is also what turns libxml2's errors
into the plain-words :class:`ReportError`.

The report is untrusted input: no external entity or DTD is ever loaded, nothing is fetched
from the network, and a report with a DOCTYPE is refused (see ``streaming.UNTRUSTED``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from lxml import etree

from quote import split
from quote.split import SPLIT_PART_BYTES
from quote.streaming import BLOCK, SCHEMA_FILE, UNTRUSTED, MarketView, ReportError, stream

# What callers (quote.cli, tests, benchmarks) use from here. BLOCK is looked up here by _blocks, so
# a test can make this module feed tiny blocks; SPLIT_PART_BYTES is the split's default part size.
__all__ = ["BLOCK", "SCHEMA_FILE", "SPLIT_PART_BYTES", "MarketView", "ReportError", "read", "read_one_pass"]


def _blocks(source: str | IO[bytes]) -> Iterator[bytes]:
    if not isinstance(source, str):
        while True:
            block = source.read(BLOCK)
            if not block:
                return
            yield block
    try:
        f = open(source, "rb")
    except OSError as e:
        raise ReportError("missing", f"cannot read the file: {e.strerror or e}") from None
    with f:
        while True:
            try:
                block = f.read(BLOCK)
            except OSError as e:  # e.g. a directory
                raise ReportError("missing", f"cannot read the file: {e.strerror or e}") from None
            if not block:
                return
            yield block


def read(
    source: str | IO[bytes],
    validate: bool = True,
    *,
    processes: int | None = None,
    split_part_bytes: int = SPLIT_PART_BYTES,
) -> MarketView:
    """Stream the report at ``source`` (a path or a binary file) into a :class:`MarketView`.

    Raises :class:`ReportError` for a missing file, a file that is not XML, or (with ``validate``)
    a document that does not conform to the report XSD.

    A validating read of a file of at least two ``split_part_bytes`` is split into parts of about
    that size, read by ``processes`` processes (default: one per usable CPU, at most four), see
    :mod:`quote.split`; whenever the split cannot vouch for the whole document the file is read
    again in one pass, which gives the same answer or the precise error. Tests pass a small
    ``split_part_bytes`` to split small files.
    """
    if validate and isinstance(source, str):
        view = split.read(source, processes, split_part_bytes)
        if view is not None:
            return view
    return read_one_pass(source, validate)


def read_one_pass(source: str | IO[bytes], validate: bool = True) -> MarketView:
    """:func:`read` in a single streaming pass, never split; its errors are the reference."""
    etree.clear_error_log()
    try:
        view, _ = stream(_blocks(source), validate)
    except etree.XMLSyntaxError as e:
        # libxml2's validator reports a broken document (say, a truncated download) as a schema
        # error before the parser notices; tell the user what is really wrong when we can
        broken = _syntax_error(source) if validate and isinstance(source, str) else None
        raise (broken or _classify(e)) from None
    return view


if TYPE_CHECKING:
    # types-lxml's parser target interface exists only in the stubs; there it lists every callback,
    # and a target that subclasses it may define only the ones it needs, as lxml allows
    from lxml.etree import ParserTarget

    _Target = ParserTarget[None]
else:
    _Target = object


class _Ignore(_Target):
    """A parser target that keeps nothing: a pure well-formedness check in constant memory. It
    defines no callback on purpose: lxml then calls no Python code per element."""

    def close(self) -> None:
        return None


def _syntax_error(path: str) -> ReportError | None:
    etree.clear_error_log()
    try:
        etree.parse(path, etree.XMLParser(target=_Ignore(), **UNTRUSTED))
    except etree.XMLSyntaxError as e:
        return _classify(e)
    except OSError:
        return None
    return None


def _classify(error: etree.XMLSyntaxError) -> ReportError:
    entries = list(error.error_log)
    parser = [x for x in entries if x.domain_name == "PARSER"]
    if parser:
        first = parser[0]
        return ReportError("not-xml", f"not well-formed XML (line {first.line}): {first.message.strip()}")
    schema_errors = [x for x in entries if x.domain_name == "SCHEMASV"]
    if schema_errors:
        return ReportError("invalid", f"not a valid market report: {schema_errors[0].message.strip()}")
    return ReportError("not-xml", f"not well-formed XML: {error.msg}")
