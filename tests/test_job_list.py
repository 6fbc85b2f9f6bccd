"""The jobs list that scales (issue 19, item 5): paging, sorting, filtering by state, name and
batch, search — the same query for the web's /jobs, XML-RPC ``jobs`` and ``market status`` —
checked against hostile input, on SQLite and the real MariaDB, and usable on a 375 px phone."""

from __future__ import annotations

import os
import time

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core import listing
from market.store import jobs as sql_jobs
from market.store import schema
from tests.support import need
from tests.test_web_batches import make_batch
from tests.test_web_support import finish_job, make_job, market  # noqa: F401  (fixture)

# -- the query: every value bounded, sort keys and states whitelisted -------------------------


def test_an_empty_query_is_the_first_page_newest_first():
    q, problems = listing.parse({})
    assert problems == {}
    assert (q.page, q.per, q.sort, q.descending, q.state, q.name, q.batch, q.search) == (
        1,
        listing.PER_PAGE,
        "id",
        True,
        None,
        None,
        None,
        None,
    )


def test_hostile_values_take_their_defaults_and_are_named():
    q, problems = listing.parse(
        {
            "page": "99999999999999999999999",
            "per": "100000",
            "sort": "id; DROP TABLE jobs",
            "dir": "sideways",
            "state": "finished' OR 1=1 --",
            "batch": "-3",
            "name": "x" * 500,
        }
    )
    assert set(problems) == {"page", "per", "sort", "dir", "state", "batch", "name"}
    assert (q.page, q.per, q.sort, q.state, q.batch, q.name) == (1, listing.PER_PAGE, "id", None, None, None)


def test_names_and_search_words_lose_control_characters_and_runs_of_spaces():
    q, problems = listing.parse({"name": " a\tb\n\x0b c ", "q": "\u2028boom  x"})
    assert problems == {} and q.name == "a b c" and q.search == "boom x"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["page", "per", "sort", "dir", "state", "name", "batch", "q", "x"]), st.text()))
def test_any_text_gives_a_bounded_query(params):
    q, _ = listing.parse(params)
    assert 1 <= q.page <= listing.MAX_PAGE and 1 <= q.per <= listing.MAX_PER_PAGE
    assert q.sort in listing.SORTS and (q.state is None or q.state in listing.STATES)
    assert all(t is None or len(t) <= listing.MAX_TEXT for t in (q.name, q.search))
    assert listing.parse(q.params())[0] == q  # a link to the query reads back as the query


# -- the store: pages that cover the list exactly, on SQLite and MariaDB -----------------------


def _jobs(db, n: int = 12) -> tuple[int, list[int]]:
    from market import accounts

    account = accounts.create_account(db, "lee", "lee@example.org", "correct horse", confirm=False)
    account_id = account.id
    names = ["alpha", "beta", "gamma 50%", "delta_1"]
    ids = [make_job(db, account_id, name=names[i % 4], price=100 + 7 * (i % 5)) for i in range(n)]
    return account_id, ids


def _page(db, account_id, **params) -> dict:
    q, problems = listing.parse({k: str(v) for k, v in params.items()})
    assert problems == {}, problems
    return db.transact(sql_jobs.page_of_jobs, account_id, q)


def test_pages_of_every_sort_cover_all_jobs_once(db):
    account_id, ids = _jobs(db)
    for i, job in enumerate(ids):
        db.transact(lambda tx, j=job, i=i: tx.execute("UPDATE jobs SET progress = ? WHERE id = ?", (i % 3 / 3, j)))
    for sort in listing.SORTS:
        for direction in ("asc", "desc"):
            seen = []
            for page in (1, 2, 3):
                found = _page(db, account_id, sort=sort, dir=direction, per=5, page=page)
                assert found["total"] == 12
                seen += [r["id"] for r in found["jobs"]]
            assert sorted(seen) == sorted(ids), (sort, direction)
    by_price = [r["price"] for r in _page(db, account_id, sort="price", dir="asc", per=100)["jobs"]]
    assert by_price == sorted(by_price)
    newest = [r["id"] for r in _page(db, account_id, per=100)["jobs"]]
    assert newest == sorted(ids, reverse=True)


