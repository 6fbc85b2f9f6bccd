"""Spending caps through the real ``twistd market`` and the ``market`` CLI (issue 19, item 6):
``market submit --cap``, ``market batch submit --cap`` and ``market cap job|batch|account``."""

from __future__ import annotations

import json

from market.store import accounts as sql
from market.store import caps as csql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.test_batches import batch_jobs, member_market, processes  # noqa: F401 - the fixture


def test_caps_are_set_at_submission_and_changed_with_market_cap(tmp_path, processes):
    db, server, owner, run = member_market(tmp_path, processes)
    r = run(
        "submit", "sweep.py", "sweep", "--name", "capped", "--price", "0.05", "--arg", "10", "--cap", "1.50", "--yes"
    )
    assert r.returncode == 0, r.stderr
    job = int(r.stdout.strip())
    assert int(db.transact(jsql.job_row, job)["cap"]) == 150
    assert db.transact(jsql.job_row, job)["status"] == "ready"  # capped before init made it ready

    shown = run("cap", "job", str(job), "2.00")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"job {job}: spending cap 2.00 credits, 0.00 spent, 2.00 left"
    # a job held by its cap goes back on the ready list when the cap changes
    db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'held', hold_reason = 'cap' WHERE id = ?", (job,)))
    assert run("cap", "job", str(job), "none").stdout.strip() == f"job {job}: no spending cap"
    row = db.transact(jsql.job_row, job)
    assert row["cap"] is None and row["status"] == "ready" and row["hold_reason"] is None

    (tmp_path / "sets.json").write_text(json.dumps([[1], [2], [3]]))
    r = run(
        "batch", "submit", "sweep.py", "sweep", "sets.json", "--name", "capped sweep", "--price", "0.05", "--cap", "7"
    )
    assert r.returncode == 0, r.stderr
    batch = int(r.stdout.strip())
    assert len(batch_jobs(db, owner, batch)) == 3
    assert run("cap", "batch", str(batch)).returncode != 0  # the amount is missing: usage, not a traceback
    assert (
        run("cap", "batch", str(batch), "8").stdout.strip()
        == f"batch {batch}: spending cap 8.00 credits, 0.00 spent, 8.00 left"
    )
    assert db.transact(csql.batch_cap, owner, batch).limit == 800

    assert run("cap", "account").stdout.strip() == "your account: no spending cap"
    assert (
        run("cap", "account", "25.00").stdout.strip()
        == "your account: spending cap 25.00 credits, 0.00 spent, 25.00 left"
    )
    assert int(db.transact(sql.account_by_id, owner)["cap"]) == 2500
    bad = run("cap", "account", "-3")
    assert bad.returncode != 0 and "cap must be a number of credits" in bad.stderr
    # another member's job is not theirs to cap
    other, _ = md.account(db, "bob")
    theirs = md.job(db, other, 5)
    refused = run("cap", "job", str(theirs), "1")
    assert refused.returncode != 0 and f"no job {theirs}" in refused.stderr.lower()
