"""The standalone quote tool: the rule, the streaming XPath reader and the command."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote import cli, reader, rule

ROOT = Path(__file__).resolve().parent.parent
NS = "urn:market:report:1"


def make_report(clients=(), jobs=(), dispatches=0, extra="") -> bytes:
    """A report by hand. clients: (status, suspect, speed or None); jobs: (status, 'price')."""
    parts = [
        f'<?xml version="1.0"?>\n<report xmlns="{NS}" version="1" generated-at="2026-11-22T10:00:00Z">',
        "<clients>",
    ]
    for i, (status, suspect, speed) in enumerate(clients, 1):
        s = "" if speed is None else f'<speed measured-at="2026-11-22T09:00:00Z">{speed!r}</speed>'
        parts.append(
            f'<client id="{i}" status="{status}">{s}<sandbox-level>bwrap</sandbox-level>'
            f"<suspect>{'true' if suspect else 'false'}</suspect></client>"
        )
    parts.append("</clients><jobs>")
    for i, (status, price) in enumerate(jobs, 1):
        parts.append(
            f'<job id="{i}" status="{status}" kind="job"><name>j{i}</name><price>{price}</price>'
            f"<executed-seconds>0.000</executed-seconds><slices>0</slices>"
            f"<finished>{'true' if status == 'finished' else 'false'}</finished></job>"
        )
    parts.append("</jobs><dispatches>")
    for i in range(1, dispatches + 1):
        parts.append(
            f'<dispatch id="{i}" job="1" client="1" status="out"><checked-out>2026-11-22T09:00:00Z'
            f"</checked-out><deadline>2026-11-22T09:01:00Z</deadline></dispatch>"
        )
    parts.append(f"</dispatches>{extra}</report>")
    return "".join(parts).encode()


def write(tmp_path, data: bytes, name="report.xml") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- the rule on plain values --------------------------------------------------------------------


def test_nth_highest_price_plus_one_cent():
    q = rule.quote([50.0, 40.0, 30.0], Counter({900: 1, 500: 2, 100: 3}), 35.0)
    assert (q.n, q.nth_price_cents, q.price_cents) == (2, 500, 501)


def test_ties_at_the_nth_price_still_need_one_cent_more():
    # two jobs at 5.00 hold ranks 1 and 2; a new 5.00 job would be third, behind both older ones
    q = rule.quote([10.0, 10.0], Counter({500: 2}), 10.0)
    assert q.price_cents == 501


def test_fewer_competitors_than_fast_clients_costs_the_minimum_price():
    q = rule.quote([9.0, 8.0, 7.0], Counter({700: 2}), 7.0)
    assert (q.n, q.nth_price_cents, q.price_cents) == (3, None, rule.MIN_PRICE_CENTS)


def test_no_client_fast_enough_is_not_possible():
    q = rule.quote([9.0, 8.0], Counter({700: 2}), 9.5)
    assert not q.possible and q.n == 0 and q.price_cents is None


@pytest.mark.parametrize(
    "speed, prices, expected",
    [
        (450, None, "9.01"),
        (400, None, "5.21"),
        (100, None, "3.01"),
        (50, ["9.00", "5.20"], "0.01"),
        (600, None, "NotPossible"),
    ],
)
def test_the_examples_in_docs_quote_md(tmp_path, capsys, speed, prices, expected):
    clients = [("active", False, s) for s in (500.0, 400.0, 400.0, 100.0)]
    jobs = [("ready", p) for p in (prices or ["9.00", "5.20", "5.20", "3.00"])]
    assert run([write(tmp_path, make_report(clients, jobs)), str(speed)], capsys) == (0, expected + "\n", "")


def test_speed_equal_to_a_client_counts():
    assert rule.fast_enough([10.0, 9.999], 10.0) == 1


def test_nan_speed_never_counts():
    assert rule.fast_enough([float("nan")], 1.0) == 0


@settings(max_examples=300, deadline=None)
@given(
    speeds=st.lists(st.floats(min_value=1, max_value=1000, allow_nan=False), max_size=12),
    prices=st.lists(st.integers(min_value=1, max_value=40), max_size=25),
    want=st.floats(min_value=1, max_value=1000, allow_nan=False),
)
def test_rule_agrees_with_the_matcher(speeds, prices, want):
    """Quoted price wins a client >= want in the matcher's order; one cent less does not."""
    from market.core.matcher import PooledClient, ReadyJob, match

    q = rule.quote(speeds, Counter(prices), want)
    clients = [PooledClient(i, s, 0.0) for i, s in enumerate(speeds)]
    jobs = [ReadyJob(i, p, float(i)) for i, p in enumerate(prices)]

    def client_for(price):
        new = ReadyJob(len(prices), price, float(len(prices)))  # the youngest job
        got = {a.job.id: a.client for a in match(clients, jobs + [new])}
        return got.get(new.id)

    if not q.possible:
        assert all(s < want for s in speeds)
        return
    won = client_for(q.price_cents)
    assert won is not None and won.speed >= want
    if q.price_cents > rule.MIN_PRICE_CENTS and q.nth_price_cents is not None:
        lost = client_for(q.price_cents - 1)
        assert lost is None or lost.speed < want


