"""quote's split validation (quote/split.py): the parts give exactly the one-pass answer or error.

Small reports are split with a tiny part size (``split_part_bytes``) or with explicit cut targets
(``split.plan``); ``split.run`` returns None when it falls back, so each test can tell whether the
split itself answered.
"""

from __future__ import annotations

import functools
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quote import cli, reader, split

NS = "urn:market:report:1"
GENERATED = "2026-12-01T10:00:00Z"
JOB_STATUSES = ("ready", "running", "held", "finished", "new", "cancelled")


def report(
    clients=(),
    jobs=(),
    dispatches=0,
    head='<?xml version="1.0" encoding="UTF-8"?>\n',
    root_attrs=f'xmlns="{NS}"',
    job_extra="",
    between_jobs="",
    tail="",
) -> bytes:
    """A report. clients: (status, suspect, speed text or None); jobs: (status, 'price')."""
    out = [head, f'<report {root_attrs} version="1" generated-at="{GENERATED}">\n<clients>']
    for i, (status, suspect, speed) in enumerate(clients, 1):
        s = "" if speed is None else f'<speed measured-at="2026-11-30T09:00:00.5Z">{speed}</speed>'
        out.append(
            f'<client id="{i}" status="{status}">{s}<sandbox-level>bwrap</sandbox-level>'
            f"<suspect>{'true' if suspect else 'false'}</suspect></client>\n"
        )
    out.append("</clients>\n<jobs>")
    for i, (status, price) in enumerate(jobs, 1):
        out.append(
            f'<job id="{i}" status="{status}" kind="job"{job_extra}><name>job {i}</name>'
            f"<price>{price}</price><executed-seconds>1.500</executed-seconds><slices>2</slices>"
            f"<finished>{'true' if status == 'finished' else 'false'}</finished></job>\n"
        )
        if i == len(jobs) // 2:
            out.append(between_jobs)
    out.append("</jobs>\n<dispatches>")
    for i in range(1, dispatches + 1):
        out.append(
            f'<dispatch id="{i}" job="1" client="1" status="accepted"><checked-out>2026-11-30T09:00:00Z'
            f"</checked-out><deadline>2026-11-30T09:01:15Z</deadline>"
            f"<checked-in>2026-11-30T09:01:01.25Z</checked-in></dispatch>\n"
        )
    out.append(f"</dispatches>\n</report>\n{tail}")
    return "".join(out).encode()


def market(n_clients=40, n_jobs=120, dispatches=30, **kw) -> bytes:
    clients = [
        (("active", "inactive")[i % 5 == 0], i % 7 == 0, None if i % 11 == 0 else f"{i * 1000.5}")
        for i in range(1, n_clients + 1)
    ]
    jobs = [(JOB_STATUSES[i % 6], f"{i % 17}.{i * 7 % 100:02d}") for i in range(1, n_jobs + 1)]
    return report(clients, jobs, dispatches, **kw)


def write(tmp_path, data: bytes, name="report.xml") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def same(a: reader.MarketView, b: reader.MarketView) -> bool:
    return (sorted(a.speeds), a.price_counts, a.clients, a.jobs, a.dispatches, a.generated_at) == (
        sorted(b.speeds),
        b.price_counts,
        b.clients,
        b.jobs,
        b.dispatches,
        b.generated_at,
    )


