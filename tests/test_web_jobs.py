"""Web jobs, clients, ledger, report and feed: every page and every refusal, owner checks included."""

from __future__ import annotations

import json
import re

import pytest_twisted
from lxml import etree

from tests.test_web_support import MODULE, finish_job, make_job, market, upload  # noqa: F401  (fixture)


def _job_form(**over):
    fields = {"function": "main", "args": "[1000]", "name": "Bubble Sort (1)", "price": "5.20"}
    fields.update(over)
    return fields


async def _submit(b, source=MODULE, **over):
    form = await b.get("/submit")
    return await b.post("/submit", _job_form(**over), files=upload(source), csrf=form.csrf())


# -- submission ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_submit_creates_a_ready_job_with_its_initial_state(market):
    b = await market.member("alice")
    page = await _submit(b)
    assert page.code == 303
    job_id = int(page.header("location").rsplit("/", 1)[1])
    job = await b.get(f"/jobs/{job_id}")
    assert job.code == 200 and "Bubble Sort (1)" in job.text and "ready" in job.text
    row = market.db.transact(lambda tx: tx.one("SELECT price, entry, status FROM jobs WHERE id = ?", (job_id,)))
    assert row == {"price": 520, "entry": "main", "status": "ready"}
    from market.tasklet import read_header

    state = market.db.transact(lambda tx: tx.one("SELECT data FROM states WHERE job_id = ?", (job_id,)))
    header = read_header(bytes(state["data"]))
    assert header.seq == 0 and header.entry == "main"


@pytest_twisted.ensureDeferred
async def test_refused_constructs_are_shown_with_their_line_numbers(market):
    b = await market.member("bob")
    page = await _submit(b, "def main(n):\n    return n\n\nimport os\n")
    assert page.code == 400
    assert "cannot run as a market job" in page.text and "line 4" in page.text and "os" in page.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0
    # the module is kept for the next try, with its functions to pick from
    assert '<textarea id="source"' in page.text and "<option selected>main</option>" in page.text


@pytest_twisted.ensureDeferred
async def test_submit_errors_stay_in_the_form(market):
    b = await market.member("carl")
    page = await _submit(b, args="[1000", price="-3", name="")
    assert page.code == 400
    assert "not valid JSON" in page.text
    assert "price must be" in page.text
    assert "Give the job a name" in page.text
    assert "Traceback" not in page.text
    page = await _submit(b, args="[1, 2]")  # main takes one argument
    assert page.code == 400 and "too many positional arguments" in page.text


@pytest_twisted.ensureDeferred
async def test_without_a_function_the_form_offers_the_modules_functions(market):
    b = await market.member("dora")
    page = await _submit(b, function="")
    assert page.code == 400 and "Pick the function" in page.text
    assert "<option>main</option>" in page.text and "<option>square</option>" in page.text
    # second step: the source comes back in the form, no new upload
    page = await b.post(
        "/submit", {**_job_form(function="square", args='{"x": 7}'), "source": MODULE}, csrf=page.csrf()
    )
    assert page.code == 303


@pytest_twisted.ensureDeferred
async def test_a_module_that_is_not_utf8_or_missing_is_refused_in_the_form(market):
    b = await market.member("emil")
    form = await b.get("/submit")
    import io

    page = await b.post(
        "/submit", _job_form(), files={"module": ("x.py", "text/plain", io.BytesIO(b"\xff\xfe"))}, csrf=form.csrf()
    )
    assert page.code == 400 and "not UTF-8" in page.text
    page = await b.post("/submit", _job_form(), csrf=form.csrf())
    assert page.code == 400 and "Choose a Python module" in page.text


@pytest_twisted.ensureDeferred
async def test_uploads_over_the_cap_are_refused_before_parsing(market):
    b = await market.member("fay")
    form = await b.get("/submit")
    big = "# padding\n" * 120_000  # 1.2 MB
    page = await b.post("/submit", _job_form(), files=upload(big), csrf=form.csrf())
    assert page.code == 413 and "KiB" in page.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0


