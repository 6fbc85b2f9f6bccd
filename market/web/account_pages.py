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
from market.web.context import Web, address, field

log = Logger()

_dummy_hash = []


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


def install(app, web: Web) -> None:
    """Add the account routes to the Klein ``app``."""

    @app.route("/", methods=["GET"])
    @web.page_for()
    async def home(request, visitor):
        if not visitor.member:
            return web.render(request, "login.html", visitor, name="", error=None)
        balance = await web.db.run(sql_accounts.balance, visitor.account_id)
        return web.render(request, "home.html", visitor, balance=balance)

    @app.route("/login", methods=["GET"])
    @web.page_for()
    async def login_form(request, visitor):
        if visitor.member:
            return web.redirect(request, "/")
        return web.render(request, "login.html", visitor, name="", error=None)

    @app.route("/login", methods=["POST"])
    @web.page_for(posted=True)
    async def login(request, visitor):
        name = field(request, "name", limit=64).strip().lower()
        password = field(request, "password", limit=1024)
        where = address(request)
        wait = web.throttle.wait(name, where)
        if wait > 0:
            minutes = int(wait // 60) + 1
            return web.render(
                request,
                "login.html",
                visitor,
                429,
                name=name,
                error=f"Too many failed log-ins. Try again in {minutes} minute{'s' * (minutes > 1)}.",
            )
        account = await web.db.run(_lookup, name)
        good = await deferToThread(_verify, account["password_hash"] if account else "", password)
        if not good:
            web.throttle.failed(name, where)
            return web.render(request, "login.html", visitor, 401, name=name, error="Wrong account name or password.")
        web.throttle.succeeded(name)
        if not account["confirmed"]:
            return web.render(
                request,
                "login.html",
                visitor,
                403,
                name=name,
                error="This account is not confirmed yet: follow the link in the e-mail we sent when you signed up.",
            )
        await web.sessions.start(request, account["id"])
        return web.redirect(request, "/")

    @app.route("/logout", methods=["POST"])
    @web.page_for(posted=True)
    async def logout(request, visitor):
        await web.sessions.end(request, visitor)
        return web.redirect(request, "/login")

    @app.route("/signup", methods=["GET"])
    @web.page_for()
    async def signup_form(request, visitor):
        return web.render(request, "signup.html", visitor, name="", email="", errors={})

    @app.route("/signup", methods=["POST"])
    @web.page_for(posted=True)
    async def signup(request, visitor):
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
            return web.render(request, "signup.html", visitor, 400, name=name, email=email, errors=errors)
        base = web.base_url(request)
        try:
            new = await deferToThread(accounts.create_account, web.db, name, email, password, now=web.clock.seconds())
        except Conflict:
            owner = await web.db.run(_lookup, name)
            if owner is not None:
                web.mailer.send(
                    owner["email"],
                    "Someone asked for your account name",
                    f"Someone asked the Market Dispatcher for a new account named {name!r}\n"
                    f"with the address {email}. That name is yours, so nothing was changed.\n"
                    "If it was you, log in with your password instead.\n",
                )
        else:
            web.mailer.send(
                email,
                "Confirm your Market Dispatcher account",
                f"Hello {name},\n\nto confirm your new account, open this link:\n\n"
                f"{base}/confirm/{new.confirm_token}\n\n"
                "If you did not ask for an account, ignore this message.\n",
            )
        return web.render(request, "signup_sent.html", visitor, email=email)

    @app.route("/confirm/<token>", methods=["GET"])
    @web.page_for()
    async def confirm(request, visitor, token):
        try:
            account = await web.db.run(sql_accounts.confirm_account, credentials.token_hash(token[:128]))
        except NotFound as e:
            return web.refusal(request, 404, str(e), visitor)
        return web.render(request, "confirmed.html", visitor, name=account["name"])

    @app.route("/password", methods=["GET"])
    @web.members()
    async def password_form(request, visitor):
        return web.render(request, "password.html", visitor, errors={}, done=False)

    @app.route("/password", methods=["POST"])
    @web.members(posted=True)
    async def change_password(request, visitor):
        current = field(request, "current", limit=2048)
        new = field(request, "new", limit=2048)
        errors = {}
        try:
            credentials.check_password_strength(new)
        except MarketError as e:
            errors["new"] = str(e)
        if new != field(request, "again", limit=2048):
            errors["again"] = "The two new passwords differ."
        account = await web.db.run(sql_accounts.account_by_id, visitor.account_id)
        if not await deferToThread(_verify, account["password_hash"], current):
            errors["current"] = "That is not your current password."
        if errors:
            return web.render(request, "password.html", visitor, 400, errors=errors, done=False)
        new_hash = await deferToThread(credentials.hash_password, new)
        await web.db.run(sql_accounts.set_password_hash, visitor.account_id, new_hash)
        # whoever else was logged in with the old password is logged out
        await web.db.run(sql_web.end_other_sessions, visitor.account_id, visitor.token_hash)
        return web.render(request, "password.html", visitor, errors={}, done=True)
