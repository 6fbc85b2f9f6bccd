"""The corpus of real-world-style job modules (tests/corpus/): each case is either refused at
submission with a line and a reason, or accepted and, frozen at every opportunity (budget=1, state
through bytes at each hop), gives exactly the native answer without hanging (10x native + 1 s)."""

import concurrent.futures
import os

import pytest

from tests.corpus import PENDING, harness

MODULES = harness.modules()


def case_ids():
    out = []
    for path in MODULES:
        seen = {}
        for entry, _args in harness.declared_cases(path.read_text()):
            n = seen.get(entry, 0)
            seen[entry] = n + 1
            out.append((path.stem, entry, n))
    return out


CASES = case_ids()


def case_name(module, entry, n):
    return "%s:%s" % (module, entry) + ("#%d" % n if n else "")


@pytest.fixture(scope="module")
def records(request):
    """All modules, each in its own process (a hang kills only that child)."""
    # the modules' CASES are read here, in one thread: CPython 3.11 keeps the AST constructor's
    # recursion depth per interpreter, so two threads parsing at once can fail with "AST
    # constructor recursion depth mismatch" (python/cpython gh-106905); the threads only wait
    # for the child processes
    cases = {path: harness.declared_cases(path.read_text()) for path in MODULES}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = dict(zip(MODULES, pool.map(lambda path: harness.run_in_child(path, cases=cases[path]), MODULES)))
    by_case = {}
    for path, recs in done.items():
        seen = {}
        for rec in recs:
            n = seen.get(rec["entry"], 0)
            seen[rec["entry"]] = n + 1
            by_case[(path.stem, rec["entry"], n)] = rec
    yield by_case
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(summary(by_case)))


def summary(by_case):
    statuses = {}
    for rec in by_case.values():
        statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
    modules = {}
    for (module, _entry, _n), rec in by_case.items():
        modules[module] = modules.get(module, True) and rec["status"] != "refused"
    lines = [
        "corpus: %d modules, %d accepted; %d cases: %s"
        % (
            len(modules),
            sum(modules.values()),
            len(by_case),
            ", ".join("%s %d" % kv for kv in sorted(statuses.items())),
        )
    ]
    for (module, entry, n), rec in sorted(by_case.items()):
        if rec["status"] == "refused":
            line, reason = rec["problems"][0]
            lines.append("  refused %s line %s: %s" % (case_name(module, entry, n), line, reason[:100]))
        elif rec["status"] != "ok":
            lines.append("  %s %s" % (rec["status"].upper(), case_name(module, entry, n)))
    return lines


@pytest.mark.parametrize("module,entry,n", CASES, ids=[case_name(*c) for c in CASES])
def test_case_is_refused_clearly_or_equals_native_frozen_at_every_back_edge(records, module, entry, n):
    rec = records[(module, entry, n)]
    if case_name(module, entry, n) in PENDING or "%s:%s" % (module, entry) in PENDING:
        # a known gap (tests/corpus/__init__.py): it may fail to freeze, with a clear error — never a wrong
        # answer, a hang or a crash; once it runs exactly it must leave PENDING
        assert rec["status"] == "cannot-freeze" and "cannot freeze" in str(rec.get("error")), rec
        return
    if rec["status"] == "refused":
        assert rec["problems"], rec
        for line, reason in rec["problems"]:
            assert isinstance(line, int) and line > 0 and len(reason) > 10, rec["problems"]
        return
    assert rec["status"] == "ok", rec


def test_corpus_has_at_least_forty_modules_each_with_a_case():
    assert len(MODULES) >= 40
    assert {module for module, _e, _n in CASES} == {p.stem for p in MODULES}


def test_pending_names_are_real_cases():
    names = {case_name(*c) for c in CASES} | {"%s:%s" % (m, e) for m, e, _n in CASES}
    names.add("programs:mutation_under_enumerate_zip_items")  # tests/test_tasklet_programs.py
    assert PENDING <= names, PENDING - names
