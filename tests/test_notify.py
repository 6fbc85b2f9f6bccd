"""E-mail on finish or failure (issue 19, item 6): opt-in, one mail per job that ends, one per
batch when its last job ends, never two; claimed in the store (SQLite and MariaDB) and sent by
the site's notifier through market.web.mail (its outbox), and through the real twistd market."""

from __future__ import annotations

import email
import subprocess
import time

import pytest_twisted

from market.core import notices
from market.store import batches as bsql
from market.store import notices as nsql
from tests import marketdata as md
from tests.test_web_support import market  # noqa: F401 - the fixture


def end(db, job_id, outcome="finished", error=None, status="finished"):
    db.transact(
        lambda tx: tx.execute(
            "UPDATE jobs SET status = ?, outcome = ?, error = ?, finished_at = ? WHERE id = ?",
            (status, outcome, error, time.time(), job_id),
        )
    )


def test_an_ended_job_of_an_opted_in_member_gives_one_notice_and_never_a_second(db):
    owner, _ = md.account(db, "alice")
    db.transact(nsql.set_notify, owner, True)
    done, failed, running = md.job(db, owner, 5, "done"), md.job(db, owner, 5, "bad"), md.job(db, owner, 5, "on")
    end(db, done)
    end(db, failed, "error", 'Traceback:\n  File "<job>", line 3, in main\nZeroDivisionError: division by zero')
    claimed = db.transact(nsql.claim)
    assert sorted((n["kind"], n["job"]["id"]) for n in claimed) == [("job", done), ("job", failed)]
    (address,) = {n["to"] for n in claimed}
    assert address == db.transact(lambda tx: tx.scalar("SELECT email FROM accounts WHERE id = ?", (owner,)))
    assert db.transact(nsql.claim) == []  # claimed once: never mailed twice
    bad = next(n["job"] for n in claimed if n["job"]["id"] == failed)
    subject, body = notices.job_notice(bad, "https://m.example")
    assert subject == f"Job {failed} (bad) failed"
    assert "the job raised an error" in body and "line 3 of your module" in body and "ZeroDivisionError" in body
    assert f"https://m.example/jobs/{failed}" in body
    end(db, running)
    assert [n["job"]["id"] for n in db.transact(nsql.claim)] == [running]


def test_a_member_who_did_not_opt_in_gets_nothing_and_later_opting_in_mails_no_backlog(db):
    owner, _ = md.account(db, "bob")
    job = md.job(db, owner, 5)
    end(db, job)
    assert db.transact(nsql.claim) == []
    db.transact(nsql.set_notify, owner, True)
    assert db.transact(nsql.claim) == []
    cancelled = md.job(db, owner, 5)
    end(db, cancelled, "abort", status="cancelled")
    assert db.transact(nsql.claim) == []  # a job its owner cancelled: no mail


def test_a_batch_gives_one_notice_when_its_last_job_ends_and_none_per_job(db):
    owner, _ = md.account(db, "cara")
    db.transact(nsql.set_notify, owner, True)
    batch = db.transact(bsql.create_batch, owner, "sweep", md.SOURCE, "main", 5, 3, time.time())
    ids = [md.job(db, owner, 5, f"j{i}") for i in range(3)]
    db.transact(
        lambda tx: tx.execute(f"UPDATE jobs SET batch_id = ? WHERE id IN ({ids[0]}, {ids[1]}, {ids[2]})", (batch,))
    )
    end(db, ids[0])
    end(db, ids[1], "error", "boom")
    assert db.transact(nsql.claim) == []  # one job still runs
    end(db, ids[2])
    (notice,) = db.transact(nsql.claim)
    assert notice["kind"] == "batch" and notice["batch"]["id"] == batch
    assert notice["counts"] == {"finished": 2, "failed": 1}
    subject, body = notices.batch_notice(notice["batch"], notice["counts"])
    assert subject == f"Batch {batch} (sweep) ended: 1 failed, 2 finished"
    assert db.transact(nsql.claim) == []


@pytest_twisted.ensureDeferred
async def test_the_notifier_mails_through_the_sites_mailer_and_the_account_page_turns_it_on(market):
    from twisted.internet import task

    from market.web.notify import Notifier

    b = await market.member("dina")
    dina = market.account_id("dina")
    page = await b.get("/account")
    assert 'id="notify-on"' in page.text and "checked" not in page.text.split('id="notify-on"')[1].split(">")[0]
    on = await b.post("/account/notify", {"notify": "on"}, csrf=page.csrf())
    assert on.code == 200 and "You will get an e-mail" in on.text
    job = md.job(market.db, dina, 5, "sum")
    end(market.db, job)
    clock = task.Clock()
    notifier = Notifier(market.db, market.web.mailer, clock, "http://m", interval=2.0)
    assert await notifier.pass_once() == 1
    assert await notifier.pass_once() == 0
    (mail,) = [m for m in market.outbox.messages() if m["To"].startswith("dina")]
    assert mail["Subject"] == f"Job {job} (sum) finished"
    off = await b.post("/account/notify", {}, csrf=page.csrf())
    assert "No more e-mails" in off.text and not market.db.transact(nsql.notify_of, dina)


def test_market_notify_and_a_real_market_mails_a_finished_job_once(tmp_path):
    from market.store import Database, upgrade
    from tests.servers import MARKET, Market, env, free_port, stop_all

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    outbox = tmp_path / "outbox"
    server = Market(url, str(tmp_path), "--web", f"tcp:{free_port()}:interface=127.0.0.1", "--outbox", str(outbox))
    try:
        server.start()
        owner, token = md.account(db, "erin")
        e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="erin", MARKET_TOKEN=token)
        run = lambda *a: subprocess.run([*MARKET, *a], capture_output=True, text=True, env=e, timeout=60)  # noqa: E731
        assert run("notify").stdout.strip() == "e-mail when a job or batch ends: off"
        r = run("notify", "on")
        assert r.returncode == 0 and r.stdout.strip() == "e-mail when a job or batch ends: on", r.stderr
        job = md.job(db, owner, 5, "sum")
        end(db, job, "error", "ValueError: bad input")
        deadline = time.time() + 30
        while time.time() < deadline and not (outbox.exists() and any(p.suffix == ".eml" for p in outbox.iterdir())):
            time.sleep(0.3)
        time.sleep(6)  # another pass of the loop: still one mail
        mails = [p for p in outbox.iterdir() if p.suffix == ".eml"]
        assert len(mails) == 1
        mail = email.message_from_bytes(mails[0].read_bytes())
        assert mail["Subject"] == f"Job {job} (sum) failed"
        assert "ValueError: bad input" in mail.get_payload(decode=True).decode()
    finally:
        stop_all([server])
        db.close()
