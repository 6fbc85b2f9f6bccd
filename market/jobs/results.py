"""Showing a job's result: its JSON text within a budget, written in a helper process.

A result is a stranger's bytes: a few hundred of them can stand for 2**40 values (a list holding
the same list twice, forty levels deep), and a set of integers chosen to share one hash takes
seconds to build. So a result is never decoded to be shown: :func:`rendered` (in a helper, see
``market.offload``) reads the encoded bytes once to count the values with every shared part
counted where it appears, refuses past ``render-nodes``, and writes the JSON text straight from
the bytes up to a number of characters. The web page, the JSON download, XML-RPC ``outcome``'s
preview and ``market result`` all show a result this way; the encoded bytes themselves can
always be downloaded as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from market import tasklet

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: characters of a result shown on a page or in ``outcome``'s preview
SHOWN_CHARS = 20_000


@dataclass(frozen=True)
class Shown:
    """A result as text: ``text`` (None when it cannot be shown), whether that is the whole
    result, the encoded result's size in bytes, why the text is cut or missing (plain words, to
    follow "the result ..."), and whether the bytes are no encoded value at all."""

    text: str | None
    complete: bool
    size: int
    problem: str = ""
    malformed: bool = False  #: the bytes are not an encoded value at all


def rendered(
    data: bytes, max_chars: int, max_nodes: int, indent: int | None, as_text: bool = True
) -> tuple[str | None, bool, str, bool]:
    """(text, complete, problem, malformed): the result's JSON text (with ``as_text`` a text result
    as itself), at most ``max_chars`` characters, or None with the reason when it cannot be shown.
    Bounded by the budgets and the length of ``data`` whatever it holds; runs in a helper."""
    try:
        text, complete = tasklet.render_result(data, max_chars, max_nodes, indent, as_text)
    except tasklet.OverBudget:
        return (
            None,
            False,
            f"holds more than {max_nodes:,} values once each shared part is counted where it appears",
            False,
        )
    except tasklet.CodecError as e:
        return None, False, f"could not be decoded: {e}", True
    return text, complete, ("" if complete else f"is longer than {max_chars:,} characters"), False


def show(
    pool: Any,
    data: bytes,
    max_chars: int = SHOWN_CHARS,
    indent: int | None = 1,
    as_text: bool = True,
    owner: object = None,
) -> Deferred:
    """A Deferred of the :class:`Shown` text of the encoded result ``data``, written by a helper of
    ``pool`` within its ``render-nodes`` and ``max_chars``. Fails only with the pool's refusals
    (busy, too slow)."""
    data = bytes(data)
    nodes = pool.settings.render_nodes
    d = pool.call("market.jobs.results:rendered", data, max_chars, nodes, indent, as_text, owner=owner)
    return d.addCallback(lambda answer: Shown(answer[0], answer[1], len(data), answer[2], answer[3]))


def show_here(data: bytes, max_chars: int, max_nodes: int, indent: int | None = None) -> Shown:
    """:func:`show` in this process (``market result`` on a member's own machine: the budgets bound it)."""
    text, complete, problem, malformed = rendered(bytes(data), max_chars, max_nodes, indent, True)
    return Shown(text, complete, len(data), problem, malformed)
