"""Validate a large report on several CPUs: cut it into parts, validate each part in a process.

libxml2's XSD validator runs on one core and roughly doubles the streaming pass (see
docs/benchmarks-quote.md), so a validating read of a large file is split by bytes into parts of
about ``SPLIT_PART_BYTES``. This process and ``processes - 1`` forked children take part
numbers from a shared pipe until none are left, so a worker that gets less CPU simply reads fewer
parts. Each part goes through the same validating streaming pass as the one-pass read
(``streaming.stream``); a child sends what it read to the parent as JSON over a pipe (nothing is
pickled), and the parent adds the parts' views up.

How a part is made. A cut is the position just after the first ``</client>``, ``</job>`` or
``</dispatch>`` at or after a target position; the cut's *section* is the one whose child that
end tag closes. The part before a cut is fed its bytes and then a synthetic end (for a cut in
<jobs>: ``</jobs><dispatches/></report>``); the part after it is fed a synthetic start (``<report
xmlns="urn:market:report:1" version="1" generated-at="..."><clients/><jobs>``) and then its bytes.
Synthetic sections are empty, so the counts add up exactly; ``generated-at`` comes from the first
part, the only one that reads the real root. Every part also carries one processing instruction,
``streaming.MARKER``, in its prolog - the first part right after its XML declaration, the others at
the head of their synthetic start - so that lxml has a single event to report and calls back into
Python for no element (~7 % of the validating pass); a part with any other processing
instruction is not vouched for. A PI in the prolog is well-formed there and ignored by the
validator.

Why the answer is the one-pass answer (soundness). The file is split only when it is plainly
UTF-8: an optional UTF-8 byte order mark, then no XML declaration or one that says version 1.0
and, if anything, encoding UTF-8. A DOCTYPE is refused (so there are no entities). Then:

1. If the part before a cut validates, the parser was in the element content of an element E at
   depth 2 at the cut. The bytes ``</job>`` cannot lie in an attribute value (``<`` is not
   allowed there), and in character data they are markup: so unless they are an end tag, they
   lie in a comment, a PI or a CDATA section, and the synthetic end, which has no ``-->``, ``?>``
   or ``]]>``, would be swallowed and leave the part unfinished. After an end tag the parser is
   in element content; the synthetic end's first end tag closes the innermost open element E,
   its empty sections become E's siblings and ``</report>`` must close the root: so the open
   elements were exactly [root, E]. UTF-8 never has the bytes of ``</job>`` inside a multi-byte
   character.
2. The part checks that E - the root's child just before the synthetic sections - is the
   report's own section (``{urn:market:report:1}jobs``, not an extension element of another
   namespace that happens to be called ``jobs``) and that exactly the namespaces the synthetic
   start declares, ``{None: 'urn:market:report:1'}``, are in scope on it. So the part after the
   cut starts in the very state the one-pass parser is in at the cut: in the content of the same
   section at depth 2, the root valid up to it, with the same namespaces, encoding and XML
   version and no DTD. Well-formedness is local to the tokens, which no cut splits, and so are
   libxml2's limits (name and text lengths, nesting depth).
3. The schema gives each section a plain repetition of one element type, ``client*``, ``job*``,
   ``dispatch*`` (no bounds, no identity constraints, no xs:ID, no wildcard attributes): the
   validator's state in a section does not depend on how many children came before it, and each
   child is valid or not on its own. So the whole document is valid exactly when every part is,
   and the parts' views add up to the one-pass view.

Any failure in any part - a cut in a comment, another namespace prefix, a schema error, a
processing instruction, a child that dies, a part nobody read - gives None, and the caller reads
the file again in one pass, which gives the precise error message (or, for a valid file whose cut
was unlucky, the answer). Errors are rare; "valid" is never reported unless every part validated.

Forking needs ``os.fork`` (not on Windows): without it a read is one pass. A forked child only
runs lxml and writes to its pipe, then leaves with ``os._exit`` (no atexit handlers, no flush of
the parent's buffers).
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxml import etree

from quote import streaming

# A validating read of a file of at least two parts of this size is split into parts of about
# this size, read by one process per CPU: small enough to even out the processes' work, large
# enough that the ~1 ms a part costs does not count. One pass over 16 MB takes ~0.5 s anyway.
# (quote.reader.SPLIT_PART_BYTES is this same constant.)
SPLIT_PART_BYTES = 8 << 20

# the end tags a cut may follow, and the section each one's element is a child of
_CUT_TAGS = {b"client>": "clients", b"job>": "jobs", b"dispatch>": "dispatches"}
_SECTIONS = ("clients", "jobs", "dispatches")
# how far past its share of the bytes a part may look for a cut
_SEARCH = 8 << 20
# part numbers go through a pipe as one byte each
_MAX_PARTS = 255
# Workers by default: one per usable CPU, at most this many. Each holds ~30 MB (one part's parser
# and a block's worth of tree), so four stay far below quote's 300 MB budget. (Measured with two
# only: the project's machines have 2 CPUs.)
MAX_PROCESSES = 4
_SYNTHETIC_ROOT = f'<report xmlns="{streaming.NAMESPACE}" version="1" generated-at="2000-01-01T00:00:00Z">'
_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(['\"])1\.0\1"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(['\"])(?P<encoding>[A-Za-z0-9._-]+)\2)?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(['\"])(?:yes|no)\4)?[ \t\r\n]*\?>"
)
_BOM = b"\xef\xbb\xbf"


def synthetic_start(section: str) -> bytes:
    """What part after a cut in ``section`` is fed before its bytes: the report up to that section."""
    before = _SECTIONS[: _SECTIONS.index(section)]
    return (_SYNTHETIC_ROOT + "".join(f"<{s}/>" for s in before) + f"<{section}>").encode()


def synthetic_end(section: str) -> bytes:
    """What the part before a cut in ``section`` is fed after its bytes: the rest of the report."""
    after = _SECTIONS[_SECTIONS.index(section) + 1 :]
    return (f"</{section}>" + "".join(f"<{s}/>" for s in after) + "</report>").encode()


@dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of the file, after a cut in ``opens`` and before one in ``closes``."""

    start: int
    end: int
    opens: str | None = None  # section of the cut at ``start``; None for the first part
    closes: str | None = None  # section of the cut at ``end``; None for the last part
    prolog: int = 0  # first part: where its prolog goes on after the XML declaration