@pytest_twisted.ensureDeferred
async def test_a_module_over_the_module_limit_is_refused_in_the_form(market):
    b = await market.member("gus")
    market.web.max_module = 2048
    page = await _submit(b, "def main(n):\n    return n\n" + "# x\n" * 600)
    assert page.code == 400 and "The module is over 2 KiB." in page.text


# -- my jobs and prices ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_jobs_page_lists_name_price_time_slices_progress_status_finished(market):
    b = await market.member("hana")
    me = market.account_id("hana")
    make_job(market.db, me, "Bubble Sort (1)", 520)
    done = make_job(market.db, me, "Find Factors (1)", 350)
    finish_job(market.db, done, 42)
    page = await b.get("/jobs")
    assert page.code == 200
    for text in (
        "Name",
        "Price",
        "Time executed",
        "Slices",
        "Progress",
        "Status",
        "Finished",
        "Bubble Sort (1)",
        'value="5.20"',
        "Find Factors (1)",
        "3.50",
        "Update prices",
        "Yes,",
        "No",
    ):
        assert text in page.text, text
    assert f'name="price-{done}"' not in page.text  # a finished job's price can no longer change


@pytest_twisted.ensureDeferred
async def test_one_form_changes_many_prices(market):
    b = await market.member("ivan")
    me = market.account_id("ivan")
    one, two, three = (make_job(market.db, me, f"job {i}", 100) for i in range(3))
    page = await b.get("/jobs")
    result = await b.post(
        "/jobs/prices", {f"price-{one}": "7.00", f"price-{two}": "1.00", f"price-{three}": "0.25"}, csrf=page.csrf()
    )
    assert result.code == 303 and result.header("location") == "/jobs?updated=2"
    prices = dict(market.db.transact(lambda tx: [(r["id"], r["price"]) for r in tx.all("SELECT id, price FROM jobs")]))
    assert prices == {one: 700, two: 100, three: 25}
    assert "2 prices changed" in (await b.get("/jobs?updated=2")).text


@pytest_twisted.ensureDeferred
async def test_bad_prices_are_shown_by_their_rows_and_good_ones_still_change(market):
    b = await market.member("jana")
    me = market.account_id("jana")
    one, two = make_job(market.db, me, "one", 100), make_job(market.db, me, "two", 100)
    page = await b.get("/jobs")
    result = await b.post("/jobs/prices", {f"price-{one}": "lots", f"price-{two}": "2.50"}, csrf=page.csrf())
    assert result.code == 400
    assert f'id="price-{one}-error"' in result.text and "price must be" in result.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT price FROM jobs WHERE id = ?", (two,))) == 250


@pytest_twisted.ensureDeferred
async def test_the_price_form_cannot_change_another_members_job(market):
    owner = await market.member("kurt")
    theirs = make_job(market.db, market.account_id("kurt"), "theirs", 100)
    b = await market.member("lisa")
    page = await b.get("/jobs")
    result = await b.post("/jobs/prices", {f"price-{theirs}": "9.00"}, csrf=page.csrf())
    assert result.code == 400 and f"no job {theirs} in your account" in result.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT price FROM jobs WHERE id = ?", (theirs,))) == 100
    assert owner


@pytest_twisted.ensureDeferred
async def test_cancel_a_job(market):
    b = await market.member("mark")
    job = make_job(market.db, market.account_id("mark"), "to cancel", 100)
    page = await b.get(f"/jobs/{job}")
    assert (await b.post(f"/jobs/{job}/cancel", {}, csrf=page.csrf())).code == 303
    assert "cancelled" in (await b.get(f"/jobs/{job}")).text


