"""The batch page (issue 19): aggregate progress, counts, cost, paged jobs, cancel and reprice all,
results as JSON Lines and CSV; another member's batch is not found."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest_twisted

from market.jobs import batches
from market.store import batches as sql_batches
from tests.test_web_support import MODULE, finish_job, market  # noqa: F401  (fixture)


def make_batch(db, account_id: int, sets, name: str = "sweep", price: int = 100) -> tuple[int, list[int]]:
    """A batch made the market's way: module checked once, each set frozen, added in one chunk."""
    states = batches.prepare_states(MODULE, "main", [([n], {}) for n in sets])
    source_sha256, read = batches.read_states(states, "main")
    now = time.time()
    batch_id = db.transact(sql_batches.create_batch, account_id, name, MODULE, "main", price, len(sets), now)
    return batch_id, db.transact(sql_batches.add_jobs, account_id, batch_id, source_sha256, read, now)


@pytest_twisted.ensureDeferred
async def test_the_batch_page_shows_counts_progress_and_pages_of_jobs(market):
    b = await market.member("bea")
    batch_id, jobs = make_batch(market.db, market.account_id("bea"), list(range(1, 61)))
    for job in jobs[:15]:
        finish_job(market.db, job, 1)
    page = await b.get(f"/batches/{batch_id}")
    assert page.code == 200
    assert "finished 15" in page.text and "ready 45" in page.text and "25%" in page.text.replace(" %", "%")
    assert "Page 1 of 2" in page.text and f"/batches/{batch_id}?page=2" in page.text
    assert "sweep #1<" in page.text and "sweep #51<" not in page.text
    second = await b.get(f"/batches/{batch_id}?page=2")
    assert "sweep #51<" in second.text and "sweep #50<" not in second.text and "Page 2 of 2" in second.text


@pytest_twisted.ensureDeferred
async def test_reprice_and_cancel_from_the_page_act_on_every_job(market):
    b = await market.member("cy")
    batch_id, jobs = make_batch(market.db, market.account_id("cy"), [5, 6, 7])
    page = await b.get(f"/batches/{batch_id}")
    assert (await b.post(f"/batches/{batch_id}/price", {"price": "2.50"}, csrf=page.csrf())).code == 303
    prices = market.db.transact(
        lambda tx: [r["price"] for r in tx.all("SELECT price FROM jobs WHERE batch_id = ?", (batch_id,))]
    )
    assert prices == [250, 250, 250]
    bad = await b.post(f"/batches/{batch_id}/price", {"price": "lots"}, csrf=page.csrf())
    assert bad.code == 400 and "credits" in bad.text
    assert (await b.post(f"/batches/{batch_id}/cancel", {}, csrf=page.csrf())).code == 303
    page = await b.get(f"/batches/{batch_id}")
    assert "cancelled 3" in page.text and "Cancel every job" not in page.text


@pytest_twisted.ensureDeferred
async def test_results_download_as_json_lines_and_csv_in_argument_order(market):
    b = await market.member("dee")
    batch_id, jobs = make_batch(market.db, market.account_id("dee"), [10, 20, 30])
    finish_job(market.db, jobs[0], {"total": 45})
    finish_job(market.db, jobs[2], "text")
    lines = await b.get(f"/batches/{batch_id}/results?format=jsonl")
    assert lines.code == 200 and "attachment" in lines.header("content-disposition")
    records = [json.loads(line) for line in lines.text.splitlines()]
    assert [r["result"] for r in records] == [{"total": 45}, None, "text"]
    assert [r["status"] for r in records] == ["finished", "ready", "finished"]
    assert records[0]["verification"] == "unverified" and records[0]["job"] == jobs[0]
    table = await b.get(f"/batches/{batch_id}/results?format=csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert table.header("content-type").startswith("text/csv")
    assert [r["result"] for r in rows] == ['{"total": 45}', "", '"text"'] and [r["index"] for r in rows] == [
        "0",
        "1",
        "2",
    ]


@pytest_twisted.ensureDeferred
async def test_another_members_batch_is_not_found(market):
    await market.member("eve")
    batch_id, _ = make_batch(market.db, market.account_id("eve"), [1])
    b = await market.member("fay")
    for path in (f"/batches/{batch_id}", f"/batches/{batch_id}/results"):
        assert (await b.get(path)).code == 404
    page = await b.get("/jobs")
    assert (await b.post(f"/batches/{batch_id}/cancel", {}, csrf=page.csrf())).code == 404


# -- the batch form ------------------------------------------------------------------------------


async def _submit_batch(b, files=None, **over):
    from tests.test_web_support import upload

    fields = {"function": "main", "sets": '[10]\n[20]\n{"n": 30}\n', "format": "jsonl", "name": "form sweep"}
    fields.update(price="0.50", **over)
    form = await b.get("/batches/new")
    return await b.post("/batches/new", fields, files={**upload(MODULE), **(files or {})}, csrf=form.csrf())


@pytest_twisted.ensureDeferred
async def test_the_batch_form_makes_one_ready_job_per_pasted_argument_set(market):
    b = await market.member("hal")
    page = await _submit_batch(b)
    assert page.code == 303, page.text
    batch_id = int(page.header("location").rsplit("/", 1)[1])
    jobs = market.db.transact(sql_batches.batch_jobs, market.account_id("hal"), batch_id, 0, 10)
    assert [j["status"] for j in jobs] == ["ready"] * 3 and [j["price"] for j in jobs] == [50] * 3
    assert "ready 3" in (await b.get(f"/batches/{batch_id}")).text
    listing = await b.get("/batches")
    assert f'href="/batches/{batch_id}"' in listing.text and "form sweep" in listing.text


@pytest_twisted.ensureDeferred
async def test_the_batch_form_takes_an_uploaded_csv(market):
    b = await market.member("ida")
    sets = {"setsfile": ("sets.csv", "text/csv", io.BytesIO(b"n\n1\n2\n3\n4\n"))}
    page = await _submit_batch(b, files=sets, sets="", format="csv")
    assert page.code == 303, page.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs WHERE batch_id IS NOT NULL")) == 4


@pytest_twisted.ensureDeferred
async def test_the_batch_form_refuses_too_many_sets_and_bad_ones_in_the_form(market):
    b = await market.member("jo")
    market.web.max_batch = 2
    page = await _submit_batch(b)
    assert page.code == 400 and "at most 2 argument sets" in page.text
    market.web.max_batch = 100
    page = await _submit_batch(b, sets='[1]\n["a", "b"]\n')
    assert page.code == 400 and "argument set 2" in page.text
    page = await _submit_batch(b, sets="[1]\nnot json\n")
    assert page.code == 400 and "line 2" in page.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM batches")) == 0


def test_the_report_names_a_jobs_batch_to_its_owner_only_and_stays_valid(db):
    from lxml import etree

    from market import report

    owner, _ = md_account(db, "kit")
    md_account(db, "lou")
    batch_id, jobs = make_batch(db, owner, [1, 2])
    ns = {"r": "urn:market:report:1"}
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    for requester, expected in (("kit", [str(batch_id)] * 2), ("lou", []), (None, [])):
        doc = etree.fromstring(report.report_bytes(db, requester), parser)
        report.schema().assertValid(doc)
        assert doc.xpath("//r:job/@batch", namespaces=ns) == expected


def md_account(db, name):
    from tests import marketdata as md

    return md.account(db, name)
