"""``twistd market``: options and the MultiService (helper pool, dispatcher, RPC site, web site).

Every option is a key of ``market.settings`` with the same name; ``--config FILE`` reads them from a
TOML file, and an option given on the command line wins over the file.
"""

from __future__ import annotations

import functools
import os

from twisted.application import service, strports
from twisted.python import usage

from market import settings as market_settings

# (option, section) for every setting: the top-level db, then each section's keys
_OPTIONS = [(market_settings.key_of(f), None, f) for f in market_settings.fields_of(market_settings.Settings)] + [
    (market_settings.key_of(f), section, f)
    for section, cls in market_settings.SECTIONS.items()
    for f in market_settings.fields_of(cls)
]


def _coerce(option: str, f):
    def convert(value):
        try:
            return market_settings.convert(f, value)
        except ValueError as e:
            raise usage.UsageError(f"--{option}: {e}") from None

    return convert


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "The Community Market Dispatcher. With no options it serves XML-RPC on tcp:7080 over embedded SQLite."
        " Every option can also be set in a TOML file given with --config (docs/operations.md)."
    )
    # no option has a default here: "not given" must be told apart from the default, so that the
    # config file can set what the command line does not; the defaults live in market.settings
    optParameters = [
        ["config", None, None, "a TOML settings file (keys as these options; see docs/operations.md)"],
        *([option, None, None, market_settings.described(f), _coerce(option, f)] for option, _, f in _OPTIONS),
    ]

    def postOptions(self):
        try:
            loaded = market_settings.load(self["config"]) if self["config"] else market_settings.Settings()
            sections: dict[str | None, dict] = {}
            for option, section, f in _OPTIONS:
                if self[option] is not None:
                    sections.setdefault(section, {})[f.name] = self[option]
            for section, values in sections.items():
                loaded = loaded.replace(section, **values)
        except market_settings.SettingsError as e:
            raise usage.UsageError(str(e)) from None
        self.settings = loaded


def _warn_retired_environment(log) -> None:
    for name, instead in market_settings.RETIRED_ENVIRONMENT.items():
        if name in os.environ:
            log.warn("${name} is no longer read; {instead}", name=name, instead=instead)


def makeService(options) -> service.MultiService:
    from twisted.logger import Logger

    from market import accounts
    from market.core.errors import MarketError
    from market.dispatch.service import Dispatcher
    from market.offload.pool import HelperPool
    from market.rpc.methods import factory
    from market.store import open_database
    from market.store.dburl import default_url

    settings: market_settings.Settings = options.settings
    _warn_retired_environment(Logger())
    try:
        db = open_database(settings.db or default_url())
    except MarketError as e:
        raise SystemExit(f"market: {e}") from None
    accounts.configure(settings.accounts)
    top = service.MultiService()
    # the helper processes first: a MultiService starts its children in order and stops them in
    # reverse, so the pool is up before anything can call it and goes after everything that does
    offload = HelperPool(settings.offload)
    offload.setServiceParent(top)
    dispatcher = Dispatcher(db, settings.dispatch, offload=offload)
    dispatcher.setServiceParent(top)
    _frontend(db, dispatcher, settings.server.rpc).setServiceParent(top)
    server = settings.server
    connections = _within_descriptors(settings.connections, 2 if server.web else 1, Logger())
    # bodies too large to parse on the reactor are parsed in the helper processes (bounded in time,
    # memory and number), not in threads that would hold the GIL against the reactor
    parse_large = functools.partial(offload.call, "market.rpc.codec:parse_call")
    strports.service(server.rpc, factory(dispatcher, connections, parse_large)).setServiceParent(top)
    if server.web:
        from market.edge.web import guard
        from market.web import make_site

        # make_site takes the option names of twistd market
        names = {
            "smtp": server.smtp,
            "outbox": server.outbox,
            "public-url": server.public_url,
            "rpc": server.rpc,
            "web-settings": settings.web,
        }
        site = guard(make_site(db, dispatcher, names), connections, dispatcher.clock)
        strports.service(server.web, site).setServiceParent(top)
    return top


def _frontend(db, dispatcher, rpc: str):
    """This process as one front end of the database (``market.dispatch.frontends``), registered
    before it serves: on SQLite a second live front end is refused here, with what to do."""
    from market.core.errors import MarketError
    from market.dispatch.frontends import Coordinator, new_frontend

    coordinator = Coordinator(db, dispatcher, new_frontend(rpc), single=db.url.kind == "sqlite")
    try:
        coordinator.register()
    except MarketError as e:
        raise SystemExit(f"market: {e}") from None
    return coordinator


def _within_descriptors(connections: market_settings.ConnectionSettings, ports: int, log):
    """The [connections] settings, with max-connections lowered if the process cannot open that
    many files (after raising its soft limit as far as the hard one allows)."""
    import dataclasses

    from market.edge.gate import descriptors_for

    fits = descriptors_for(connections.max_connections * ports) // ports
    if fits >= connections.max_connections:
        return connections
    fits = max(fits, 1)
    log.warn(
        "max-connections {wanted} per port needs more open files than this process may have;"
        " using {fits} (raise the open-files limit: ulimit -n, or LimitNOFILE= in systemd)",
        wanted=connections.max_connections,
        fits=fits,
    )
    per_address = min(connections.max_per_address, fits)
    return dataclasses.replace(connections, max_connections=fits, max_per_address=per_address)