def plain_utf8(head: bytes) -> int | None:
    """Whether a document starting with ``head`` is UTF-8 XML 1.0 by its own account: then the
    offset where its prolog goes on after the byte order mark and XML declaration, else None."""
    start = len(_BOM) if head.startswith(_BOM) else 0
    if head.startswith(b"<?xml", start):
        m = _DECLARATION.match(head, start)
        if m is None or (m.group("encoding") is not None and m.group("encoding").lower() != b"utf-8"):
            return None
        return m.end()
    # no declaration: UTF-8 unless the first bytes say otherwise (UTF-16/32 put a 0 byte next to '<')
    utf8 = head[start : start + 1] == b"<" and head[start + 1 : start + 2] not in (b"", b"\x00")
    return start if utf8 else None


def find_cut(f, start: int, limit: int) -> tuple[int, str] | None:
    """The position just after the first ``</client>``, ``</job>`` or ``</dispatch>`` that starts
    in ``[start, limit)`` of the binary file ``f``, with its section; None if there is none."""
    chunk_size, overlap = 1 << 16, 16  # overlap: the longest tag, "</dispatch>", fits
    pos = start
    while pos < limit:
        f.seek(pos)
        chunk = f.read(chunk_size + overlap)
        scan = min(len(chunk), chunk_size, limit - pos)  # look for tags starting in chunk[:scan]
        if scan <= 0:
            return None
        i = chunk.find(b"</", 0, scan + 1)
        while i != -1:
            for tag, section in _CUT_TAGS.items():
                if chunk.startswith(tag, i + 2):
                    return pos + i + 2 + len(tag), section
            i = chunk.find(b"</", i + 1, scan + 1)
        pos += scan
    return None


