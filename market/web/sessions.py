"""Who is asking: log-in sessions kept in the database, and the CSRF token of every form.

The session cookie holds a random token; the database keeps only its SHA-256 (a stolen copy of
the table logs no one in). Each session has its own CSRF token. Visitors who are not logged in get
a CSRF token in a cookie of its own (the log-in and sign-up forms must echo it), so nobody can
post those forms from another site either. Tokens are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from market.accounts import credentials
from market.store import accounts as sql_accounts

SESSION_COOKIE = b"market_session"
CSRF_COOKIE = b"market_csrf"
SESSION_SECONDS = 12 * 3600


@dataclass
class Visitor:
    """The person behind a request: a member (with an account id) or an anonymous visitor."""

    csrf: str
    account_id: int | None = None
    name: str | None = None
    token_hash: str | None = None

    @property
    def member(self) -> bool:
        return self.account_id is not None


class Sessions:
    """Finds, starts and ends sessions; sets cookies HttpOnly, SameSite=Lax and (under TLS) Secure."""

    def __init__(self, db, clock, secure: bool = False, lifetime: float = SESSION_SECONDS):
        self.db = db
        self.clock = clock
        self.secure = secure
        self.lifetime = lifetime

    def _secure(self, request) -> bool:
        return self.secure or request.isSecure()

    def _cookie(self, request, name: bytes, value: str, max_age: int) -> None:
        request.addCookie(
            name,
            value.encode("ascii"),
            path=b"/",
            max_age=str(max_age).encode(),
            httpOnly=True,
            sameSite=b"lax",
            secure=self._secure(request) or None,
        )

    async def visitor(self, request) -> Visitor:
        """The member whose session cookie this request carries, else an anonymous visitor."""
        token = request.getCookie(SESSION_COOKIE)
        if token:
            row = await self.db.run(
                sql_accounts.session, credentials.token_hash(token.decode("latin-1")), self.clock.seconds()
            )
            if row is not None:
                return Visitor(
                    csrf=row["csrf"], account_id=row["account_id"], name=row["name"], token_hash=row["token_hash"]
                )
        csrf = request.getCookie(CSRF_COOKIE)
        csrf = csrf.decode("latin-1") if csrf else ""
        if not csrf or len(csrf) > 64:
            csrf = secrets.token_urlsafe(32)
            self._cookie(request, CSRF_COOKIE, csrf, 24 * 3600)
        return Visitor(csrf=csrf)

    async def start(self, request, account_id: int) -> None:
        """Log in: a new session (never reuse one from before the log-in) and its cookie."""
        token, token_hash = credentials.new_token()
        now = self.clock.seconds()
        await self.db.run(
            sql_accounts.create_session, token_hash, account_id, secrets.token_urlsafe(32), now, now + self.lifetime
        )
        self._cookie(request, SESSION_COOKIE, token, int(self.lifetime))

    async def end(self, request, visitor: Visitor) -> None:
        """Log out: delete the session row and expire the cookie."""
        if visitor.token_hash:
            await self.db.run(sql_accounts.delete_session, visitor.token_hash)
        self._cookie(request, SESSION_COOKIE, "", 0)


def csrf_ok(request, visitor: Visitor) -> bool:
    """Does the posted form carry this visitor's CSRF token?"""
    sent = request.args.get(b"csrf", [b""])[0]
    try:
        sent_text = sent.decode("ascii")
    except UnicodeDecodeError:
        return False
    return bool(visitor.csrf) and credentials.same(sent_text, visitor.csrf)