# -- results ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_finished_jobs_result_is_shown_and_downloadable_by_its_owner(market):
    b = await market.member("nina")
    job = make_job(market.db, market.account_id("nina"), "answer", 100)
    finish_job(market.db, job, {"total": 499500, "primes": [2, 3, 5]})
    page = await b.get(f"/jobs/{job}")
    assert "499500" in page.text and "Download the result" in page.text
    download = await b.get(f"/jobs/{job}/result")
    assert download.code == 200 and download.header("content-type").startswith("application/json")
    assert "attachment" in download.header("content-disposition")
    body = json.loads(download.body)
    assert body["result"] == {"total": 499500, "primes": [2, 3, 5]} and body["outcome"] == "finished"


@pytest_twisted.ensureDeferred
async def test_an_unfinished_job_has_no_result_yet(market):
    b = await market.member("otto")
    job = make_job(market.db, market.account_id("otto"), "busy", 100)
    page = await b.get(f"/jobs/{job}/result")
    assert page.code == 409 and "no result yet" in page.text


@pytest_twisted.ensureDeferred
async def test_another_members_jobs_results_and_clients_are_not_found(market):
    from tests.marketdata import client

    await market.member("pia")
    pia = market.account_id("pia")
    job = make_job(market.db, pia, "private", 100)
    finish_job(market.db, job, "secret result")
    client_id, _ = client(market.db, pia, "pias-box")
    other = await market.member("quin")
    for path in (f"/jobs/{job}", f"/jobs/{job}/result", f"/clients/{client_id}"):
        page = await other.get(path)
        assert page.code == 404, path
        assert "secret result" not in page.text and "private" not in page.text
    page = await other.get(f"/jobs/{job}")
    cancel = await other.post(f"/jobs/{job}/cancel", {}, csrf=(await other.get("/")).csrf())
    assert cancel.code == 404
    assert market.db.transact(lambda tx: tx.scalar("SELECT status FROM jobs WHERE id = ?", (job,))) == "finished"


# -- clients ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_register_a_client_shows_id_token_and_worker_command_once(market):
    b = await market.member("rosa")
    page = await b.post("/clients", {"name": "laptop"})
    assert page.code == 200
    client_id = re.search(r'id="client-id">(\d+)<', page.text).group(1)
    token = re.search(r'id="client-token">([^<]+)<', page.text).group(1)
    command = re.search(r'id="worker-command">([^<]+)<', page.text).group(1)
    # the token goes in the environment: a command's arguments show in ps
    assert (
        command
        == f"MARKET_CLIENT_TOKEN={token} twistd -n worker --server http://127.0.0.1:7080/RPC2 --client {client_id}"
    )
    from market.accounts import credentials

    stored = market.db.transact(lambda tx: tx.scalar("SELECT token_hash FROM clients WHERE id = ?", (client_id,)))
    assert stored == credentials.token_hash(token)
    again = await b.get("/clients")
    assert token not in again.text and "laptop" in again.text
    detail = await b.get(f"/clients/{client_id}")
    assert detail.code == 200 and "not measured yet" in detail.text


@pytest_twisted.ensureDeferred
async def test_a_client_name_is_checked_in_the_form(market):
    b = await market.member("sami")
    assert (await b.post("/clients", {"name": "box"})).code == 200
    twice = await b.post("/clients", {"name": "box"})
    assert twice.code == 400 and "already has a client named" in twice.text


# -- ledger, report, schema, feed -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ledger_shows_balance_and_history(market):
    b = await market.member("tara")
    page = await b.get("/ledger")
    assert page.code == 200 and 'id="balance">100.00<' in page.text and "starting grant" in page.text
    assert "+100.00" in page.text


