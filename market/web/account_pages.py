"""Account pages (spec 5a, 5b, 5e): home, sign up, confirm, log in, log out, change password.

No page tells a visitor whether an account exists: log-in failures all say the same thing and cost
the same argon2 work, and sign-up answers identically whether or not the name was free (a taken
name gets a notice mailed to its owner, not to the visitor).
"""

from __future__ import annotations

from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from market import accounts
from market.accounts import credentials
from market.core.errors import Conflict, MarketError, NotFound
from market.store import accounts as sql_accounts
from market.store import web as sql_web
from market.web.context import Pages, address, field

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
        wait = self.web.throttle.wait(name, where)
        if wait > 0:
            minutes = int(wait // 60) + 1
            return self.web.render(
                request,
                "login.html",
                visitor,
                429,
                name=name,
                error=f"Too many failed log-ins. Try again in {minutes} minute{'s' * (minutes > 1)}.",
            )
        account = await self.web.db.run(_lookup, name)
        good = await deferToThread(_verify, account["password_hash"] if account else "", password)
        if not good:
            self.web.throttle.failed(name, where)
            return self.web.render(
                request, "login.html", visitor, 401, name=name, error="Wrong account name or password."
            )
        self.web.throttle.succeeded(name)
        if not account["confirmed"]:
            return self.web.render(
                request,
                "login.html",
                visitor,
                403,
                name=name,
                error="This account is not confirmed yet: follow the link in the e-mail we sent when you signed up.",
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
        base = self.web.base_url(request)
        try:
            new = await deferToThread(
                accounts.create_account, self.web.db, name, email, password, now=self.web.clock.seconds()
            )
        except Conflict:
            owner = await self.web.db.run(_lookup, name)
            if owner is not None:
                self.web.mailer.send(
                    owner["email"],
                    "Someone asked for your account name",
                    f"Someone asked the Market Dispatcher for a new account named {name!r}\n"
                    f"with the address {email}. That name is yours, so nothing was changed.\n"
                    "If it was you, log in with your password instead.\n",
                )
        else:
            self.web.mailer.send(
                email,
                "Confirm your Market Dispatcher account",
                f"Hello {name},\n\nto confirm your new account, open this link:\n\n"
                f"{base}/confirm/{new.confirm_token}\n\n"
                "If you did not ask for an account, ignore this message.\n",
            )
        return self.web.render(request, "signup_sent.html", visitor, email=email)

    async def confirm(self, request, visitor, token):
        try:
            account = await self.web.db.run(sql_accounts.confirm_account, credentials.token_hash(token[:128]))
        except NotFound as e:
            return self.web.refusal(request, 404, str(e), visitor)
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
        if not await deferToThread(_verify, account["password_hash"], current):
            errors["current"] = "That is not your current password."
        if errors:
            return self.web.render(request, "password.html", visitor, 400, errors=errors, done=False)
        new_hash = await deferToThread(credentials.hash_password, new)
        await self.web.db.run(sql_accounts.set_password_hash, visitor.account_id, new_hash)
        # whoever else was logged in with the old password is logged out
        await self.web.db.run(sql_web.end_other_sessions, visitor.account_id, visitor.token_hash)
        return self.web.render(request, "password.html", visitor, errors={}, done=True)