def evenly(path: str, parts: int):
    size = os.path.getsize(path)
    return split.plan(path, [size * i // parts for i in range(1, parts)])


def one_pass_error(path: str) -> str:
    with pytest.raises(reader.ReportError) as info:
        reader.read_one_pass(path)
    return f"{info.value.kind}: {info.value}"


def split_error(path: str, processes=2, part_bytes=2000) -> str:
    with pytest.raises(reader.ReportError) as info:
        reader.read(path, processes=processes, split_part_bytes=part_bytes)
    return f"{info.value.kind}: {info.value}"


# -- the split answers, and answers exactly what one pass answers -----------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    clients=st.lists(
        st.tuples(
            st.sampled_from(("active", "inactive")),
            st.booleans(),
            st.one_of(st.none(), st.sampled_from(("0", "12.5", "3000000", "1e7", "INF"))),
        ),
        max_size=30,
    ),
    jobs=st.lists(
        st.tuples(st.sampled_from(JOB_STATUSES), st.sampled_from(("0.01", "5.20", "5.21", "19.99"))), max_size=60
    ),
    dispatches=st.integers(min_value=0, max_value=25),
    fractions=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6),
    processes=st.integers(min_value=2, max_value=3),
)
def test_any_cuts_give_the_one_pass_answer(tmp_path, clients, jobs, dispatches, fractions, processes):
    data = report(clients, jobs, dispatches)
    path = write(tmp_path, data)
    targets = sorted(int(f * len(data)) for f in fractions)
    pieces = split.plan(path, targets)
    expected = reader.read_one_pass(path)
    last_tag = max(data.rfind(b"</client>"), data.rfind(b"</job>"), data.rfind(b"</dispatch>"))
    if targets[0] > last_tag:  # no child ends after any target (or there is no child at all)
        assert pieces is None
        return
    assert pieces is not None and pieces[0].start == 0 and pieces[-1].end == len(data)
    assert all(a.end == b.start and a.closes == b.opens for a, b in zip(pieces, pieces[1:]))
    view = split.run(path, pieces, processes)
    assert view is not None, "a valid report cut at end tags must not fall back"
    assert same(view, expected)


def test_cuts_land_in_every_section_and_after_an_end_tag(tmp_path):
    data = market(n_clients=60, n_jobs=60, dispatches=60)
    path = write(tmp_path, data)
    pieces = evenly(path, 12)
    assert {p.closes for p in pieces[:-1]} == {"clients", "jobs", "dispatches"}
    for p in pieces[:-1]:
        end_tag = {"clients": b"</client>", "jobs": b"</job>", "dispatches": b"</dispatch>"}[p.closes]
        assert data[: p.end].endswith(end_tag)
    view = split.run(path, pieces, 2)
    assert view is not None and same(view, reader.read_one_pass(path))
    assert view.generated_at == GENERATED  # the real root's, not the synthetic one's


def test_read_splits_with_a_small_part_size_and_gives_the_same_quote(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, market(n_clients=50, n_jobs=400, dispatches=50))
    expected = reader.read_one_pass(path)
    for processes in (2, 3):
        assert same(reader.read(path, processes=processes, split_part_bytes=3000), expected)
    # and through the command, with the split forced the same way
    ran = []
    original = split.run
    monkeypatch.setattr(split, "run", lambda *a: ran.append(original(*a)) or ran[-1])
    monkeypatch.setattr(reader, "read", functools.partial(reader.read, processes=2, split_part_bytes=3000))
    assert cli.main([path, "10000", "--json"]) == 0
    assert ran and ran[0] is not None  # the split answered
    out = capsys.readouterr().out
    monkeypatch.undo()
    assert cli.main([path, "10000", "--json"]) == 0
    assert capsys.readouterr().out == out


def test_views_travel_as_json_with_infinite_speeds(tmp_path):
    view = reader.MarketView(
        speeds=[float("inf"), 1.5],
        price_counts=Counter({520: 2}),
        clients=3,
        jobs=4,
        dispatches=5,
        generated_at=GENERATED,
    )
    done, back = split._from_json(split._to_json([0, 3], view))
    assert done == [0, 3] and same(back, view)


def test_small_files_are_not_split(tmp_path):
    path = write(tmp_path, market())
    assert split.read(path, processes=2) is None  # far below two default parts
    assert split.read(path, processes=1, part_bytes=1000) is None  # one process: nothing to gain


# -- errors in any one part: refused, with the one-pass message --------------------------------------


