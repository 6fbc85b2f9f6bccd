"""``twistd market``: options and the MultiService (dispatcher, RPC site, web site)."""

from __future__ import annotations

from twisted.application import service, strports
from twisted.python import usage

from market.store.dburl import default_url


def _positive(kind):
    def convert(value):
        try:
            v = kind(value)
        except ValueError:
            raise usage.UsageError(f"{value!r} is not a number") from None
        if v <= 0:
            raise usage.UsageError(f"{value!r} must be more than 0")
        return v

    return convert


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "The Community Market Dispatcher. With no options it serves XML-RPC on tcp:7080 over embedded SQLite."
    optParameters = [
        [
            "db",
            None,
            None,
            "database URL: sqlite:PATH or mysql://user:pw@host:port/db"
            " (default $MARKET_DB or sqlite:var/market.sqlite)",
        ],
        ["rpc", None, "tcp:7080", "XML-RPC endpoint (Twisted endpoint string); served at /RPC2"],
        ["web", None, None, "web site endpoint, e.g. tcp:8080 (off unless given)"],
        ["window", None, 2.0, "pooling window in seconds", _positive(float)],
        ["threshold", None, 16, "close the window early at this many waiting requests", _positive(int)],
        ["probe-interval", None, 1800.0, "seconds between speed tests of a client", _positive(float)],
        ["max-slice", None, 300.0, "longest slice a worker may negotiate, seconds", _positive(float)],
        ["min-slice", None, 1.0, "shortest slice, seconds", _positive(float)],
        ["grace", None, 10.0, "seconds added to a slice for the check-in upload", _positive(float)],
        ["test-job-size", None, 60, "test job size n (n**3 operations)", _positive(int)],
        [
            "smtp",
            None,
            None,
            "SMTP relay HOST:PORT for confirmation e-mails (default: write them to the outbox folder)",
        ],
        ["outbox", None, "var/outbox", "folder for e-mails when no --smtp is given"],
        ["public-url", None, None, "the web site's public base URL for links in e-mails"],
    ]

    def postOptions(self):
        if self["min-slice"] > self["max-slice"]:
            raise usage.UsageError("--min-slice is larger than --max-slice")


def makeService(options) -> service.MultiService:
    from market.core.errors import MarketError
    from market.dispatch.service import Dispatcher, Settings
    from market.rpc.methods import factory
    from market.store import open_database

    try:
        db = open_database(options["db"] or default_url())
    except MarketError as e:
        raise SystemExit(f"market: {e}") from None
    settings = Settings(
        window=options["window"],
        threshold=options["threshold"],
        probe_interval=options["probe-interval"],
        max_slice=options["max-slice"],
        min_slice=options["min-slice"],
        grace=options["grace"],
        test_job_size=options["test-job-size"],
    )
    top = service.MultiService()
    dispatcher = Dispatcher(db, settings)
    dispatcher.setServiceParent(top)
    strports.service(options["rpc"], factory(dispatcher)).setServiceParent(top)
    if options["web"]:
        from market.web import make_site

        strports.service(options["web"], make_site(db, dispatcher, options)).setServiceParent(top)
    return top
