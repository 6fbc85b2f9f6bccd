"""Price sanity: what a price buys against the current market (the quote rule), unusual prices
confirmed, prices above the market's ceiling refused — in the pure rule, over XML-RPC against a
real ``twistd market``, through ``market submit`` and the web form."""

from __future__ import annotations

import subprocess
import sys
import xmlrpc.client

import pytest
import pytest_twisted

from market.core import prices
from market.core.errors import PriceTooHigh
from tests.test_web_support import MODULE, market, upload  # noqa: F401  (fixture)


def test_a_price_ranks_behind_every_competing_job_that_pays_as_much():
    competing = {500: 2, 300: 1, 100: 4}
    assert prices.price_view(501, competing).rank == 1
    assert prices.price_view(500, competing).rank == 3  # a new job loses ties
    assert prices.price_view(50, competing).rank == 8
    assert prices.price_view(501, competing).top_price == 501
    assert prices.price_view(1, {}).top_price == 1


def test_a_price_far_above_what_wins_the_fastest_client_is_unusual():
    assert prices.price_view(100_000_000, {520: 3}).unusual  # 1,000,000 per second
    assert not prices.price_view(5_000, {520: 3}).unusual  # 50.00: ten times 5.21 is 52.10
    assert not prices.price_view(10_000, {}).unusual  # up to the floor, whatever the market
    assert prices.price_view(10_001, {}).unusual
    words = prices.price_view(100_000_000, {520: 3}).words
    assert "1000000.00" in words and "5.21 wins the fastest" in words and "confirm" in words


def test_the_ceiling_refuses_above_it_and_none_means_no_ceiling():
    prices.check_ceiling(10**9, None)
    prices.check_ceiling(100, 100)
    with pytest.raises(PriceTooHigh, match="above this market's ceiling of 1.00"):
        prices.check_ceiling(101, 100)


def test_over_rpc_price_check_answers_and_the_ceiling_is_fault_11(db, db_url, tmp_path):
    from market.rpc.client import blocking
    from tests import marketdata as md
    from tests.servers import Market, env

    owner, token = md.account(db, "owner")
    md.job(db, owner, 520)
    server = Market(db_url, str(tmp_path), "--max-price", "5000.00").start()
    try:
        rpc = blocking(server.url, "account/owner", token)
        view = rpc.price_check("1000.00")
        assert (view["rank"], view["competing"], view["top_price"], view["unusual"]) == (1, 1, "5.21", True)
        assert rpc.price_check("5.21")["unusual"] is False
        with pytest.raises(xmlrpc.client.Fault) as e:
            rpc.job(owner, MODULE, "1000000.00", "absurd", "main")
        assert e.value.faultCode == 11 and "ceiling of 5000.00" in e.value.faultString
        with pytest.raises(xmlrpc.client.Fault) as e:
            rpc.price(md.job(db, owner, 100), "5000.01")
        assert e.value.faultCode == 11

        module = tmp_path / "job.py"
        module.write_text(MODULE)
        e_ = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="owner", MARKET_TOKEN=token)

        def submit(*extra):
            argv = [sys.executable, "-m", "market", "submit", str(module), "main", "--name", "n", "--arg", "5"]
            return subprocess.run([*argv, *extra], capture_output=True, text=True, env=e_, timeout=60)

        before = db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs"))
        r = submit("--price", "1000.00")
        assert r.returncode == 2 and "--yes" in r.stderr and "5.21 wins the fastest" in r.stderr, r.stderr
        assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == before  # nothing submitted
        r = submit("--price", "1000.00", "--yes")
        assert r.returncode == 0 and r.stdout.strip().isdigit(), r.stderr
        r = submit("--price", "9000.00", "--yes")
        assert r.returncode == 2 and "ceiling" in r.stderr
        r = submit("--price", "1.00")
        assert r.returncode == 0 and "wins the fastest" not in r.stderr, r.stderr
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_the_web_form_asks_to_confirm_an_unusual_price_and_then_submits(market):
    b = await market.member("pat")
    fields = {"function": "main", "args": "[10]", "name": "dear", "price": "1000000.00"}
    form = await b.get("/submit")
    page = await b.post("/submit", fields, files=upload(MODULE), csrf=form.csrf())
    assert page.code == 400 and 'id="confirm-price"' in page.text
    assert "the fastest client" in page.text and "confirm" in page.text
    # the form keeps the module: tick the box and send it again
    page = await b.post("/submit", {**fields, "source": MODULE, "confirm-price": "1000000.00"}, csrf=page.csrf())
    assert page.code == 303, page.text
    # a usual price needs no confirmation
    form = await b.get("/submit")
    page = await b.post("/submit", {**fields, "price": "1.00"}, files=upload(MODULE), csrf=form.csrf())
    assert page.code == 303
