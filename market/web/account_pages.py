"""Account pages (spec 5a, 5b, 5e): home, sign up, confirm, log in, log out, change password,
password reset by e-mail and "resend the confirmation".

No page tells a visitor whether an account exists: log-in failures all say the same thing and cost
the same argon2 work, and sign-up answers identically whether or not the name was free (a taken
name gets a notice mailed to its owner, not to the visitor).
"""

from __future__ import annotations

import functools

from twisted.logger import Logger

from market import accounts
from market.accounts import credentials
from market.core import caps, money
from market.core.errors import Conflict, MarketError, NotFound
from market.core.text import printable
from market.store import accounts as sql_accounts
from market.store import caps as sql_caps
from market.store import notices as sql_notices
from market.store import tokens as sql_tokens
from market.store import web as sql_web
from market.web.context import Pages, address, field
from market.web.throttle import Busy

log = Logger()

_dummy_hash: list[str] = []  # the stand-in hash, made on first need


def _verify(password_hash: str, password: str) -> bool:
    """argon2 verify; for a missing account verify against a stand-in hash so both take as long."""
    if not password_hash:
        if not _dummy_hash:
            _dummy_hash.append(credentials.hash_password("not anybody's password"))
        credentials.verify_password(_dummy_hash[0], password)
        return False
    return credentials.verify_password(password_hash, password)


def _lookup(tx, name: str):
    try:
        return sql_accounts.account_by_name(tx, name)
    except NotFound:
        return None


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60) + 1
    return f"{minutes} minute{'s' * (minutes > 1)}"


