"""Job states as members meet them, through the real parts: the web form (in-process site), a real
``twistd market`` on the same database and a real worker in the real sandbox."""

from __future__ import annotations

import os
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