@pytest.mark.parametrize("where", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("damage", ["price", "status", "unknown element", "mismatched tag", "bare ampersand", "root"])
def test_an_error_in_one_part_is_refused_with_the_one_pass_message(tmp_path, where, damage):
    data = market(n_clients=30, n_jobs=200, dispatches=30)
    # damage the first job/dispatch whose start tag comes after `where` of the file
    at = data.index(b"<job " if where < 0.9 else b"<dispatch ", int(len(data) * where))
    end = data.index(b"\n", at)
    element = data[at:end]
    broken = {
        "price": lambda e: e.replace(b"</price>", b"0</price>", 1).replace(b"<checked-in>2026", b"<checked-in>26", 1),
        "status": lambda e: e.replace(b'status="', b'status="x', 1),
        "unknown element": lambda e: e.replace(b"</", b"<colour>blue</colour></", 1),
        "mismatched tag": lambda e: e.replace(b"</name>", b"</nam>", 1).replace(b"</checked-out>", b"</checked>", 1),
        "bare ampersand": lambda e: e.replace(b"<name>job", b"<name>&job", 1).replace(b"<deadline>", b"<deadline>&", 1),
        "root": lambda e: e,
    }[damage](element)
    assert broken != element or damage == "root"
    damaged = data[:at] + broken + data[end:]
    if damage == "root":  # not the report's root element: only the first part sees it
        damaged = damaged.replace(b"<report ", b"<rapport ").replace(b"</report>", b"</rapport>")
    path = write(tmp_path, damaged)
    pieces = evenly(path, 4)
    assert pieces is not None and split.run(path, pieces, 2) is None
    expected = one_pass_error(path)
    assert split_error(path, part_bytes=len(data) // 4) == expected
    assert expected.startswith("not-xml" if damage in ("mismatched tag", "bare ampersand") else "invalid")
    if damage == "root":
        assert "rapport" in expected


def test_the_command_refuses_an_invalid_part_with_exit_2_and_the_one_pass_line(tmp_path, capsys, monkeypatch):
    data = market(n_clients=30, n_jobs=200, dispatches=30)
    path = write(tmp_path, data.replace(b"<price>3.", b"<price>3.0", 1))
    assert cli.main([path, "10"]) == 2
    one_pass = capsys.readouterr()
    monkeypatch.setattr(reader, "read", functools.partial(reader.read, processes=2, split_part_bytes=2000))
    assert cli.main([path, "10"]) == 2
    assert capsys.readouterr() == one_pass
    assert one_pass.out == "" and one_pass.err.count("\n") == 1 and "not a valid market report" in one_pass.err


def test_a_truncated_report_is_not_well_formed_either_way(tmp_path):
    data = market(n_clients=30, n_jobs=200, dispatches=30)
    path = write(tmp_path, data[: int(len(data) * 0.9)])
    assert split.run(path, evenly(path, 3), 2) is None
    assert split_error(path) == one_pass_error(path)
    assert "not well-formed" in one_pass_error(path)


def test_a_doctype_is_refused_either_way(tmp_path):
    path = write(tmp_path, market(head='<?xml version="1.0"?>\n<!DOCTYPE report [<!ENTITY e "x">]>\n'))
    assert split.run(path, evenly(path, 3), 2) is None
    assert split_error(path) == one_pass_error(path)
    assert "DOCTYPE" in one_pass_error(path)


# -- cuts that cannot be vouched for fall back, and still answer ---------------------------------------


def answer_falls_back(path: str, pieces) -> None:
    """The split gives up on these cuts, and read() still answers exactly as one pass does."""
    assert split.run(path, pieces, 2) is None
    expected = reader.read_one_pass(path)
    assert same(reader.read(path, processes=2, split_part_bytes=1500), expected)


@pytest.mark.parametrize(
    "markup",
    [
        "<!-- a comment that says </job> -->",
        "<?note a processing instruction that says </job> ?>",
    ],
)
def test_a_cut_inside_a_comment_or_pi_falls_back(tmp_path, markup):
    data = market(between_jobs=markup)
    path = write(tmp_path, data)
    inside = data.index(markup.encode())
    pieces = split.plan(path, [inside])
    assert pieces is not None and pieces[0].end == data.index(b"</job>", inside) + len(b"</job>")
    answer_falls_back(path, pieces)


def test_a_processing_instruction_anywhere_falls_back_and_a_comment_does_not(tmp_path):
    # every part is read with one PI of quote's own in its prolog (lxml then has one event to
    # report, not one per element); a report with a PI of its own is read in one pass
    for data in (
        market(head='<?xml version="1.0"?>\n<?xml-stylesheet href="r.xsl"?>\n'),
        market(between_jobs="<?note in the jobs?>"),
        market(tail="<?note at the end?>"),
    ):
        path = write(tmp_path, data)
        answer_falls_back(path, evenly(path, 3))
    for data in (
        market(head='<?xml version="1.0"?>\n<!-- a comment -->\n'),
        market(between_jobs="<!-- in the jobs -->"),
        market(tail="<!-- at the end -->"),
    ):
        path = write(tmp_path, data)
        view = split.run(path, evenly(path, 3), 2)
        assert view is not None and same(view, reader.read_one_pass(path))


def test_a_cut_inside_cdata_falls_back(tmp_path):
    data = market().replace(b"<name>job 7</name>", b"<name><![CDATA[job 7 </job> <jobs>]]></name>", 1)
    path = write(tmp_path, data)
    inside = data.index(b"<![CDATA[")
    pieces = split.plan(path, [inside])
    assert pieces[0].end == data.index(b"</job>", inside) + len(b"</job>")
    answer_falls_back(path, pieces)


def test_a_target_inside_an_attribute_value_or_escaped_text_cuts_at_the_next_real_end_tag(tmp_path):
    # '<' cannot occur in an attribute value and escaped markup is not markup: neither is a cut
    data = market().replace(b"<name>job 7</name>", b"<name>job 7 &lt;/job> &lt;/jobs></name>", 1)
    path = write(tmp_path, data)
    for target in (data.index(b'status="', data.index(b'<job id="7"')) + 9, data.index(b"&lt;/job>")):
        pieces = split.plan(path, [target])
        assert pieces[0].end == data.index(b"</job>", target) + len(b"</job>")
        assert data[pieces[0].end - 30 : pieces[0].end].endswith(b"</finished></job>")
        view = split.run(path, pieces, 2)
        assert view is not None and same(view, reader.read_one_pass(path))


@pytest.mark.parametrize(
    "root_attrs",
    [
        f'xmlns="{NS}" xmlns:x="urn:example:other"',  # another prefix in scope at the cut
        f'xmlns="{NS}" xmlns:r="{NS}"',  # even the report's own namespace under a second name
    ],
)
def test_other_namespaces_in_scope_at_the_cut_fall_back(tmp_path, root_attrs):
    path = write(tmp_path, market(root_attrs=root_attrs))
    pieces = evenly(path, 3)
    assert pieces is not None
    answer_falls_back(path, pieces)


def test_a_prefixed_report_is_read_in_one_pass(tmp_path):
    data = market()
    prefixed = (
        data.replace(b"</", b"</r:")
        .replace(b"<", b"<r:")
        .replace(b"<r:/r:", b"</r:")
        .replace(b"<r:?xml", b"<?xml")
        .replace(f'xmlns="{NS}"'.encode(), f'xmlns:r="{NS}"'.encode())
    )
    path = write(tmp_path, prefixed)
    assert reader.read_one_pass(path).jobs == 120  # still a valid report
    assert evenly(path, 3) is None  # no unprefixed end tag to cut after
    assert same(reader.read(path, processes=2, split_part_bytes=1500), reader.read_one_pass(path))


def test_namespaces_declared_on_a_child_are_out_of_scope_at_the_cut(tmp_path):
    path = write(tmp_path, market(job_extra=' xmlns:x="urn:example:other"'))
    pieces = evenly(path, 4)
    view = split.run(path, pieces, 2)
    assert view is not None and same(view, reader.read_one_pass(path))


@pytest.mark.parametrize(
    "head, encoding",
    [
        ('<?xml version="1.0" encoding="ISO-8859-1"?>\n', "latin-1"),
        ('<?xml version="1.0" encoding="US-ASCII"?>\n', "ascii"),
        ('<?xml version="1.1" encoding="UTF-8"?>\n', "utf-8"),
        ("", "utf-16"),
    ],
)
def test_documents_not_plainly_utf8_are_read_in_one_pass(tmp_path, head, encoding):
    data = market(head=head).decode().replace("job 7", "job 7 café" if encoding != "ascii" else "job 7 cafe")
    path = write(tmp_path, data.encode(encoding))
    assert evenly(path, 3) is None
    expected = reader.read_one_pass(path)
    assert expected.jobs == 120
    assert same(reader.read(path, processes=2, split_part_bytes=1500), expected)


@pytest.mark.parametrize(
    "head",
    ["", "\ufeff", '\ufeff<?xml version="1.0"?>\n', "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n"],
)
def test_plain_utf8_documents_are_split(tmp_path, head):
    data = market(head=head).decode().replace("job 7", "job 7 café ✓")
    path = write(tmp_path, data.encode("utf-8"))
    view = split.run(path, evenly(path, 3), 2)
    assert view is not None and same(view, reader.read_one_pass(path))


def test_plain_utf8_recognises_declarations():
    assert split.plain_utf8(b"<report") == 0
    assert split.plain_utf8(b'<?xml version="1.0"?><r/>') == len(b'<?xml version="1.0"?>')
    declaration = b"<?xml version='1.0' encoding='UTF-8' ?>"
    assert split.plain_utf8(b"\xef\xbb\xbf" + declaration + b"\n<r/>") == 3 + len(declaration)
    assert split.plain_utf8(b"\xef\xbb\xbf<report") == 3
    assert split.plain_utf8(b'<?xml version="1.0" encoding="UTF-16"?>') is None
    assert split.plain_utf8(b'<?xml version="1.1"?>') is None
    assert split.plain_utf8(b'<?xml encoding="UTF-8"?>') is None  # not a declaration libxml2 takes
    assert split.plain_utf8(b"\xff\xfe<\x00r\x00") is None
    assert split.plain_utf8(b"<\x00r\x00") is None
    assert split.plain_utf8(b" <report") is None
    assert split.plain_utf8(b"") is None


def test_find_cut_sees_tags_across_its_read_chunks(tmp_path):
    for offset in range(-12, 3):
        data = b"x" * ((1 << 16) + offset) + b"</dispatch>" + b"y" * 100
        path = write(tmp_path, data)
        with open(path, "rb") as f:
            assert split.find_cut(f, 0, len(data)) == (data.index(b"</dispatch>") + 11, "dispatches")
            assert split.find_cut(f, data.index(b"</dispatch>") + 1, len(data)) is None


def test_a_cut_in_an_extension_that_looks_like_a_section_falls_back(tmp_path):
    # a later version's extension section (another namespace, processContents="lax") named and
    # shaped like <dispatches>: valid, and its children must not count as the report's dispatches
    dispatch = (
        b'<dispatch id="9" job="1" client="1" status="out"><checked-out>2026-11-30T09:00:00Z</checked-out>'
        b"<deadline>2026-11-30T09:01:15Z</deadline></dispatch>"
    )
    extension = b'<dispatches xmlns="urn:example:v2">' + dispatch * 20 + b"</dispatches>\n"
    data = market().replace(b"</report>", extension + b"</report>")
    path = write(tmp_path, data)
    assert reader.read_one_pass(path).dispatches == 30
    pieces = split.plan(path, [data.index(extension) + len(extension) // 2])
    assert pieces is not None and pieces[0].closes == "dispatches"
    answer_falls_back(path, pieces)


def test_the_schema_keeps_what_the_split_relies_on():
    """quote/split.py's soundness argument, point 3: if this fails, the split is no longer sound."""
    from lxml import etree

    xs = "{http://www.w3.org/2001/XMLSchema}"
    doc = etree.parse(reader.SCHEMA_FILE)
    for bad in ("key", "keyref", "unique", "anyAttribute"):
        assert not doc.getroot().findall(f".//{xs}{bad}"), bad
    assert not [t for t in doc.iter() if (t.get("type") or "").split(":")[-1] in ("ID", "IDREF", "IDREFS")]
    types = {t.get("name"): t for t in doc.getroot().findall(xs + "complexType")}

    def kids(element):
        return [e for e in element if isinstance(e.tag, str)]  # no comments

    report_seq = kids(types["Report"].find(xs + "sequence"))
    assert [(e.tag, e.get("name"), e.get("type")) for e in report_seq][:3] == [
        (xs + "element", "clients", "r:Clients"),
        (xs + "element", "jobs", "r:Jobs"),
        (xs + "element", "dispatches", "r:Dispatches"),
    ]
    assert [(e.tag, e.get("namespace")) for e in report_seq][3:] == [(xs + "any", "##other")]
    for section, child in (("Clients", "client"), ("Jobs", "job"), ("Dispatches", "dispatch")):
        content = kids(types[section])
        assert [c.tag for c in content] == [xs + "sequence"], section  # and no attributes
        (element,) = kids(content[0])
        assert (element.tag, element.get("name"), element.get("minOccurs"), element.get("maxOccurs")) == (
            xs + "element",
            child,
            "0",
            "unbounded",
        )
    # only <report> may be a document's root element
    assert [e.get("name") for e in doc.getroot().findall(xs + "element")] == ["report"]
