"""A member's jobs list as a query: page, page size, sort, filters and search (issue 19, item 5).

The web's ``/jobs`` and ``market status`` (XML-RPC ``jobs``) take the same parameters, as text,
from strangers: each is bounded and checked here, once, before the store sees it. Sort keys and
states are whitelisted words; names, batches and search words only ever reach SQL as bound
parameters (``market.store.jobs.page_of_jobs``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from market.core.rules import JobStatus
from market.core.states import FAILED

__all__ = ["JobQuery", "parse", "SORTS", "STATES", "PER_PAGE", "MAX_PER_PAGE", "MAX_PAGE", "MAX_TEXT"]

#: sort keys members may ask for (the store maps each to its column)
SORTS = ("id", "name", "status", "price", "progress", "submitted")
#: the states a list can be filtered by: the words members read (``market.core.states``)
STATES = tuple(s.value for s in JobStatus) + (FAILED,)
PER_PAGE = 25
MAX_PER_PAGE = 100
MAX_PAGE = 100_000  # past it OFFSET would make the database walk millions of rows for nothing
MAX_TEXT = 100  # a name filter or search words
MAX_BATCH = 2**63 - 1


class JobQuery(NamedTuple):
    """One page of a member's jobs: which, in what order."""

    page: int = 1
    per: int = PER_PAGE
    sort: str = "id"
    descending: bool = True  # newest first by default
    state: str | None = None
    name: str | None = None  # jobs whose name contains it
    batch: int | None = None
    search: str | None = None  # a job id, or words in the name or the error

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per

    def pages(self, total: int) -> int:
        """How many pages ``total`` matching jobs fill (at least one)."""
        return max(1, -(-total // self.per))

    def params(self, **change: object) -> dict[str, str]:
        """The query as the text parameters :func:`parse` reads back (for links), defaults left out."""
        default = _as_text(JobQuery())
        return {k: v for k, v in _as_text(self._replace(**change)).items() if v and v != default[k]}  # type: ignore[arg-type]


def _as_text(q: JobQuery) -> dict[str, str]:
    return {
        "page": str(q.page),
        "per": str(q.per),
        "sort": q.sort,
        "dir": "desc" if q.descending else "asc",
        "state": q.state or "",
        "name": q.name or "",
        "batch": "" if q.batch is None else str(q.batch),
        "q": q.search or "",
    }


def _int(text: str, what: str, low: int, high: int, errors: dict[str, str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        errors[what] = f"{what} must be a whole number from {low} to {high}"
        return None
    value = int(text)
    if not low <= value <= high:
        errors[what] = f"{what} must be a whole number from {low} to {high}"
        return None
    return value


def _text(text: str, what: str, errors: dict[str, str]) -> str | None:
    text = " ".join(text.split())  # no control characters, tabs or runs of spaces reach the store
    if len(text) > MAX_TEXT:
        errors[what] = f"{what} is longer than {MAX_TEXT} characters"
        return None
    return text or None


def parse(params: Mapping[str, str]) -> tuple[JobQuery, dict[str, str]]:
    """The query in ``params`` (text values: ``page``, ``per``, ``sort``, ``dir``, ``state``,
    ``name``, ``batch``, ``q``) and the problems found, by parameter, in plain words. A parameter
    with a problem takes its default, so a page can show the list and say what it ignored."""
    errors: dict[str, str] = {}

    def get(key: str) -> str:
        return str(params.get(key) or "")[: MAX_TEXT * 4]  # bounded before any work

    page = _int(get("page"), "page", 1, MAX_PAGE, errors) or 1
    per = _int(get("per"), "per", 1, MAX_PER_PAGE, errors) or PER_PAGE
    sort = get("sort").strip().lower() or "id"
    if sort not in SORTS:
        errors["sort"] = f"sort must be one of {', '.join(SORTS)}"
        sort = "id"
    direction = get("dir").strip().lower()
    if direction not in ("", "asc", "desc"):
        errors["dir"] = "dir must be asc or desc"
        direction = ""
    # ids and submission times read newest first; names, statuses and the rest from a to z
    descending = direction == "desc" if direction else sort in ("id", "submitted", "price", "progress")
    state = get("state").strip().lower() or None
    if state is not None and state not in STATES:
        errors["state"] = f"state must be one of {', '.join(STATES)}"
        state = None
    batch = _int(get("batch"), "batch", 1, MAX_BATCH, errors)
    name = _text(get("name"), "name", errors)
    search = _text(get("q"), "q", errors)
    return JobQuery(page, per, sort, descending, state, name, batch, search), errors