def plan(path: str, targets: list[int]) -> list[Part] | None:
    """The parts of the file at ``path`` with a cut at the first suitable end tag at or after each
    of the byte positions ``targets`` (ascending); None when it should be read in one pass."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError:
        return None  # the one pass reports it
    with f:
        prolog = plain_utf8(f.read(256))
        if prolog is None:
            return None
        cuts: list[tuple[int, str]] = []
        for target in targets:
            start = max(target, cuts[-1][0] if cuts else 0)
            cut = find_cut(f, start, min(size, start + _SEARCH))
            if cut is not None and cut[0] < size and cut[0] > (cuts[-1][0] if cuts else 0):
                cuts.append(cut)
    if not cuts:
        return None
    edges = [(0, None)] + cuts + [(size, None)]
    return [
        Part(edges[i][0], edges[i + 1][0], edges[i][1], edges[i + 1][1], prolog if i == 0 else 0)
        for i in range(len(edges) - 1)
    ]


def _part_blocks(path: str, part: Part) -> Iterator[bytes]:
    """The part's bytes, each part with streaming.MARKER in its prolog: the first part's right after
    the XML declaration (a processing instruction may stand there; the validator ignores it),
    the others' in their synthetic start."""
    if part.opens is not None:
        yield streaming.MARKER + synthetic_start(part.opens)
    with open(path, "rb") as f:  # opened by this process: no file offset shared with another
        f.seek(part.start)
        left = part.end - part.start
        if part.opens is None:
            yield f.read(part.prolog) + streaming.MARKER
            left -= part.prolog
        while left > 0:
            block = f.read(min(streaming.BLOCK, left))
            if not block:
                raise OSError("the file shrank while it was read")
            left -= len(block)
            yield block
    if part.closes is not None:
        yield synthetic_end(part.closes)


def read_part(path: str, part: Part) -> streaming.MarketView:
    """Validate and read one part; raises on any failure (the caller then reads in one pass)."""
    etree.clear_error_log()
    view, root = streaming.stream(_part_blocks(path, part), validate=True, marked=True)
    if part.closes is not None:
        # The synthetic end closed the element open at the cut and added the sections after it:
        # that element must be the report's own section, with exactly the namespaces in scope
        # that the next part's synthetic start declares.
        after = len(_SECTIONS) - 1 - _SECTIONS.index(part.closes)
        children = list(root)
        cut_in = children[-1 - after] if len(children) > after else None
        if cut_in is None or cut_in.tag != streaming._TAG[part.closes] or cut_in.nsmap != {None: streaming.NAMESPACE}:
            raise ValueError("the cut is not in the report's own section, or other namespaces are in scope")
    if part.opens is not None:
        view.generated_at = None  # the synthetic start's, not the report's
    return view


def merge(views: list[streaming.MarketView]) -> streaming.MarketView:
    """The parts' views added up (``generated_at`` comes from the first part, the only one that
    read the real root)."""
    total = streaming.MarketView()
    for view in views:
        total.speeds.extend(view.speeds)
        total.price_counts.update(view.price_counts)
        total.clients += view.clients
        total.jobs += view.jobs
        total.dispatches += view.dispatches
        total.generated_at = total.generated_at or view.generated_at
    return total


def _to_json(done: list[int], view: streaming.MarketView) -> bytes:
    return json.dumps(
        {
            "parts": done,
            "speeds": view.speeds,
            "prices": {str(k): v for k, v in view.price_counts.items()},
            "clients": view.clients,
            "jobs": view.jobs,
            "dispatches": view.dispatches,
            "generated_at": view.generated_at,
        }
    ).encode()


def _from_json(data: bytes) -> tuple[list[int], streaming.MarketView]:
    d = json.loads(data)
    view = streaming.MarketView(
        speeds=[float(s) for s in d["speeds"]],
        clients=int(d["clients"]),
        jobs=int(d["jobs"]),
        dispatches=int(d["dispatches"]),
        generated_at=d["generated_at"],
    )
    for price, count in d["prices"].items():
        view.price_counts[int(price)] += int(count)
    return [int(i) for i in d["parts"]], view