# -- the reader ----------------------------------------------------------------------------------


def test_reader_counts_only_active_non_suspect_measured_clients_and_competing_jobs(tmp_path):
    data = make_report(
        clients=[
            ("active", False, 100.0),
            ("active", True, 500.0),
            ("inactive", False, 900.0),
            ("active", False, None),
            ("active", False, 50.5),
        ],
        jobs=[
            ("ready", "3.00"),
            ("running", "2.00"),
            ("held", "9.00"),
            ("finished", "8.00"),
            ("new", "7.00"),
            ("cancelled", "6.00"),
            ("ready", "3.00"),
        ],
        dispatches=3,
    )
    view = reader.read(write(tmp_path, data))
    assert sorted(view.speeds) == [50.5, 100.0]
    assert view.price_counts == Counter({300: 2, 200: 1})
    assert (view.clients, view.jobs, view.dispatches, view.competing) == (5, 7, 3, 3)
    assert view.generated_at == "2026-11-22T10:00:00Z"


def test_reader_streams_across_many_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "BLOCK", 97)  # every element split across feeds
    clients = [("active", i % 7 == 0, float(i)) for i in range(1, 301)]
    jobs = [(("ready", "running", "held", "finished")[i % 4], f"{i % 13}.{i % 100:02d}") for i in range(1, 801)]
    view = reader.read(write(tmp_path, make_report(clients, jobs, dispatches=50)))
    assert sorted(view.speeds) == sorted(float(i) for i in range(1, 301) if i % 7 != 0)
    expected = Counter((i % 13) * 100 + i % 100 for i in range(1, 801) if i % 4 in (0, 1))
    assert view.price_counts == expected
    assert (view.clients, view.jobs, view.dispatches) == (300, 800, 50)


def test_reader_reads_the_report_the_market_writes(tmp_path):
    """Round trip through the real writer's output format on a tiny store."""
    from market import report
    from market.store import Database, upgrade
    from tests.test_report import T0, add_account, add_client, add_job

    db = Database(f"sqlite:{tmp_path}/m.sqlite")
    upgrade(db)

    def work(tx):
        a = add_account(tx, "alice")
        add_client(tx, a, "fast", speed=2000.0)
        add_client(tx, a, "slow", speed=10.0)
        add_job(tx, a, "one", 250)
        add_job(tx, a, "two", 125, status="held")

    db.transact(work)
    path = tmp_path / "r.xml"
    report.write_report(db, str(path), None, now=T0)
    view = reader.read(str(path))
    assert sorted(view.speeds) == [10.0, 2000.0]
    assert view.price_counts == Counter({250: 1})


def test_only_the_reports_own_sections_count_when_unvalidated(tmp_path):
    nested = (
        '<clients><client id="9" status="active"><speed measured-at="2026-11-22T09:00:00Z">1e9</speed>'
        "<sandbox-level>x</sandbox-level><suspect>false</suspect></client></clients>"
    )
    data = make_report([("active", False, 10.0)], [("ready", "1.00")]).replace(
        b"<finished>", nested.encode() + b"<finished>", 1
    )
    view = reader.read(write(tmp_path, data), validate=False)
    assert view.speeds == [10.0] and view.clients == 1


