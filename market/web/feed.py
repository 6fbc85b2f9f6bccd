"""An Atom feed of a member's job state changes, at a private URL (the paper's suggested RSS feed).

Feed readers cannot log in, so the URL itself is the secret: ``/feed/ACCOUNT/TOKEN.atom`` where
TOKEN is an HMAC of the account id keyed with the account's password hash. Nothing extra is stored,
the server can recompute it, and changing the password retires every old feed URL.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import Any

from lxml import etree

from market.accounts import credentials
from market.core import states
from market.core.errors import NotFound
from market.core.rules import JobStatus
from market.core.text import printable
from market.store import accounts as sql_accounts
from market.store import web as sql_web
from market.web.context import Pages

ATOM = "http://www.w3.org/2005/Atom"


def utc(t: float) -> str:
    """Epoch seconds -> RFC 3339 in UTC, as Atom wants."""
    return datetime.datetime.fromtimestamp(float(t), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def feed_token(account: dict[str, Any]) -> str:
    """The account's feed token (changes when the password changes)."""
    key = (account["password_hash"] or "").encode("utf-8")
    return hmac.new(key, f"market-feed:{account['id']}".encode(), hashlib.sha256).hexdigest()[:40]


def feed_path(account: dict[str, Any]) -> str:
    """The path of the account's private feed."""
    return f"/feed/{account['id']}/{feed_token(account)}.atom"


def atom(base: str, account: dict[str, Any], events, now: float) -> bytes:
    """The Atom document for these events (newest first)."""

    def add(parent, tag, text=None, **attrib):
        element = etree.SubElement(parent, f"{{{ATOM}}}{tag}", {k: printable(v) for k, v in attrib.items()})
        if text is not None:
            # names are members' text: XML 1.0 cannot carry most control characters, and a feed
            # reader should not show bidi overrides raw either
            element.text = printable(text)
        return element

    root = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    add(root, "title", f"Jobs of {account['name']} — Market Dispatcher")
    add(root, "id", f"urn:market:feed:{account['id']}")
    add(root, "updated", utc(events[0]["at"] if events else now))
    add(add(root, "author"), "name", "Market Dispatcher")
    add(root, "link", rel="alternate", href=f"{base}/jobs")
    for e in events:
        entry = add(root, "entry")
        summary = e["detail"]  # a slice's: "slice 307 accepted"
        if e["event"] == "finished":  # the words of market.core.states: a failed job is no "finished"
            state = states.job_state(JobStatus.FINISHED, e["detail"] or None)
            what = f"failed: {state.reason}" if state.failed else "finished"
            summary = state.reason
        else:
            what = {"submitted": "was submitted", "cancelled": "was cancelled"}.get(e["event"], e["detail"])
            summary = summary or what
        add(entry, "title", f"Job {e['job_id']} ({e['name']}) {what}")
        add(entry, "id", f"urn:market:job:{e['job_id']}:{e['event']}:{e['detail'] or ''}:{e['at']:.3f}")
        add(entry, "updated", utc(e["at"]))
        add(entry, "link", rel="alternate", href=f"{base}/jobs/{e['job_id']}")
        add(entry, "summary", summary)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _lookup(tx, account_id: int, token: str):
    """The account and its job events, if ``token`` is its feed token."""
    try:
        account = sql_accounts.account_by_id(tx, account_id)
    except NotFound:
        account = None
    # one answer for a wrong token and a missing account: the URL must not reveal account ids
    if account is None or not credentials.same(feed_token(account), token):
        raise NotFound("There is no feed at this address. Copy it again from your jobs page.")
    return account, sql_web.job_events(tx, account_id)


class FeedPages(Pages):
    """The private Atom feed of a member's jobs."""

    async def feed(self, request, account_id, token):
        account, events = await self.web.db.run(_lookup, account_id, token[:64])
        request.setHeader(b"Content-Type", b"application/atom+xml; charset=utf-8")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return atom(self.web.base_url(request), account, events, self.web.clock.seconds())