def test_filters_by_state_name_batch_and_search(db):
    account_id, ids = _jobs(db)
    finish_job(db, ids[0], 1)
    db.transact(
        lambda tx: tx.execute(
            "UPDATE jobs SET status = 'finished', outcome = 'error', error = ? WHERE id = ?",
            ("ZeroDivisionError: division by zero (line 3)", ids[1]),
        )
    )
    assert [r["id"] for r in _page(db, account_id, state="failed")["jobs"]] == [ids[1]]
    assert [r["id"] for r in _page(db, account_id, state="finished")["jobs"]] == [ids[0]]
    assert _page(db, account_id, state="ready")["total"] == 10
    # a name filter's % and _ are the characters, not wildcards
    assert {r["name"] for r in _page(db, account_id, name="50%", per=100)["jobs"]} == {"gamma 50%"}
    assert {r["name"] for r in _page(db, account_id, name="a_1", per=100)["jobs"]} == {"delta_1"}
    assert _page(db, account_id, name="a%1")["total"] == 0
    assert [r["id"] for r in _page(db, account_id, q="ZeroDivision")["jobs"]] == [ids[1]]
    assert [r["id"] for r in _page(db, account_id, q=f"#{ids[5]}")["jobs"]] == [ids[5]]
    batch_id, in_batch = make_batch(db, account_id, [1, 2, 3])
    found = _page(db, account_id, batch=batch_id)
    assert found["total"] == 3 and sorted(r["id"] for r in found["jobs"]) == sorted(in_batch)
    assert all(r["batch_id"] == batch_id for r in found["jobs"])


def test_another_members_jobs_are_never_listed(db):
    from market import accounts

    account_id, _ = _jobs(db, 3)
    other = accounts.create_account(db, "mo", "mo@example.org", "correct horse", confirm=False)
    other_id = other.id
    assert _page(db, other_id)["total"] == 0
    assert _page(db, account_id)["total"] == 3


def test_a_page_walks_an_index_of_the_owner_on_sqlite(tmp_path):
    from tests.test_web_support import sqlite_db

    db = sqlite_db(tmp_path)
    try:
        assert schema.LATEST >= 11
        for sort, index in (
            ("name", "jobs_owner_name"),
            ("price", "jobs_owner_price"),
            ("submitted", "jobs_owner_submitted"),
        ):
            plan = db.transact(
                lambda tx, s=sort: tx.all(
                    f"EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE account_id = ?"
                    f" ORDER BY {sql_jobs._SORT_COLUMNS[s]} DESC, id DESC LIMIT 25 OFFSET 0",
                    (1,),
                )
            )
            details = " ".join(str(r.get("detail")) for r in plan)
            assert index in details and "TEMP B-TREE" not in details, details
    finally:
        db.close()


# -- the web page -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_jobs_page_pages_sorts_and_filters(market):
    b = await market.member("pat")
    owner = market.account_id("pat")
    ids = [make_job(market.db, owner, name=f"job-{i:02d}") for i in range(30)]
    page = await b.get("/jobs")
    assert page.code == 200
    assert "30 jobs; page 1 of 2" in page.text and "job-29<" in page.text and "job-04<" not in page.text
    assert 'rel="next"' in page.text
    second = await b.get("/jobs?page=2")
    assert "job-04<" in second.text and "job-29<" not in second.text
    by_name = await b.get("/jobs?sort=name&dir=asc&per=10")
    assert by_name.text.index("job-00<") < by_name.text.index("job-01<") and "job-10<" not in by_name.text
    found = await b.get(f"/jobs?q=%23{ids[7]}")  # "#8": the id, not names with an 8
    assert "1 job; page 1 of 1" in found.text and "job-07<" in found.text
    hostile = await b.get("/jobs?sort=id%3BDROP&per=9999&state=%3Cscript%3E")
    assert hostile.code == 200 and "sort must be one of" in hostile.text and "<script>" not in hostile.text
    assert "30 jobs" in hostile.text  # the rest of the list still shows


