"""The XML system report: valid against schema/report.xsd, built from real stores, private."""

from __future__ import annotations

import io

import pytest
from lxml import etree

from market import report
from market.store import accounts as asql
from market.store import clients as csql
from market.store import jobs as jsql
from tests import marketdata as md

NS = {"r": report.NAMESPACE}
T0 = 1_795_000_000.0  # 2026-11-18


# -- building market states through the store's own functions ----------------------------------


def add_account(tx, name: str, grant: int = 10**8) -> int:
    return asql.create_account(tx, name, f"{name}@example.org", "x", T0, None, grant)


def add_client(tx, account_id: int, name: str, speed=None, status="active", suspect=False, at=T0) -> int:
    client_id = csql.register_client(tx, account_id, name, name.ljust(64, "0")[:64], at)
    if speed is not None:
        # speed * 1000 operations in 1000 s: the stored speed is exactly ``speed`` for 3 decimals
        csql.record_speed(tx, client_id, int(round(speed * 1000)), 1000.0, at + 1)
    if status != "active" or suspect:
        # fixture state; the product sets these through the prober and the reaper
        tx.execute("UPDATE clients SET status = ?, suspect = ? WHERE id = ?", (status, int(suspect), client_id))
    return client_id


def add_job(tx, account_id, name: str, price: int, status: str = "ready", at=T0, kind="job") -> int:
    """A job submitted and initialized through the store, then moved to ``status``."""
    job_id = jsql.create_job(tx, account_id, name, price, "def main():\n    return 1\n", "main", at, kind=kind)
    if status != "new":
        jsql.init_job(tx, None, job_id, md.fake_state(source="def main():\n    return 1\n", job_id=job_id), at)
    if status not in ("new", "ready"):
        # fixture state: reaching 'finished' for real needs a worker run
        tx.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))
    return job_id


def small_market(db):
    """alice and bob, each with clients and jobs in several states, a probe job and dispatches."""

    def work(tx):
        ids = {}
        ids["alice"] = alice = add_account(tx, "alice")
        ids["bob"] = bob = add_account(tx, "bob")
        add_account(tx, "carol")
        ids["a_fast"] = add_client(tx, alice, "alice-box", speed=5000.0)
        ids["b_slow"] = add_client(tx, bob, "bob-laptop", speed=1234.567)
        ids["b_new"] = add_client(tx, bob, "bob-unmeasured")
        ids["b_off"] = add_client(tx, bob, "bob-off", speed=9000, status="inactive", suspect=True)
        ids["a_job"] = add_job(tx, alice, 'the <big> & "tricky" job', 520)
        ids["b_job"] = add_job(tx, bob, "render frames", 310)
        ids["b_held"] = add_job(tx, bob, "fold proteins", 900, status="held")
        ids["b_done"] = add_job(tx, bob, "count primes", 100, status="finished")
        ids["a_new"] = add_job(tx, alice, "sort things", 50, status="new")
        ids["probe"] = add_job(tx, None, "speed probe", 1, kind="test")
        ids["d_out"] = jsql.checkout(tx, ids["b_job"], ids["a_fast"], 60.0, 15.0, T0 + 10)["stateid"]
        ids["d_probe"] = jsql.checkout(tx, ids["probe"], ids["b_new"], 5.0, 5.0, T0 + 11)["stateid"]
        ids["d_in"] = jsql.checkout(tx, ids["a_job"], ids["b_slow"], 30.0, 15.0, T0 + 12)["stateid"]
        leased = bytes(jsql.committed_state(tx, ids["a_job"])["data"])
        jsql.checkin(tx, ids["d_in"], ids["b_slow"], md.next_state(leased), T0 + 40.5)
        # bob's client just earned, which releases bob's held jobs: the fixture holds this one again
        tx.execute("UPDATE jobs SET status = 'held' WHERE id = ?", (ids["b_held"],))
        return ids

    return db.transact(work)


def parse(data: bytes):
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


# -- validity ----------------------------------------------------------------------------------


def test_report_from_a_real_store_is_valid(db):
    small_market(db)
    for requester in (None, "alice", "bob", "carol"):
        report.schema().assertValid(parse(report.report_bytes(db, requester, now=T0 + 100)))


def test_empty_market_report_is_valid(db):
    doc = parse(report.report_bytes(db, None, now=T0))
    report.schema().assertValid(doc)
    assert doc.xpath("count(/r:report/r:jobs/r:job)", namespaces=NS) == 0


