"""Strangers attacking the web site and the test-job path cannot take the market down for everyone.

Each test starts a real ``twistd market --web``, runs one attack of ``tests/hostile/attacks_web.py``
for a few seconds (``$HOSTILE_SECONDS`` for longer) while a bystander member keeps calling the
market and a watch samples its memory, and asserts: every bystander answer within 1 s and 99 %
within 250 ms, the market under 300 MB, the attack's own limit held, and afterwards the market
serves as before and its ledger audits clean.
"""

from __future__ import annotations

import contextlib

from market.store import accounts as sql_accounts
from tests.hostile import attacks_web as attacks
from tests.hostile.support import MARKET_RSS_MB, Bystander, MemoryWatch, attack_seconds

SECONDS = attack_seconds(3.0)


@contextlib.contextmanager
def web_market(tmp_path, *options: str):
    """A market with its web site, started with ``options``, stopped afterwards."""
    target = attacks.start_web_market(tmp_path, *options)
    try:
        yield target
    finally:
        target.stop()


def under_attack(target: attacks.WebTarget, attack):
    """Run ``attack()`` with a bystander and a memory watch; check both and the market afterwards."""
    with MemoryWatch(target.hostile.pid) as memory, Bystander(target.hostile) as bystander:
        figures = attack()
    print(f"{figures.summary()}\nbystander: {bystander.summary()}; market peak {memory.peak:.0f} MB")
    bystander.assert_served()
    assert memory.peak < MARKET_RSS_MB, f"the market reached {memory.peak:.0f} MB"
    target.hostile.assert_serves_and_audits_clean()
    return figures


def test_twenty_clients_flooding_the_report_get_a_file_built_at_most_every_report_seconds(tmp_path):
    with web_market(tmp_path, "--report-seconds", "2") as target:
        report_flood(target)


def report_flood(web_market):
    # a market worth reporting on: 20000 jobs and leases (~8 MB of report)
    attacks.seed_report(web_market.db, web_market.hostile.account_id, web_market.hostile.client_id, 20_000)
    flood = under_attack(web_market, lambda: attacks.report_flood(web_market, SECONDS, clients=20))
    assert not flood.errors and set(flood.statuses) == {200}, flood.summary()
    assert flood.requests >= 20
    # one build at first, then at most one every report-seconds (2 s): never one per request
    assert len(flood.generations) <= flood.seconds / 2 + 2, flood.summary()
    browser = web_market.browser()
    status, body = browser.get("/report.xml")
    assert status == 200 and body.rstrip().endswith(b"</report>")


def test_parallel_log_in_guesses_are_counted_before_hashing(tmp_path):
    with web_market(tmp_path) as target:
        login_guesses(target)


def login_guesses(web_market):
    # twenty addresses guessing one member's password at once: only the per-name limit's worth
    # of guesses is hashed (5), however many arrive together
    one_name = under_attack(
        web_market, lambda: attacks.login_guesses(web_market, SECONDS / 2, parallel=20, names=1, addresses=20)
    )
    assert one_name.hashed <= 5 < one_name.attempts, one_name.summary()
    # one address guessing forty names at once: the per-address limit's worth (20)
    many_names = under_attack(
        web_market,
        lambda: attacks.login_guesses(web_market, SECONDS / 2, parallel=40, names=40, addresses=1, first_address=50),
    )
    assert many_names.hashed <= 20 < many_names.attempts, many_names.summary()
    # a member nobody attacked still logs in, from an address nobody used
    from market import accounts

    accounts.create_account(web_market.db, "sue", "sue@example.org", "a long password", confirm=False)
    assert web_market.browser(source=attacks.visitor_address(90)).log_in("sue", "a long password") == 303


def test_a_sign_up_flood_is_rate_limited_and_mints_no_credits(tmp_path):
    with web_market(tmp_path) as target:
        signup_flood(target)


def signup_flood(web_market):
    flood = under_attack(web_market, lambda: attacks.signup_flood(web_market, SECONDS, parallel=4, addresses=4))
    # per address 5 in an hour (4 addresses); per mailbox 3 (the victim's, however it is spelt)
    assert flood.accounts_created <= 4 * 5 and flood.limited > 0, flood.summary()
    assert flood.victim_mails <= 3, flood.summary()
    assert flood.unconfirmed_credits == 0, flood.summary()
    # the starting grant is paid when the account is confirmed, once (its link opened twice)
    assert flood.confirmed_balance == 10_000, flood.summary()
    audit = web_market.db.transact(sql_accounts.audit)
    assert audit["balanced"] and audit["granted"] == 2 * 10_000  # the suite's member's and the confirmed one's


def test_an_unmeasured_clients_test_job_flood_is_capped_and_its_rows_cleaned(tmp_path):
    with web_market(tmp_path, "--reap-interval", "0.5", "--grace", "1") as target:
        probe_flood(target)


def probe_flood(web_market):
    # asking on four connections at once, keeping what it gets: one test job, the rest refused
    kept = under_attack(web_market, lambda: attacks.probe_flood(web_market, max(1.5, SECONDS / 2), fail=False))
    assert kept.test_jobs == 1 and set(kept.refusals) == {5}, kept.summary()
    worker = web_market.hostile.worker()
    for stateid in kept.kept:
        worker.fail(stateid, "crash", "gave up")
    # failing each at once to ask for the next: test-jobs-per-interval (3) in all, then refused
    flood = under_attack(web_market, lambda: attacks.probe_flood(web_market, max(1.5, SECONDS / 2), fail=True))
    assert kept.test_jobs + flood.test_jobs <= 3 and flood.refusals, flood.summary()
    assert "ask again in" in " ".join(flood.messages)
    assert flood.peak_open <= 1 and flood.peak_rows <= 3 * 3, flood.summary()
    # finished test jobs are gone once the reaper has run: no job, state or lease left
    assert flood.rows_after == {"jobs": 0, "states": 0, "leases": 0, "open": 0}, flood.summary()


def test_control_characters_in_job_names_reach_no_reader_raw(tmp_path):
    with web_market(tmp_path) as target:
        control_characters(target)


def control_characters(web_market):
    figures = under_attack(web_market, lambda: attacks.control_characters(web_market, SECONDS))
    # the form refuses such names; names from before are escaped wherever they are shown
    assert figures.form_accepted == 0 and figures.form_refused == len(attacks.HOSTILE_NAMES), figures.summary()
    assert figures.feed_reads and not figures.feed_broken, figures.summary()
    assert figures.status_runs and not figures.status_broken, figures.summary()
    assert not figures.page_broken and not figures.raw, figures.summary()