@pytest_twisted.ensureDeferred
async def test_a_batch_job_links_to_its_batch_from_the_list_and_its_page(market):
    b = await market.member("bo")
    batch_id, jobs = make_batch(market.db, market.account_id("bo"), [1, 2])
    listed = await b.get(f"/jobs?batch={batch_id}")
    assert "2 jobs" in listed.text and f'href="/batches/{batch_id}"' in listed.text
    job = await b.get(f"/jobs/{jobs[0]}")
    assert f'id="job-batch" href="/batches/{batch_id}"' in job.text


# -- a phone in real Chromium -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_jobs_page_fits_a_375_px_phone_in_chromium(market, tmp_path):
    from twisted.internet import threads

    from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    b = await market.member("phil")
    owner = market.account_id("phil")
    for i in range(30):
        make_job(market.db, owner, name=f"a rather long job name number {i}")
    profile = str(tmp_path / "profile")

    def script():
        d = _driver(str(tmp_path), profile)
        try:
            d.set_window_size(375, 800)
            d.get(market.base + "/login")
            for name, value in b.jar.items():
                d.add_cookie({"name": name, "value": value, "path": "/"})
            d.get(market.base + "/jobs")
            width = d.execute_script("return window.innerWidth")
            deadline = time.monotonic() + 10
            while width > 375 and time.monotonic() < deadline:  # headless may take a moment to resize
                d.set_window_size(375, 800)
                time.sleep(0.1)
                width = d.execute_script("return window.innerWidth")
            scroll = d.execute_script("return document.documentElement.scrollWidth")
            box = d.execute_script(
                "var b = document.querySelector('.table-scroll'); return [b.clientWidth, b.scrollWidth]"
            )
            d.find_element("link text", "Next →").click()
            second = d.find_element("id", "job-count").text
            return width, scroll, box, second
        finally:
            d.quit()

    width, scroll, box, second = await threads.deferToThread(script)
    assert width <= 375, width
    assert scroll <= 375, f"the page scrolls sideways: {scroll} px wide"
    assert box[0] <= 375  # the table scrolls inside its own box
    assert "page 2 of 2" in second


# -- XML-RPC ``jobs`` and ``market status`` against a real twistd market -------------------------


def test_market_status_pages_sorts_and_filters_through_a_real_market(tmp_path):
    import xmlrpc.client

    from tests.test_cli import _member_market, bare_market

    db, account_id, token, token_file, server = _member_market(tmp_path)
    try:
        ids = [make_job(db, account_id, name=f"sweep-{i:02d}") for i in range(7)]
        db.transact(
            lambda tx: tx.execute(
                "UPDATE jobs SET status = 'finished', outcome = 'error', error = 'boom' WHERE id = ?", (ids[3],)
            )
        )
        where = ["--server", server.url, "--account", "ann", "--token-file", str(token_file)]
        first = bare_market("status", *where, "--per", "3", "--sort", "name", "--dir", "asc")
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert len(lines) == 4 and [line.split()[1] for line in lines[1:]] == ["sweep-00", "sweep-01", "sweep-02"]
        assert "7 jobs; page 1 of 3; next: --page 2" in first.stderr
        failed = bare_market("status", *where, "--state", "failed")
        assert failed.returncode == 0 and len(failed.stdout.splitlines()) == 2 and "sweep-03" in failed.stdout
        assert "failed" in failed.stdout.splitlines()[1]
        bad = bare_market("status", *where, "--sort", "id;DROP TABLE jobs")
        assert bad.returncode != 0 and "sort must be one of" in bad.stderr and "Traceback" not in bad.stderr
        proxy = xmlrpc.client.ServerProxy(server.url.replace("://", f"://ann:{token}@"), allow_none=True)
        page = proxy.jobs({"q": "sweep-0", "per": 5, "page": 2})
        assert (page["total"], page["page"], page["pages"], page["per"]) == (7, 2, 2, 5)
        assert [j["id"] for j in page["jobs"]] == sorted(ids, reverse=True)[5:]
        try:
            proxy.jobs({"per": "1000"})
        except xmlrpc.client.Fault as e:
            assert e.faultCode == 1 and "per must be" in e.faultString
        else:
            raise AssertionError("a page of 1000 was served")
    finally:
        server.stop()
        db.close()
