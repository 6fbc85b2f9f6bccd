"""One streaming pass over a market report's bytes: what the pricing rule needs, picked with XPath.

The report may hold a million jobs, so it is never loaded whole: an ``lxml.etree.XMLPullParser``
(the incremental parser under ``iterparse``) is fed the bytes a block at a time; after each block,
compiled XPath queries pick the relevant values out of the finished children of <clients> and
<jobs>, which are then deleted. No Python code runs per element, which is what keeps a
million-job report within seconds. The XSD is checked by libxml2 on the same streaming pass
(``schema=``), so validation needs no second read and no whole-document tree.

This is the pass both readers share: :mod:`quote.reader` runs it once over a whole file or
stream, :mod:`quote.split` once per part of a large file. It imports neither of them.

The report is untrusted input: no external entity or DTD is ever loaded, nothing is fetched
from the network, and a report with a DOCTYPE is refused (see ``UNTRUSTED``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from lxml import etree

NAMESPACE = "urn:market:report:1"
NS = {"r": NAMESPACE}
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.xsd")
# bytes fed to the parser at a time: ~1,500 jobs between two XPath passes; small enough that
# the live part of the tree stays in the CPU cache
BLOCK = 1 << 18

# Statuses that compete for clients in a future window: 'running' jobs are back on the ready list
# when their slice ends, which is exactly when their clients ask for work again. 'held', 'new'
# (no initial state yet), 'finished' and 'cancelled' jobs do not compete.
COMPETING = "@status='ready' or @status='running'"
# xs:boolean is 'true'/'1' or 'false'/'0', with whitespace collapsed
NOT_SUSPECT = "normalize-space(r:suspect)='false' or normalize-space(r:suspect)='0'"


# How the report (untrusted input) is parsed. Not resolve_entities=False: with lxml 6.1 /
# libxml2 2.14 that setting, combined with schema validation in an incremental parser, lets
# malformed and truncated documents through without an error. 'internal' never loads an external
# entity (no file or network access), and leaving huge_tree off keeps libxml2's limits on entity
# amplification ("billion laughs") and nesting depth. A report with a DOCTYPE is refused anyway.
class ParserOptions(TypedDict):
    """lxml parser keyword arguments (typed, so each is checked against the parser's signature)."""

    resolve_entities: Literal["internal"]
    no_network: bool
    load_dtd: bool
    huge_tree: bool


UNTRUSTED = ParserOptions(resolve_entities="internal", no_network=True, load_dtd=False, huge_tree=False)


def _xpath(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=NS, smart_strings=False)


# Each query runs on a <clients> or <jobs> element and looks only at its first $k children: the
# parser may already have started the last one, which is not complete yet.
# (``*[position() <= $k]`` counts every child element, as ``k`` does.)
_ELIGIBLE_SPEEDS = _xpath(f"*[position() <= $k][self::r:client][@status='active'][{NOT_SUSPECT}]/r:speed/text()")
_COMPETING_PRICES = _xpath(f"*[position() <= $k][self::r:job][{COMPETING}]/r:price/text()")

_TAG = {
    name: "{%s}%s" % (NAMESPACE, name)
    for name in ("report", "clients", "client", "jobs", "job", "dispatches", "dispatch")
}
_SECTION_TAGS = frozenset((_TAG["clients"], _TAG["jobs"], _TAG["dispatches"]))
_PRICE = re.compile(r"^\s*(\d+)\.(\d{2})\s*$")


class ReportError(Exception):
    """The report cannot be used: ``kind`` is 'missing', 'not-xml' or 'invalid'."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class MarketView:
    """What the report says about the market, reduced to what quoting needs."""

    speeds: list[float] = field(default_factory=list)  # active, non-suspect, measured clients
    price_counts: Counter = field(default_factory=Counter)  # competing job price (cents) -> jobs
    clients: int = 0
    jobs: int = 0
    dispatches: int = 0
    generated_at: str | None = None

    @property
    def competing(self) -> int:
        return sum(self.price_counts.values())


_schema: etree.XMLSchema | None = None


def schema() -> etree.XMLSchema:
    """The report XSD shipped with this tool, parsed once."""
    global _schema
    if _schema is None:
        _schema = etree.XMLSchema(etree.parse(SCHEMA_FILE, _safe_parser()))
    return _schema


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(**UNTRUSTED)


class _Reader:
    def __init__(self) -> None:
        self.view = MarketView()
        self.price_texts: Counter = Counter()

    def take(self, container, k: int) -> None:
        """Take what is needed from the first ``k`` (complete) children of ``container``."""
        if container.tag == _TAG["clients"]:
            self.view.clients += k
            for text in _ELIGIBLE_SPEEDS(container, k=k):
                try:
                    self.view.speeds.append(float(text))
                except ValueError:
                    raise ReportError("invalid", f"a client's speed {text.strip()[:40]!r} is not a number") from None
        elif container.tag == _TAG["jobs"]:
            self.view.jobs += k
            # Counting the raw strings is done in C; only the few distinct prices are parsed in
            # finish(). The XSD guarantees every job a price; with --no-validate the report's
            # structure is trusted (checking it here would cost a second XPath pass per block).
            self.price_texts.update(_COMPETING_PRICES(container, k=k))
        elif container.tag == _TAG["dispatches"]:
            self.view.dispatches += k
        # lets the parser reuse the memory: the report is never held whole
        del container[:k]

    def finish(self) -> MarketView:
        for text, count in self.price_texts.items():
            m = _PRICE.match(text)
            if m is None:
                raise ReportError("invalid", f"a job's price {text.strip()[:40]!r} is not credits like 5.20")
            self.view.price_counts[int(m.group(1)) * 100 + int(m.group(2))] += count
        return self.view


# A processing instruction quote.split puts in the prolog of every part it reads (see stream()).
MARKER = b"<?quote-part?>"


def stream(blocks: Iterable[bytes], validate: bool, marked: bool = False) -> tuple[MarketView, etree._Element]:
    """One streaming pass over ``blocks``: the view and the root element (its sections emptied).

    Raises :class:`ReportError` or ``etree.XMLSyntaxError`` (not yet classified). With
    ``marked`` the blocks must carry :data:`MARKER` in the prolog, and any other processing
    instruction raises ``ValueError`` (quote.split then reads the file in one pass, which keeps
    processing instructions out of the tree).
    """
    reader = _Reader()
    if marked:
        # No element events at all: lxml calls back into Python for every element whose events
        # are asked for, even with a tag filter (~7 % of the validating pass, measured). The
        # marker's "pi" event gives the tree instead; the sections are found among the root's
        # children.
        parser = etree.XMLPullParser(
            events=("pi",),
            schema=schema() if validate else None,
            remove_comments=True,
            remove_pis=False,
            collect_ids=False,
            **UNTRUSTED,
        )
        found = _Found()
    else:
        # Only "start" events, filtered to the report and its sections (the filter is applied
        # after the callback; an "end" event too would double its cost, ~0.5 s of 7 on a
        # million-job report).
        parser = etree.XMLPullParser(
            events=("start",),
            tag=(_TAG["report"], _TAG["clients"], _TAG["jobs"], _TAG["dispatches"]),
            schema=schema() if validate else None,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
            **UNTRUSTED,
        )
    root: list = []
    sections: list = []  # the report's own <clients>, <jobs>, <dispatches>, in document order
    done = 0  # sections[:done] are complete and emptied
    for block in blocks:
        parser.feed(block)
        if marked:
            found.drain(parser, root, sections)
        else:
            _drain(parser, root, sections)
        # A section is complete once the next one has started. The last child of the last one
        # may still be half-parsed: leave it for later. No Python runs per element; one XPath
        # pass per section per block.
        while done < len(sections) - 1:
            reader.take(sections[done], len(sections[done]))
            done += 1
        if sections and len(sections[-1]) > 1:
            reader.take(sections[-1], len(sections[-1]) - 1)
    closed = parser.close()
    if marked:
        found.drain(parser, root, sections)
    else:
        _drain(parser, root, sections)
    if not root:
        raise ReportError("invalid", f'not a market report (expected <report xmlns="{NAMESPACE}">)')
    if closed is not root[0]:
        # belt and braces: never quote from a report that stopped half-way
        raise ReportError("not-xml", "not well-formed XML: the report ends before </report> (truncated?)")
    for section in sections[done:]:
        reader.take(section, len(section))
    reader.view.generated_at = root[0].get("generated-at")
    return reader.finish(), root[0]


def _no_doctype(tree) -> None:
    if tree.docinfo.internalDTD is not None:
        # the market never writes one; a DTD only serves entity tricks
        raise ReportError("invalid", "a market report has no DOCTYPE; this one declares one")


def _drain(parser, root: list, sections: list) -> None:
    for _, element in parser.read_events():
        parent = element.getparent()
        if element.tag == _TAG["report"] and parent is None:
            _no_doctype(element.getroottree())
            root[:] = [element]
        elif parent is not None and parent.getparent() is None and element.tag != _TAG["report"]:
            sections.append(element)  # only <report>'s own sections count


class _Found:
    """stream(marked=True): the marker, then the root, then the root's new children after each block."""

    def __init__(self) -> None:
        self.marker = None
        self.last = None  # the root's last child seen so far

    def drain(self, parser, root: list, sections: list) -> None:
        for _, pi in parser.read_events():
            if self.marker is not None or pi.target != MARKER[2:-2].decode():
                raise ValueError("a processing instruction in the report")
            self.marker = pi
        if self.marker is None:
            return
        if not root:
            tree = self.marker.getroottree()  # (an ElementTree's root is fixed when it is made)
            element = tree.getroot()
            if element is None:
                return
            _no_doctype(tree)
            if element.tag != _TAG["report"]:
                return
            root[:] = [element]
        child = next(root[0].iterchildren(), None) if self.last is None else self.last.getnext()
        while child is not None:
            if child.tag in _SECTION_TAGS:
                sections.append(child)
            self.last, child = child, child.getnext()