def _work(
    path: str, pieces: list[Part], tasks: int, stop: Callable[[], bool] | None = None
) -> tuple[list[int], streaming.MarketView]:
    """Take part numbers from the ``tasks`` pipe (one byte each) until it is empty, and read those
    parts; gives up (raises) as soon as ``stop()`` says another worker failed."""
    done: list[int] = []
    views: list[streaming.MarketView] = []
    while True:
        if stop is not None and stop():
            raise RuntimeError("another part failed")
        task = os.read(tasks, 1)
        if not task:
            return done, merge(views)
        done.append(task[0])
        views.append(read_part(path, pieces[task[0]]))


def _fork_worker(path: str, pieces: list[Part], tasks: int) -> tuple[int, int]:
    """Start a child that works on parts from ``tasks`` and writes what it read as JSON to a pipe;
    returns (pid, the pipe's read end)."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child: never return into the caller's code
        code = 1
        try:
            os.close(r)
            data = memoryview(_to_json(*_work(path, pieces, tasks)))
            while data:
                data = data[os.write(w, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _succeeded(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


class _Children:
    """The forked workers: the read end of each one's pipe, and its wait status once reaped."""

    def __init__(self) -> None:
        self.pipes: dict[int, int] = {}
        self.status: dict[int, int] = {}

    def start(self, path: str, pieces: list[Part], tasks: int) -> None:
        pid, fd = _fork_worker(path, pieces, tasks)
        self.pipes[pid] = fd

    def any_failed(self) -> bool:
        """Whether a child has already exited unsuccessfully (polls, never blocks)."""
        for pid in self.pipes:
            if pid not in self.status:
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    self.status[pid] = status
            if pid in self.status and not _succeeded(self.status[pid]):
                return True
        return False

    def results(self) -> list[tuple[list[int], streaming.MarketView]] | None:
        """Each child's parts and view, once it has finished; None if any failed."""
        results = []
        for pid, fd in self.pipes.items():
            data = _read_all(fd)
            if pid not in self.status:
                self.status[pid] = os.waitpid(pid, 0)[1]
            if not _succeeded(self.status[pid]):
                return None
            try:
                results.append(_from_json(data))
            except (ValueError, KeyError, TypeError):
                return None
        return results

    def close(self) -> None:
        """Stop the children still running (after a failure), reap them, close the pipes."""
        for pid, fd in self.pipes.items():
            if pid not in self.status:  # never signal a reaped pid: it may be another process now
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    self.status[pid] = os.waitpid(pid, 0)[1]
                except OSError:
                    pass
            os.close(fd)
        self.pipes.clear()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run(path: str, pieces: list[Part], processes: int) -> streaming.MarketView | None:
    """Validate and read ``pieces`` of the file with ``processes`` processes (this one and forked
    children), each taking the next part nobody has taken; None if any part failed."""
    if not hasattr(os, "fork") or not 1 <= len(pieces) <= _MAX_PARTS:
        return None
    tasks, queue = os.pipe()
    try:
        os.write(queue, bytes(range(len(pieces))))  # fewer than PIPE_BUF bytes: written at once
    finally:
        os.close(queue)  # an empty queue then reads as end of file
    children = _Children()
    try:
        for _ in range(min(processes, len(pieces)) - 1):
            children.start(path, pieces, tasks)
        try:
            mine = _work(path, pieces, tasks, stop=children.any_failed)
        except Exception:  # any failure at all: the one pass will tell what it is
            return None
        theirs = children.results()
        if theirs is None:
            return None
        results = [mine] + theirs
        if sorted(i for done, _ in results for i in done) != list(range(len(pieces))):
            return None  # never vouch for a part nobody read
        return merge([view for _, view in results])
    except OSError:  # no fork, no pipe
        return None
    finally:
        os.close(tasks)
        children.close()


def read(path: str, processes: int | None = None, part_bytes: int = SPLIT_PART_BYTES) -> streaming.MarketView | None:
    """Validate and read the report at ``path`` in parts of about ``part_bytes``, in parallel;
    None if it was not split or any part failed (read it in one pass then)."""
    processes = min(usable_cpus(), MAX_PROCESSES) if processes is None else processes
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    count = min(_MAX_PARTS, size // max(1, part_bytes))
    if processes < 2 or count < 2 or not hasattr(os, "fork"):
        return None
    pieces = plan(path, [size * i // count for i in range(1, count)])
    return None if pieces is None else run(path, pieces, processes)