class AccountPages(Pages):
    """Home, sign up, confirm, log in, log out, change password."""

    async def home(self, request, visitor):
        if not visitor.member:
            return self.web.render(request, "login.html", visitor, name="", error=None)
        balance = await self.web.db.run(sql_accounts.balance, visitor.account_id)
        return self.web.render(request, "home.html", visitor, balance=balance)

    async def login_form(self, request, visitor):
        if visitor.member:
            return self.web.redirect(request, "/")
        return self.web.render(request, "login.html", visitor, name="", error=None)

    async def login(self, request, visitor):
        name = field(request, "name", limit=64).strip().lower()
        password = field(request, "password", limit=1024)
        where = address(request)
        # counted now, before the hash: guesses sent in parallel are counted as they arrive, and
        # only as many as the limit get as far as a hash; a right password gives its back
        wait = self.web.throttle.attempt(name, where)
        if wait > 0:
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            return self.web.render(
                request,
                "login.html",
                visitor,
                429,
                name=name,
                error=f"Too many failed log-ins. Try again in {_minutes(wait)}.",
            )
        account = await self.web.db.run(_lookup, name)
        try:
            good = await self.web.hashing.run(_verify, account["password_hash"] if account else "", password)
        except Busy:
            self.web.throttle.refund(name, where)  # nothing was tried: give the attempt back
            return self.web.busy(request, visitor)
        if not good:
            return self.web.render(
                request, "login.html", visitor, 401, name=name, error="Wrong account name or password."
            )
        self.web.throttle.succeeded(name, where)
        if account["disabled_at"] is not None:
            return self.web.render(
                request,
                "login.html",
                visitor,
                403,
                name=name,
                error="This account is disabled by the market's operator: write to them to know why.",
            )
        if not account["confirmed"]:
            return self.web.render(
                request,
                "login.html",
                visitor,
                403,
                name=name,
                error="This account is not confirmed yet: follow the link in the e-mail we sent when you signed up"
                " (lost it? ask for a new one below).",
            )
        await self.web.sessions.start(request, account["id"])
        return self.web.redirect(request, "/")

    async def logout(self, request, visitor):
        await self.web.sessions.end(request, visitor)
        return self.web.redirect(request, "/login")

    async def signup_form(self, request, visitor):
        return self.web.render(request, "signup.html", visitor, name="", email="", errors={})

    async def signup(self, request, visitor):
        name = field(request, "name", limit=64).strip().lower()
        email = field(request, "email", limit=255).strip()
        password = field(request, "password", limit=2048)
        errors = {}
        for key, check in (
            ("name", lambda: sql_accounts.check_name(name)),
            ("email", lambda: sql_accounts.check_email(email)),
            ("password", lambda: credentials.check_password_strength(password)),
        ):
            try:
                check()
            except MarketError as e:
                errors[key] = str(e)
        if password and password != field(request, "again", limit=2048) and "password" not in errors:
            errors["again"] = "The two passwords differ."
        if errors:
            return self.web.render(request, "signup.html", visitor, 400, name=name, email=email, errors=errors)
        # counted per address and per mailbox before anything is hashed, stored or mailed
        where = address(request)
        wait = self.web.signups.attempt(where, email)
        if wait > 0:
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            return self.web.render(
                request,
                "signup.html",
                visitor,
                429,
                name=name,
                email=email,
                errors={"email": f"Too many sign-ups from here or for this address. Try again in {_minutes(wait)}."},
            )
        base = self.web.base_url(request)
        try:
            now = self.web.clock.seconds()
            new = await self.web.hashing.run(
                functools.partial(accounts.create_account, self.web.db, name, email, password, now=now)
            )
        except Busy:
            self.web.signups.refund(where, email)
            return self.web.busy(request, visitor)
        except Conflict:
            owner = await self.web.db.run(_lookup, name)
            if owner is not None:
                self.web.mailer.send(
                    owner["email"],
                    "Someone asked for your account name",
                    f"Someone asked the Market Dispatcher for a new account named {printable(name)!r}\n"
                    f"with the address {printable(email)}. That name is yours, so nothing was changed.\n"
                    "If it was you, log in with your password instead.\n",
                )
        else:
            self.web.mailer.send(
                email,
                "Confirm your Market Dispatcher account",
                f"Hello {printable(name)},\n\nto confirm your new account, open this link:\n\n"
                f"{base}/confirm/{new.confirm_token}\n\n"
                "If you did not ask for an account, ignore this message.\n",
            )
        return self.web.render(request, "signup_sent.html", visitor, email=email)

    async def confirm(self, request, visitor, token):
        try:
            account = await self.web.db.run(
                sql_accounts.confirm_account, credentials.token_hash(token[:128]), self.web.clock.seconds()
            )
        except NotFound as e:
            return self.web.refusal(request, 404, str(e), visitor)
        accounts.credentials_changed()  # its API token, if the operator gave one, may submit now
        return self.web.render(request, "confirmed.html", visitor, name=account["name"])

    async def password_form(self, request, visitor):
        return self.web.render(request, "password.html", visitor, errors={}, done=False)

    async def change_password(self, request, visitor):
        current = field(request, "current", limit=2048)
        new = field(request, "new", limit=2048)
        errors = {}
        try:
            credentials.check_password_strength(new)
        except MarketError as e:
            errors["new"] = str(e)
        if new != field(request, "again", limit=2048):
            errors["again"] = "The two new passwords differ."
        account = await self.web.db.run(sql_accounts.account_by_id, visitor.account_id)
        try:
            if not await self.web.hashing.run(_verify, account["password_hash"], current):
                errors["current"] = "That is not your current password."
            if errors:
                return self.web.render(request, "password.html", visitor, 400, errors=errors, done=False)
            new_hash = await self.web.hashing.run(credentials.hash_password, new)
        except Busy:
            return self.web.busy(request, visitor)
        await self.web.db.run(sql_accounts.set_password_hash, visitor.account_id, new_hash)
        # whoever else was logged in with the old password is logged out
        await self.web.db.run(sql_web.end_other_sessions, visitor.account_id, visitor.token_hash)
        return self.web.render(request, "password.html", visitor, errors={}, done=True)

    # -- the account page: settings a member chooses (issue 19: the spending cap) ---------------
    async def account(self, request, visitor):
        return await self._account_page(request, visitor)

    async def set_cap(self, request, visitor):
        text = field(request, "cap", limit=64)
        try:
            cap = caps.parse_cap(text)
        except MarketError as e:
            return await self._account_page(request, visitor, 400, errors={"cap": str(e)}, typed=text)
        await self.web.db.run(sql_caps.set_account_cap, visitor.account_id, cap, self.web.clock.seconds())
        return await self._account_page(request, visitor, done="cap")

    async def set_notify(self, request, visitor):
        on = field(request, "notify", limit=8) == "on"
        await self.web.db.run(sql_notices.set_notify, visitor.account_id, on)
        return await self._account_page(request, visitor, done="notify")

    async def _account_page(self, request, visitor, code: int = 200, errors=None, typed=None, done=None):
        cap = await self.web.db.run(sql_caps.account_cap, visitor.account_id)
        notify = await self.web.db.run(sql_notices.notify_of, visitor.account_id)
        value = typed if typed is not None else ("" if cap is None else money.format_cents(cap.limit))
        return self.web.render(
            request,
            "account.html",
            visitor,
            code,
            cap=cap,
            left=None if cap is None else caps.left(cap),
            value=value,
            errors=errors or {},
            done=done,
            notify=notify,
        )

    # -- e-mailed links: password reset and a new confirmation ---------------------------------
    # Both forms take an e-mail address and answer the same page whether or not an account has
    # it; both count against the sign-up limit (per address and per mailbox) before any lookup.

    async def _mail_request(self, request, visitor, kind: str):
        email = field(request, "email", limit=255).strip()
        try:
            sql_accounts.check_email(email)
        except MarketError as e:
            return self.web.render(request, "mail_request.html", visitor, 400, kind=kind, email=email, error=str(e))
        where = address(request)
        wait = self.web.signups.attempt(where, email)
        if wait > 0:
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            error = f"Too many requests from here or for this address. Try again in {_minutes(wait)}."
            return self.web.render(request, "mail_request.html", visitor, 429, kind=kind, email=email, error=error)
        base = self.web.base_url(request)
        now = self.web.clock.seconds()
        for account in await self.web.db.run(sql_accounts.accounts_by_email, email):
            if account["disabled_at"] is not None:
                continue
            token, token_hash = credentials.new_token()
            name = printable(account["name"])
            if kind == "reset" and account["confirmed"]:
                await self.web.db.run(sql_tokens.create_reset, account["id"], token_hash, now)
                self.web.mailer.send(
                    email,
                    "Reset your Market Dispatcher password",
                    f"Hello {name},\n\nto choose a new password for the account {name!r}, open this link"
                    f" within {int(sql_tokens.RESET_SECONDS // 60)} minutes:\n\n{base}/reset/{token}\n\n"
                    "It works once. If you did not ask for it, ignore this message: your password stays.\n",
                )
            elif kind == "resend" and not account["confirmed"]:
                if await self.web.db.run(sql_accounts.set_confirm_token_hash, account["id"], token_hash):
                    self.web.mailer.send(
                        email,
                        "Confirm your Market Dispatcher account",
                        f"Hello {name},\n\nto confirm your new account, open this link:\n\n"
                        f"{base}/confirm/{token}\n\n"
                        "(Earlier confirmation links no longer work.) If you did not ask for an account,"
                        " ignore this message.\n",
                    )
        return self.web.render(request, "mail_sent.html", visitor, kind=kind, email=email)

    async def reset_request_form(self, request, visitor):
        return self.web.render(request, "mail_request.html", visitor, kind="reset", email="", error=None)

    async def reset_request(self, request, visitor):
        return await self._mail_request(request, visitor, "reset")

    async def resend_form(self, request, visitor):
        return self.web.render(request, "mail_request.html", visitor, kind="resend", email="", error=None)

    async def resend(self, request, visitor):
        return await self._mail_request(request, visitor, "resend")

    async def reset_form(self, request, visitor, token):
        found = await self.web.db.run(
            sql_tokens.reset_account, credentials.token_hash(token[:128]), self.web.clock.seconds()
        )
        if found is None:
            return self.web.refusal(request, 404, _BAD_RESET, visitor)
        return self.web.render(request, "reset.html", visitor, token=token, errors={})

    async def reset(self, request, visitor, token):
        new = field(request, "new", limit=2048)
        errors = {}
        try:
            credentials.check_password_strength(new)
        except MarketError as e:
            errors["new"] = str(e)
        if new != field(request, "again", limit=2048) and "new" not in errors:
            errors["again"] = "The two new passwords differ."
        if errors:
            return self.web.render(request, "reset.html", visitor, 400, token=token, errors=errors)
        digest = credentials.token_hash(token[:128])
        if await self.web.db.run(sql_tokens.reset_account, digest, self.web.clock.seconds()) is None:
            return self.web.refusal(request, 404, _BAD_RESET, visitor)
        try:
            new_hash = await self.web.hashing.run(credentials.hash_password, new)
        except Busy:
            return self.web.busy(request, visitor)
        try:
            # single use: the link is spent in the transaction that sets the password
            await self.web.db.run(sql_tokens.use_reset, digest, self.web.clock.seconds(), new_hash)
        except NotFound as e:
            return self.web.refusal(request, 404, str(e), visitor)
        return self.web.render(request, "reset_done.html", visitor)


_BAD_RESET = "that password-reset link is not valid (used, expired or mistyped) — ask for a new one at /reset"
