"""The one error table (market.core.errors.KINDS): every refusal has a row, every published Fault
code is in it, and XML-RPC, the web site and the CLI give each kind the same meaning."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import pytest_twisted

import market
from market.core import errors
from market.core.errors import KINDS, MarketError

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _all_error_classes() -> set[type]:
    for info in pkgutil.walk_packages(market.__path__, "market."):
        if info.name.endswith("__main__") or ".sandbox.inner" in info.name:
            continue
        importlib.import_module(info.name)
    found, todo = set(), [MarketError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_market_error_class_has_a_row():
    classes = _all_error_classes()
    assert len(classes) > len(KINDS)  # the walk found the subclasses outside the core too
    missing = {f"{c.__module__}.{c.__qualname__}: {c.kind!r}" for c in classes if c.kind not in KINDS}
    assert not missing, f"error kinds without a row in market.core.errors.KINDS: {sorted(missing)}"


def test_every_row_has_its_error_class_and_unique_codes():
    for kind in KINDS.values():
        assert errors.error_for(kind, "m").kind == kind.name
    assert len({k.fault for k in KINDS.values()}) == len(KINDS)
    assert len({k.fault_name for k in KINDS.values()}) == len(KINDS)


def test_every_fault_code_in_the_docs_is_in_the_table_with_its_name():
    text = (DOCS / "rpc.md").read_text()
    table = text.split("## Faults", 1)[1]
    documented = {int(code): name for code, name in re.findall(r"^\| (\d+) \| (\w+) \|", table, re.M)}
    assert documented, "docs/rpc.md lost its Fault table"
    by_code = {k.fault: k.fault_name for k in KINDS.values()}
    assert {code: by_code.get(code) for code in documented} == documented
    undocumented = set(by_code) - set(documented)
    assert all(f"Fault {code}" in text for code in undocumented), undocumented


def test_rpc_faults_are_read_off_the_table():
    from market.rpc import faults

    for kind in KINDS.values():
        assert getattr(faults, kind.fault_name) == kind.fault
        error = errors.error_for(kind, "words")
        fault = faults.fault_for(error)
        assert (fault.faultCode, fault.faultString) == (kind.fault, "words")
        assert faults.error_from(fault).kind == kind.name  # a client reads the same kind back
    assert faults.fault_for(RuntimeError("a bug")).faultCode == KINDS["internal"].fault


def test_the_web_status_of_each_kind_is_the_tables():
    from market.web.site import STATUS

    assert STATUS == {name: kind.http for name, kind in KINDS.items()}


@pytest.mark.parametrize("name", list(KINDS))
def test_the_cli_exit_code_of_each_kind_is_the_tables(name, monkeypatch, capsys):
    from market import cli

    def refuse(args):
        raise errors.error_for(KINDS[name], f"refused as {name}")

    monkeypatch.setattr(cli, "cmd_account_list", refuse)
    assert cli.main(["--db", "sqlite::memory:", "account", "list"]) == KINDS[name].exit
    assert capsys.readouterr().err == f"market: refused as {name}\n"


def test_exit_codes_say_bad_input_or_refused():
    bad_input = {name for name, kind in KINDS.items() if kind.exit == errors.EXIT_BAD_INPUT}
    assert bad_input == {"invalid", "refused", "too-large", "price-too-high"}
    assert {kind.exit for kind in KINDS.values()} == {errors.EXIT_BAD_INPUT, errors.EXIT_REFUSED}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", [n for n in KINDS if n != "internal"])
async def test_a_refusal_on_the_web_site_gets_its_kinds_status(name, tmp_path, monkeypatch):
    from market.store import accounts as sql
    from tests.test_web_support import sqlite_db, start_site

    db = sqlite_db(tmp_path)
    site, port = await start_site(db, tmp_path)
    try:
        b = await site.member("mona")

        def refuse(tx, account_id, limit=100):
            raise errors.error_for(KINDS[name], f"refused as {name}")

        monkeypatch.setattr(sql, "history", refuse)
        page = await b.get("/ledger")
        assert page.code == KINDS[name].http and f"refused as {name}" in page.text
    finally:
        await port.stopListening()
        db.close()


def test_the_operators_table_of_kinds_is_the_table():
    text = (DOCS / "operations.md").read_text().split("## Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| (\d+) (\w+) \| (\d+) \| (\d+) \|$", text, re.M)
    assert {(m.strip(), int(f), n, int(h), int(x)) for m, f, n, h, x in rows} == {
        (k.meaning, k.fault, k.fault_name, k.http, k.exit) for k in KINDS.values()
    }