def test_core_paths_carry_the_store_values(db):
    ids = small_market(db)
    doc = parse(report.report_bytes(db, None, now=T0 + 100))
    assert doc.get("generated-at") == "2026-11-18T11:08:20.000Z"
    fast = doc.xpath("/r:report/r:clients/r:client[@id=$id]", namespaces=NS, id=str(ids["a_fast"]))[0]
    assert fast.get("status") == "active"
    assert float(fast.findtext("r:speed", namespaces=NS)) == 5000.0
    assert fast.find("r:speed", NS).get("measured-at") == "2026-11-18T11:06:41.000Z"
    assert fast.findtext("r:suspect", namespaces=NS) == "false"
    slow = doc.xpath("//r:client[@id=$id]/r:speed", namespaces=NS, id=str(ids["b_slow"]))[0]
    assert float(slow.text) == 1234.567  # repr round-trips the float exactly
    off = doc.xpath("//r:client[@id=$id]", namespaces=NS, id=str(ids["b_off"]))[0]
    assert (off.get("status"), off.findtext("r:suspect", namespaces=NS)) == ("inactive", "true")
    assert doc.xpath("//r:client[@id=$id]/r:speed", namespaces=NS, id=str(ids["b_new"])) == []

    job = doc.xpath("/r:report/r:jobs/r:job[@id=$id]", namespaces=NS, id=str(ids["a_job"]))[0]
    assert job.get("status") == "ready"
    assert job.findtext("r:name", namespaces=NS) == 'the <big> & "tricky" job'
    assert job.findtext("r:price", namespaces=NS) == "5.20"
    assert job.findtext("r:executed-seconds", namespaces=NS) == "28.500"
    assert job.findtext("r:slices", namespaces=NS) == "1"
    assert job.findtext("r:finished", namespaces=NS) == "false"
    statuses = {j.get("id"): j.get("status") for j in doc.iterfind("r:jobs/r:job", NS)}
    assert statuses[str(ids["b_job"])] == "running"
    assert statuses[str(ids["b_held"])] == "held"
    assert statuses[str(ids["b_done"])] == "finished"
    assert statuses[str(ids["a_new"])] == "new"
    done = doc.xpath("//r:job[@id=$id]/r:finished", namespaces=NS, id=str(ids["b_done"]))[0]
    assert done.text == "true"

    out = doc.xpath("/r:report/r:dispatches/r:dispatch[@id=$id]", namespaces=NS, id=str(ids["d_out"]))[0]
    assert (out.get("job"), out.get("client"), out.get("status")) == (str(ids["b_job"]), str(ids["a_fast"]), "out")
    assert out.findtext("r:checked-out", namespaces=NS) == "2026-11-18T11:06:50.000Z"
    assert out.findtext("r:deadline", namespaces=NS) == "2026-11-18T11:08:05.000Z"
    assert out.find("r:checked-in", NS) is None
    back = doc.xpath("//r:dispatch[@id=$id]", namespaces=NS, id=str(ids["d_in"]))[0]
    assert back.get("status") == "accepted"
    assert back.findtext("r:checked-in", namespaces=NS) == "2026-11-18T11:07:20.500Z"


def test_speed_probe_jobs_and_their_dispatches_are_left_out(db):
    ids = small_market(db)
    doc = parse(report.report_bytes(db, None, now=T0))
    job_ids = doc.xpath("/r:report/r:jobs/r:job/@id", namespaces=NS)
    assert str(ids["probe"]) not in job_ids
    assert str(ids["d_probe"]) not in doc.xpath("//r:dispatch/@id", namespaces=NS)
    assert sorted(job_ids, key=int) == sorted(str(ids[k]) for k in ("a_job", "b_job", "b_held", "b_done", "a_new"))


def test_latest_speed_measurement_wins(db):
    def work(tx):
        a = add_account(tx, "alice")
        c = add_client(tx, a, "box", speed=100.0)
        csql.record_speed(tx, c, 4000, 2.0, T0 + 50)  # 2000 ops/s, later
        csql.record_speed(tx, c, 100, 1.0, T0 + 20)  # older, recorded after
        return c

    c = db.transact(work)
    doc = parse(report.report_bytes(db, None, now=T0))
    speed = doc.xpath("//r:client[@id=$id]/r:speed", namespaces=NS, id=str(c))[0]
    assert float(speed.text) == 2000.0
    assert speed.get("measured-at") == "2026-11-18T11:07:30.000Z"


def test_names_with_characters_xml_cannot_carry_still_give_a_valid_report(db):
    def work(tx):
        a = add_account(tx, "alice")
        # a name stored before job names were checked (the store now refuses these characters)
        job_id = add_job(tx, a, "plain", 5)
        tx.execute("UPDATE jobs SET name = ? WHERE id = ?", ("bell\x07 and nul\x00 and form\x0cfeed", job_id))

    db.transact(work)
    doc = parse(report.report_bytes(db, None, now=T0))
    report.schema().assertValid(doc)
    name = doc.findtext("r:jobs/r:job/r:name", namespaces=NS)
    assert name == "bell\ufffd and nul\ufffd and form\ufffdfeed"


def test_batches_cover_every_row_exactly_once(db):
    def work(tx):
        a = add_account(tx, "alice")
        for i in range(7):
            add_client(tx, a, f"c{i}", speed=10.0 * (i + 1))
            add_job(tx, a, f"j{i}", 10 + i)

    db.transact(work)
    out = io.BytesIO()
    counts = report.write_report(db, out, None, now=T0, batch=3)
    doc = parse(out.getvalue())
    report.schema().assertValid(doc)
    assert (counts.clients, counts.jobs) == (7, 7)
    assert [j.get("id") for j in doc.iterfind("r:jobs/r:job", NS)] == [str(i) for i in range(1, 8)]
    assert len(doc.findall("r:clients/r:client", NS)) == 7