@pytest_twisted.ensureDeferred
async def test_the_report_validates_against_the_posted_schema_and_keeps_others_private(market):
    from tests.marketdata import client

    b = await market.member("ursa")
    ursa = market.account_id("ursa")
    make_job(market.db, ursa, "mine", 100)
    await market.member("vera")
    vera = market.account_id("vera")
    make_job(market.db, vera, "hers", 100)
    client(market.db, vera, "veras-box", speed=123.0)
    xsd = await b.get("/schema/report.xsd")
    assert xsd.code == 200 and xsd.header("content-type").startswith("application/xml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    schema = etree.XMLSchema(etree.fromstring(xsd.body, parser))
    page = await b.get("/report.xml")
    assert page.code == 200 and "attachment" in page.header("content-disposition")
    doc = etree.fromstring(page.body, parser)
    schema.assertValid(doc)
    ns = {"r": "urn:market:report:1"}
    owners = doc.xpath("//r:job/@owner | //r:client/@owner", namespaces=ns)
    assert owners == ["ursa"]
    assert b"vera" not in page.body and b"veras-box" not in page.body
    anonymous = await market.new_browser().get("/report.xml")
    assert anonymous.code == 200 and not etree.fromstring(anonymous.body, parser).xpath("//@owner")
    assert (await b.get("/report")).code == 200


@pytest_twisted.ensureDeferred
async def test_the_feed_lists_job_changes_at_a_private_address(market):
    b = await market.member("wade")
    me = market.account_id("wade")
    job = make_job(market.db, me, "feed me", 100)
    finish_job(market.db, job, 1)
    page = await b.get("/jobs")
    path = re.search(r'href="(/feed/\d+/[0-9a-f]+\.atom)"', page.text).group(1)
    feed = await market.new_browser().get(path)  # a feed reader has no session
    assert feed.code == 200 and feed.header("content-type").startswith("application/atom+xml")
    doc = etree.fromstring(feed.body)
    titles = doc.xpath("//a:entry/a:title/text()", namespaces={"a": "http://www.w3.org/2005/Atom"})
    assert any("finished" in t for t in titles) and any("submitted" in t for t in titles)
    wrong = await market.new_browser().get(path[:-10] + "0000.atom")
    missing = await market.new_browser().get("/feed/9999/" + path.split("/")[3])
    assert wrong.code == missing.code == 404 and wrong.text.count("no feed") == missing.text.count("no feed")
    # a new password retires the old address
    await b.post("/password", {"current": "correct horse", "new": "another password", "again": "another password"})
    assert (await market.new_browser().get(path)).code == 404


@pytest_twisted.ensureDeferred
async def test_mail_goes_through_an_smtp_relay_when_given(tmp_path):
    from twisted.internet import reactor

    from tests.test_web_support import Mailbox, confirmation_link, smtp_server, sqlite_db, start_site

    mailbox = Mailbox()
    listening = reactor.listenTCP(0, smtp_server(mailbox), interface="127.0.0.1")
    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path, relay=f"127.0.0.1:{listening.getHost().port}")
    try:
        page = await wm.browser.post(
            "/signup",
            {"name": "xena", "email": "xena@example.org", "password": "a good password", "again": "a good password"},
        )
        assert page.code == 200
        from twisted.internet import task

        for _ in range(100):
            if mailbox.messages:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        link = confirmation_link(mailbox.messages[0])
        assert link and "/confirm/" in link
        assert (await wm.browser.get(link[len(wm.base) :])).code == 200
        assert not wm.outbox.messages()
    finally:
        await port.stopListening()
        await listening.stopListening()
        db.close()


@pytest_twisted.ensureDeferred
async def test_ids_beyond_any_stored_id_are_plain_404s(market):
    b = await market.member("yuri")
    for path in (
        "/jobs/99999999999999999999999",
        "/clients/99999999999999999999999",
        "/jobs/-1",
        "/jobs/x",
        "/feed/99999999999999999999999/abc.atom",
    ):
        page = await b.get(path)
        assert page.code == 404, path
        assert "Traceback" not in page.text


@pytest_twisted.ensureDeferred
async def test_an_unexpected_failure_is_a_plain_500_page_without_a_traceback(market, monkeypatch):
    from market.store import accounts as sql

    def broken(tx, account_id, limit=100):
        raise RuntimeError("internal detail that must not leak")

    b = await market.member("zack")
    monkeypatch.setattr(sql, "history", broken)
    page = await b.get("/ledger")
    assert page.code == 500 and "Something went wrong on the server" in page.text
    assert "internal detail" not in page.text and "Traceback" not in page.text