def test_external_entities_are_never_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("99.99")
    data = (
        make_report([("active", False, 10.0)], [("ready", "1.00")])
        .replace(b"<report", f'<!DOCTYPE report [<!ENTITY x SYSTEM "file://{secret}">]>\n<report'.encode(), 1)
        .replace(b"<price>1.00</price>", b"<price>&x;</price>")
    )
    with pytest.raises(reader.ReportError):
        reader.read(write(tmp_path, data))
    with pytest.raises(reader.ReportError):
        reader.read(write(tmp_path, data), validate=False)


# -- the command, in process -----------------------------------------------------------------------


def test_prints_the_price(tmp_path, capsys):
    path = write(
        tmp_path,
        make_report(
            [("active", False, 100.0), ("active", False, 80.0)],
            [("ready", "5.20"), ("running", "4.00"), ("ready", "1.00")],
        ),
    )
    assert run([path, "80"], capsys) == (0, "4.01\n", "")
    assert run([path, "100"], capsys) == (0, "5.21\n", "")
    assert run([path, "1e2"], capsys) == (0, "5.21\n", "")


def test_prints_not_possible_when_no_client_is_fast_enough(tmp_path, capsys):
    path = write(tmp_path, make_report([("active", False, 100.0)], [("ready", "5.20")]))
    assert run([path, "100.5"], capsys) == (0, "NotPossible\n", "")


def test_prints_the_minimum_price_when_few_jobs_compete(tmp_path, capsys):
    path = write(tmp_path, make_report([("active", False, 100.0)] * 3, [("ready", "5.20"), ("held", "9.00")]))
    assert run([path, "50"], capsys) == (0, "0.01\n", "")


def test_json_gives_n_price_and_counts(tmp_path, capsys):
    path = write(
        tmp_path,
        make_report(
            [("active", False, 100.0), ("active", True, 300.0)], [("ready", "5.20"), ("finished", "1.00")], dispatches=2
        ),
    )
    code, out, err = run([path, "90", "--json"], capsys)
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "speed": 90.0,
        "possible": True,
        "n": 1,
        "price": "5.21",
        "nth_price": "5.20",
        "competing_jobs": 1,
        "jobs": 2,
        "clients": 2,
        "eligible_clients": 1,
        "dispatches": 2,
        "generated_at": "2026-11-22T10:00:00Z",
    }
    code, out, _ = run([path, "1000", "--json"], capsys)
    assert json.loads(out)["possible"] is False and json.loads(out)["price"] is None


def test_reads_standard_input(tmp_path, capsys, monkeypatch):
    data = make_report([("active", False, 100.0)], [("ready", "2.50")])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert run(["-", "10"], capsys) == (0, "2.51\n", "")


