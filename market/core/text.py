"""Member text made safe to show: the one function every display of a name or message goes through.

Job names, e-mail addresses, ledger memos and the messages workers send are typed by strangers.
Shown raw they can move a terminal's cursor, recolour it or retitle its window (``ESC [``, the
8-bit ``CSI``), overwrite a line (``CR``), make an Atom feed unparseable (XML 1.0 cannot carry
most control characters), or make a name read backwards (bidirectional overrides). The
:func:`printable` form of a text writes each such character as a visible escape (``\\x1b``,
``\\u202e``) and leaves everything else alone, so the result is plain printable Unicode: safe on
a terminal, in XML 1.0, in HTML (after the usual escaping) and in an e-mail.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline are handled below), DEL and the C1 controls (0x9b is an 8-bit
# CSI); the bidirectional marks, embeddings, overrides and isolates; the Unicode line and
# paragraph separators; lone surrogates and the two noncharacters XML 1.0 cannot carry either.
_ALWAYS = (
    "\x00-\x08\x0b\x0c\x0d\x0e-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
    "\ud800-\udfff\ufffe\uffff"
)
_ONE_LINE = re.compile(f"[\t\n{_ALWAYS}]")
_LINES = re.compile(f"[{_ALWAYS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, lines: bool = False) -> str:
    """``text`` (anything; ``str()`` of it) with every control, bidi and XML-invalid character escaped.

    One line by default (a table cell, a title): tab and newline are escaped too. ``lines=True``
    keeps tab and newline (a multi-line message); a carriage return is always escaped, since on a
    terminal it lets the rest of a line overwrite what came before.
    """
    value = text if isinstance(text, str) else str(text)
    return (_LINES if lines else _ONE_LINE).sub(_escape, value)


def unprintable(text: str) -> str | None:
    """The first character :func:`printable` would escape in a one-line ``text``, escaped; None if none.

    For refusing such characters where a name is entered: ``"a job name may not contain \\x1b"``.
    """
    found = _ONE_LINE.search(text)
    return None if found is None else _escape(found)
