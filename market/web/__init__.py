"""The web site (paper requirement 5, specification 5): accounts, jobs, prices, clients, report.

``twistd market --web ENDPOINT`` calls :func:`make_site`. Pages are server-rendered HTML (Klein +
autoescaped Jinja2), work without JavaScript, keep sessions in the database and check a CSRF token
on every form; see ``docs/web.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web import server


def make_site(db, dispatcher: Any | None, options: Mapping[str, Any], reactor=None) -> server.Site:
    """The web ``Site`` for the market in ``db``.

    ``options`` are ``twistd market``'s: ``smtp`` (HOST:PORT relay, else mail goes to the ``outbox``
    folder), ``outbox``, ``public-url`` (base of links in e-mails; https there turns on Secure
    cookies), ``rpc`` (the endpoint whose port goes into the worker command shown to members) and
    ``web-settings`` (the ``[web]`` section: the report's age and files, log-in and sign-up rates).
    The clock is the dispatcher's, so the site and the market agree on time; its helper pool
    (``market.offload``) checks submitted modules and writes results' text. The report files
    are removed when the reactor shuts down.
    """
    from market.web.context import Web
    from market.web.mail import Mailer
    from market.web.site import make_web_site

    if reactor is None:
        from twisted.internet import reactor
    clock = getattr(dispatcher, "clock", None) or reactor
    try:
        mailer = Mailer(options.get("smtp"), options.get("outbox") or "var/outbox", reactor=reactor)
    except ValueError as e:
        raise SystemExit(f"market: {e}") from None
    web = Web(
        db,
        clock,
        mailer,
        public_url=options.get("public-url"),
        rpc_endpoint=options.get("rpc") or "tcp:7080",
        settings=options.get("web-settings"),
        offload=getattr(dispatcher, "offload", None),
        verification=getattr(getattr(dispatcher, "settings", None), "verify_settings", None),
        max_batch=getattr(getattr(dispatcher, "settings", None), "max_batch", 10_000),
        max_argument_set=getattr(getattr(dispatcher, "settings", None), "max_argument_set", 64 * 1024),
        max_price=getattr(getattr(dispatcher, "settings", None), "max_price", None),
    )
    reactor.addSystemEventTrigger("after", "shutdown", web.reports.close)
    # e-mail on finish or failure (opt-in): a bounded loop beside the site (market.web.notify)
    from market.web.notify import Notifier

    web.notifier = Notifier(db, mailer, clock, web.public_url, interval=float(options.get("notify-interval") or 5.0))
    reactor.callWhenRunning(web.notifier.start)
    reactor.addSystemEventTrigger("before", "shutdown", web.notifier.stop)
    return make_web_site(web)