# -- privacy (spec 5f ii) ----------------------------------------------------------------------


def _owners(doc):
    return set(doc.xpath("//@owner", namespaces=NS))


def test_anonymous_report_links_nothing_to_any_owner(db):
    small_market(db)
    data = report.report_bytes(db, None, now=T0)
    doc = parse(data)
    assert _owners(doc) == set()
    assert doc.get("requester") is None
    assert doc.xpath("//r:client/r:name", namespaces=NS) == []
    for secret in (b"alice", b"bob", b"carol", b"example.org"):
        assert secret not in data


def test_requester_sees_owner_links_only_on_own_jobs_and_clients(db):
    ids = small_market(db)
    doc = parse(report.report_bytes(db, "bob", now=T0))
    assert _owners(doc) == {"bob"}
    owned_jobs = set(doc.xpath("//r:job[@owner]/@id", namespaces=NS))
    owned_clients = set(doc.xpath("//r:client[@owner]/@id", namespaces=NS))
    assert owned_jobs == {str(ids[k]) for k in ("b_job", "b_held", "b_done")}
    assert owned_clients == {str(ids[k]) for k in ("b_slow", "b_new", "b_off")}
    assert sorted(doc.xpath("//r:client/r:name/text()", namespaces=NS)) == ["bob-laptop", "bob-off", "bob-unmeasured"]


def test_another_accounts_owner_never_appears(db):
    small_market(db)
    data = report.report_bytes(db, "alice", now=T0)
    assert b"bob" not in data and b"carol" not in data
    assert _owners(parse(data)) == {"alice"}
    nobody = report.report_bytes(db, "carol", now=T0)
    assert _owners(parse(nobody)) == set()  # carol owns nothing
    assert b"alice" not in nobody and b"bob" not in nobody


def test_unknown_requester_is_refused_before_anything_is_written(db):
    from market.core.errors import NotFound

    out = io.BytesIO()
    with pytest.raises(NotFound):
        report.write_report(db, out, "mallory")
    assert out.getvalue() == b""


# -- the command (wired by market.cli as ``market report``) -------------------------------------


def test_report_command_writes_a_valid_file(db, db_url, tmp_path, capsys):
    small_market(db)
    target = tmp_path / "report.xml"
    assert report.main(["-o", str(target), "--as", "alice"], db_url) == 0
    doc = etree.parse(str(target))
    report.schema().assertValid(doc)
    assert _owners(doc.getroot()) == {"alice"}
    assert "wrote" in capsys.readouterr().err
    assert not (tmp_path / "report.xml.partial").exists()


def test_report_command_writes_standard_output_by_default(db, db_url, capsysbinary):
    small_market(db)
    assert report.main([], db_url) == 0
    doc = parse(capsysbinary.readouterr().out)
    report.schema().assertValid(doc)
    assert _owners(doc) == set()


def test_report_command_refuses_unknown_account_in_one_line(db, db_url, tmp_path, capsys):
    target = tmp_path / "report.xml"
    assert report.main(["-o", str(target), "--as", "mallory"], db_url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mallory" in err
    assert not target.exists() and not (tmp_path / "report.xml.partial").exists()


def test_report_command_rejects_bad_usage(db_url, capsys):
    assert report.main(["--bogus"], db_url) == 2


def test_utc_times_are_xsd_datetimes():
    assert report.utc(0) == "1970-01-01T00:00:00.000Z"
    assert report.utc(1.9999) == "1970-01-01T00:00:01.999Z"
    assert report.utc(T0 + 0.25) == "2026-11-18T11:06:40.250Z"


def test_each_row_is_on_its_own_indented_line(db):
    small_market(db)
    lines = report.report_bytes(db, "bob", now=T0 + 100).decode().splitlines()
    jobs = [line for line in lines if line.startswith("    <job ")]
    assert len(jobs) == 5 and all(line.endswith("</job>") for line in jobs)
    assert any(line.startswith("    <client ") for line in lines)
    assert any(line.startswith("    <dispatch ") for line in lines)
    assert "  <jobs>" in lines and "  </jobs>" in lines
    report.schema().assertValid(parse("\n".join(lines).encode()))


def test_a_job_ended_by_a_failure_reads_failed_with_its_reason_and_keeps_its_status(db):
    ids = small_market(db)
    db.transact(lambda tx: tx.execute("UPDATE jobs SET outcome = 'memory' WHERE id = ?", (ids["b_done"],)))
    doc = parse(report.report_bytes(db, None, now=T0 + 100))
    report.schema().assertValid(doc)
    done = doc.xpath("//r:job[@id=$id]", namespaces=NS, id=str(ids["b_done"]))[0]
    assert (done.get("status"), done.get("state")) == ("finished", "failed")
    assert "out of memory" in done.get("reason")
    held = doc.xpath("//r:job[@id=$id]", namespaces=NS, id=str(ids["b_held"]))[0]
    assert (held.get("state"), "below the cost of one slice" in held.get("reason")) == ("held", True)