# -- hostile input: arguments, modules and results a stranger chooses ----------------------------


@pytest_twisted.ensureDeferred
async def test_arguments_python_cannot_read_are_a_form_error_not_a_500(market):
    b = await market.member("rhea")
    for args, words in [
        ("[" + "9" * 5000 + "]", "a number too long for the market to read (over 4,300 digits)"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2", "not valid JSON"),
    ]:
        page = await _submit(b, args=args)
        assert page.code == 400, (args[:20], page.code)
        assert words in page.text and 'id="args-error"' in page.text
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0


@pytest_twisted.ensureDeferred
async def test_a_module_over_the_cheap_limits_is_refused_in_the_form(market):
    b = await market.member("sven")
    page = await _submit(b, source="x = 1\n" * 20_001 + MODULE)
    assert page.code == 400 and "lines; the market takes at most 20,000" in page.text
    assert 'id="module-error"' in page.text


def _bomb(levels: int = 40) -> list:
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return a


@pytest_twisted.ensureDeferred
async def test_a_result_bomb_is_shown_by_its_size_with_the_encoded_download_never_expanded(market):
    from market.tasklet import codec

    b = await market.member("tara")
    job = make_job(market.db, market.account_id("tara"), "bomb", 100)
    finish_job(market.db, job, _bomb())
    page = await b.get(f"/jobs/{job}")
    assert page.code == 200 and len(page.body) < 20_000
    assert 'id="result-not-shown"' in page.text and "values once each shared part" in page.text
    assert f"/jobs/{job}/result?as=encoded" in page.text and "[\n [\n  [" not in page.text
    download = await b.get(f"/jobs/{job}/result")
    assert download.code == 413 and f"/jobs/{job}/result?as=encoded" in download.text
    encoded = await b.get(f"/jobs/{job}/result?as=encoded")
    assert encoded.code == 200 and encoded.body == codec.encode(_bomb())
    assert encoded.header("content-type") == "application/octet-stream"
    assert "attachment" in encoded.header("content-disposition")


@pytest_twisted.ensureDeferred
async def test_a_long_result_is_cut_on_its_page_and_whole_in_the_download(market):
    b = await market.member("ugo")
    job = make_job(market.db, market.account_id("ugo"), "long", 100)
    finish_job(market.db, job, list(range(20_000)))
    page = await b.get(f"/jobs/{job}")
    assert "download the result for the rest" in page.text and "19999" not in page.text
    body = json.loads((await b.get(f"/jobs/{job}/result")).body)
    assert body["result"] == list(range(20_000))


@pytest_twisted.ensureDeferred
async def test_a_text_result_is_shown_as_text_and_downloaded_as_a_json_string(market):
    b = await market.member("vito")
    job = make_job(market.db, market.account_id("vito"), "text", 100)
    finish_job(market.db, job, "first line\nsecond <line>")
    page = await b.get(f"/jobs/{job}")
    assert "first line\nsecond &lt;line&gt;" in page.text
    assert json.loads((await b.get(f"/jobs/{job}/result")).body)["result"] == "first line\nsecond <line>"


@pytest_twisted.ensureDeferred
async def test_a_result_that_is_no_encoded_value_says_so(market):
    b = await market.member("wim")
    job = make_job(market.db, market.account_id("wim"), "broken", 100)
    market.db.transact(
        lambda tx: tx.execute(
            "UPDATE jobs SET status = 'finished', outcome = 'finished', result = ? WHERE id = ?", (b"\x01\xff", job)
        )
    )
    page = await b.get(f"/jobs/{job}")
    assert page.code == 200 and "could not be decoded" in page.text
    body = json.loads((await b.get(f"/jobs/{job}/result")).body)
    assert body["result"] is None and "could not be decoded" in body["error"]
