"""Job states as members meet them, through the real parts: the web form (in-process site), a real
``twistd market`` on the same database and a real worker in the real sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest_twisted

from market import tasklet
from market.store import Database, upgrade
from market.store import jobs as jsql
from market.tasklet.envelope import source_hash
from tests.servers import Market, Worker, stop_all
from tests.support import need_program
from tests.test_web_support import start_site

SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []
MODULE_CRLF = "def main(n):\r\n    total = 0\r\n    for i in range(n):\r\n        total += i\r\n    return total\r\n"


def _wait_final(db, job_id, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = db.transact(jsql.job_row, job_id)
        if row["status"] in ("finished", "cancelled"):
            return row
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout} s: {row['status']}")


@pytest_twisted.ensureDeferred
async def test_a_module_resent_through_the_web_form_with_crlf_line_ends_finishes_on_a_real_worker(tmp_path):
    from twisted.internet import threads

    need_program("bwrap")
    os.chmod(tmp_path, 0o755)  # the worker's unprivileged user reads the job's files under here
    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    wm, serving = await start_site(db, tmp_path)
    processes: list = []
    try:
        b = await wm.member("alice")
        form = await b.get("/submit")
        # the second step of the form: the module comes back from the textarea, CRLF as browsers send it
        page = await b.post(
            "/submit",
            {"source": MODULE_CRLF, "function": "main", "args": "[1000]", "name": "crlf", "price": "1.00"},
            csrf=form.csrf(),
        )
        assert page.code == 303, page.text
        job_id = int(page.header("location").rsplit("/", 1)[1])
        stored = db.transact(jsql.job_row, job_id)
        assert "\r" not in stored["source"]
        assert stored["source_sha256"] == source_hash(MODULE_CRLF.replace("\r\n", "\n"))

        from tests import marketdata as md

        host, _ = md.account(db, "host", grant=0)
        cid, token = md.client(db, host, "w1")
        server = Market(url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--test-job-size", "30")
        processes.append(await threads.deferToThread(server.start))
        processes.append(Worker(server.url, cid, token, str(tmp_path), "--slice", "1", *SANDBOX_USER).start())
        row = await threads.deferToThread(_wait_final, db, job_id, 90)
        assert (row["status"], row["outcome"], row["error"]) == ("finished", "finished", None), processes[-1].logtext()[
            -2000:
        ]
        assert tasklet.decode_result(bytes(row["result"])) == sum(range(1000))
    finally:
        await threads.deferToThread(stop_all, list(reversed(processes)))
        await serving.stopListening()
        wm.web.reports.close()
        db.close()


FAILING = "def main(n):\n    x = n - n\n    return n / x\n"


@pytest_twisted.ensureDeferred
async def test_a_failed_job_reads_failed_with_its_error_and_line_on_the_web_rpc_and_cli(tmp_path):
    from twisted.internet import threads

    from market.accounts import issue_api_token
    from market.rpc.client import blocking
    from tests import marketdata as md
    from tests.servers import env

    need_program("bwrap")
    os.chmod(tmp_path, 0o755)
    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    wm, serving = await start_site(db, tmp_path)
    processes: list = []
    try:
        b = await wm.member("alice")
        ids = {}
        for name, source, args in (("fails", FAILING, "[7]"), ("works", MODULE_CRLF, "[10]")):
            form = await b.get("/submit")
            page = await b.post(
                "/submit",
                {"source": source, "function": "main", "args": args, "name": name, "price": "1.00"},
                csrf=form.csrf(),
            )
            assert page.code == 303, page.text
            ids[name] = int(page.header("location").rsplit("/", 1)[1])
        cancelled = md.job(db, wm.account_id("alice"), 100, "cancelled")
        host, _ = md.account(db, "host", grant=0)
        cid, token = md.client(db, host, "w1")
        server = Market(url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--test-job-size", "30")
        processes.append(await threads.deferToThread(server.start))
        api = issue_api_token(db, wm.account_id("alice"))
        blocking(server.url, "account/alice", api).cancel(cancelled)
        processes.append(Worker(server.url, cid, token, str(tmp_path), "--slice", "1", *SANDBOX_USER).start())
        for job_id in ids.values():
            await threads.deferToThread(_wait_final, db, job_id, 90)

        # the web: failed in red, why, and the module's line
        page = await b.get(f"/jobs/{ids['fails']}")
        assert 'class="status-failed" id="job-status">failed<' in page.text
        assert "the job raised an error" in page.text and "ZeroDivisionError" in page.text
        assert '<span id="error-line">at line 3</span>' in page.text
        listing = await b.get("/jobs")
        assert 'class="status-failed"' in listing.text and 'class="status-finished"' in listing.text

        # XML-RPC: the published keys as they were, and the new ones
        rpc = blocking(server.url, "account/alice", api)
        failed = rpc.status(ids["fails"])
        assert (failed["status"], failed["state"], failed["failed"], failed["error_line"]) == (
            "finished",
            "failed",
            True,
            3,
        )
        assert failed["reason"] == "the job raised an error" and "ZeroDivisionError" in failed["error"]
        works = rpc.outcome(ids["works"])
        assert (works["state"], works["failed"], works["error_line"]) == ("finished", False, None)

        # market result: an exit code per outcome, the error on stderr
        e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="alice", MARKET_TOKEN=api)

        def result(job_id):
            return subprocess.run(
                [sys.executable, "-m", "market", "result", str(job_id)],
                capture_output=True,
                text=True,
                env=e,
                timeout=60,
            )

        r = await threads.deferToThread(result, ids["fails"])
        assert r.returncode == 3 and not r.stdout, (r.returncode, r.stdout, r.stderr)
        assert "failed: the job raised an error (line 3 of the module)" in r.stderr and "ZeroDivisionError" in r.stderr
        r = await threads.deferToThread(result, ids["works"])
        assert (r.returncode, r.stdout.strip()) == (0, "45"), r.stderr
        r = await threads.deferToThread(result, cancelled)
        assert r.returncode == 4 and "cancelled" in r.stderr

        def status():
            return subprocess.run(
                [sys.executable, "-m", "market", "status"], capture_output=True, text=True, env=e, timeout=60
            )

        r = await threads.deferToThread(status)
        rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
        assert r.returncode == 0 and rows[str(ids["fails"])][3] == "failed" and rows[str(ids["works"])][3] == "finished"
    finally:
        await threads.deferToThread(stop_all, list(reversed(processes)))
        await serving.stopListening()
        wm.web.reports.close()
        db.close()