@pytest.mark.parametrize("speed", ["0", "-3", "fast", "nan", "inf", ""])
def test_speed_must_be_a_positive_number(tmp_path, capsys, speed):
    path = write(tmp_path, make_report())
    code, out, err = run([path, speed], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "SPEED" in err


@pytest.mark.parametrize(
    "data, word",
    [
        (b"", "XML"),
        (b"just text", "XML"),
        (b"<report xmlns='urn:market:report:1'><clients>", "XML"),
        (b"<report/>", "report"),
        (b"<report xmlns='urn:market:report:1' version='1'/>", "report"),
    ],
)
def test_unusable_reports_exit_2_with_one_line(tmp_path, capsys, data, word):
    path = write(tmp_path, data)
    code, out, err = run([path, "10"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and word in err


def test_invalid_report_is_refused_unless_validation_is_skipped(tmp_path, capsys):
    # price with three decimals: not credits; extra unknown element: not in the schema
    bad = make_report([("active", False, 100.0)], [("ready", "5.20")]).replace(
        b"<sandbox-level>", b"<colour>blue</colour><sandbox-level>"
    )
    path = write(tmp_path, bad)
    code, out, err = run([path, "10"], capsys)
    assert (code, out) == (2, "") and "not a valid market report" in err and err.count("\n") == 1
    assert run([path, "10", "--no-validate"], capsys) == (0, "5.21\n", "")


def test_unvalidated_garbage_prices_are_still_refused(tmp_path, capsys):
    path = write(tmp_path, make_report([("active", False, 100.0)], [("ready", "five")]))
    code, _, err = run([path, "10", "--no-validate"], capsys)
    assert code == 2 and "price" in err and err.count("\n") == 1


def test_truncated_report_is_called_not_well_formed(tmp_path, capsys):
    data = make_report([("active", False, 100.0)] * 20, [("ready", "5.20")] * 20)
    path = write(tmp_path, data[: len(data) // 2])
    code, _, err = run([path, "10"], capsys)
    assert code == 2 and "not well-formed XML" in err


@pytest.mark.parametrize("validate", [[], ["--no-validate"]])
@pytest.mark.parametrize(
    "damage",
    [
        (b"</name>", b"</nam>"),  # mismatched end tag mid-document
        (b"<name>j2", b"<name>j&2"),  # bare ampersand
        (b"<name>j3", b"<name>j<3"),  # bare less-than
        (b"</report>", b"</report><report/>"),  # a second root
    ],
)
def test_malformed_anywhere_is_refused_with_or_without_validation(tmp_path, capsys, validate, damage):
    # regression: lxml 6.1 with resolve_entities=False + schema= let these pass silently
    data = make_report([("active", False, 100.0)] * 3, [("ready", "5.20")] * 3).replace(*damage, 1)
    code, out, err = run([write(tmp_path, data), "10", *validate], capsys)
    assert (code, out) == (2, "") and "not well-formed" in err and err.count("\n") == 1


def test_a_doctype_is_refused(tmp_path, capsys):
    data = make_report([("active", False, 1.0)], [("ready", "1.00")]).replace(
        b"<report", b"<!DOCTYPE report [<!ENTITY e 'x'>]>\n<report", 1
    )
    for extra in ([], ["--no-validate"]):
        code, _, err = run([write(tmp_path, data), "1", *extra], capsys)
        assert code == 2 and "DOCTYPE" in err


def test_entity_expansion_bombs_are_stopped(tmp_path, capsys):
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    data = (
        f'<?xml version="1.0"?><!DOCTYPE report [<!ENTITY e0 "lol">{entities}]><report xmlns="{NS}">&e9;</report>'
    ).encode()
    code, _, err = run([write(tmp_path, data), "1", "--no-validate"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_missing_file(tmp_path, capsys):
    code, out, err = run([str(tmp_path / "nope.xml"), "10"], capsys)
    assert (code, out) == (2, "") and "cannot read" in err and err.count("\n") == 1


def test_wrong_number_of_arguments_is_one_line(capsys):
    code, out, err = run(["only-one"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1


# -- the command, as a real process ----------------------------------------------------------------


def _process(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "quote", *args], input=stdin, capture_output=True, cwd=str(ROOT), env=env, timeout=60
    )


def test_process_prints_price_and_exits_0(tmp_path):
    path = write(tmp_path, make_report([("active", False, 100.0)], [("ready", "5.20")]))
    done = _process(path, "100")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"5.21\n", b"")
    done = _process(path, "101")
    assert (done.returncode, done.stdout) == (0, b"NotPossible\n")


def test_process_errors_exit_2_with_one_line_on_stderr(tmp_path):
    not_xml = write(tmp_path, b"%PDF-1.4", "r.pdf")
    for args in ([str(tmp_path / "missing.xml"), "5"], [not_xml, "5"], [not_xml, "-1"], []):
        done = _process(*args)
        assert done.returncode == 2 and done.stdout == b"", args
        assert done.stderr.count(b"\n") == 1 and done.stderr.startswith(b"quote: "), args


def test_process_reads_stdin():
    done = _process("-", "1", stdin=make_report([("active", False, 5.0)], [("ready", "0.07")]))
    assert (done.returncode, done.stdout) == (0, b"0.08\n")


# -- standalone ------------------------------------------------------------------------------------


def test_quote_package_imports_nothing_from_market():
    for path in (ROOT / "quote").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "market" or n.startswith("market.") for n in names), path


def test_shipped_schema_is_byte_identical_to_the_markets():
    assert (ROOT / "quote" / "report.xsd").read_bytes() == (ROOT / "schema" / "report.xsd").read_bytes()
