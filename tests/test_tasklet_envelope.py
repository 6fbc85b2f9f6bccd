"""The envelope: tampered, truncated, wrong-version and wrong-source states are
refused with a clear message, before anything of the job runs."""

import struct

import pytest

from market import tasklet
from market.tasklet import envelope as E
from market.tasklet.envelope import EnvelopeError
from tests.jobs.support import source

# Module-level print runs whenever the job module is loaded: a marker that
# shows whether any of the job's code ran.
MARKED = """
MARKER = print("JOB-CODE-RAN")


def count(n):
    total = 0
    for i in range(n):
        total += i
    return total
"""


@pytest.fixture
def frozen_state():
    env = tasklet.start(MARKED, "count", [5000], {})
    out = tasklet.run_slice(env, MARKED, 10, budget=5)
    assert not out.finished
    return out.envelope


def refuse_without_running(data, capsys, src=MARKED, match=None):
    capsys.readouterr()
    with pytest.raises(EnvelopeError, match=match):
        tasklet.run_slice(data, src, 10)
    assert "JOB-CODE-RAN" not in capsys.readouterr().out


def test_header_fields(frozen_state):
    h = tasklet.read_header(frozen_state)
    assert (h.entry, h.seq, h.runtime, h.codec) == ("count", 1, E.RUNTIME_VERSION, "mkt-bin-2")
    assert h.source_sha256 == E.source_hash(MARKED)
    assert h.payload_length == len(frozen_state) - 4 - 2 - 4 - struct.unpack(">I", frozen_state[6:10])[0] - 32


def test_every_single_byte_flip_is_refused(frozen_state, capsys):
    for i in range(len(frozen_state)):
        bad = bytearray(frozen_state)
        bad[i] ^= 0x40
        refuse_without_running(bytes(bad), capsys)


def test_truncated_state_is_refused(frozen_state, capsys):
    for cut in (0, 3, 10, len(frozen_state) // 2, len(frozen_state) - 1):
        refuse_without_running(frozen_state[:cut], capsys, match="truncated|checksum")


def test_wrong_format_version_is_refused(frozen_state, capsys):
    bad = bytearray(frozen_state)
    bad[4:6] = struct.pack(">H", E.FORMAT_VERSION + 1)
    refuse_without_running(bytes(bad), capsys, match="version")


def test_other_runtime_version_is_refused(frozen_state, capsys):
    header, payload = E.open_envelope(frozen_state, MARKED)
    other = E.make_envelope(header._replace(runtime="tasklet-0"), payload)
    refuse_without_running(other, capsys, match="runtime")


def test_state_of_another_source_is_refused(frozen_state, capsys):
    edited = MARKED.replace("total += i", "total += 2 * i")
    refuse_without_running(frozen_state, capsys, src=edited, match="another job source")


def test_not_an_envelope_is_refused(capsys):
    refuse_without_running(b"\x80\x04garbage" * 10, capsys, match="magic")
    refuse_without_running("text", capsys)


def test_read_header_does_not_need_the_source(frozen_state):
    assert tasklet.read_header(frozen_state).seq == 1
    with pytest.raises(EnvelopeError):
        tasklet.read_header(frozen_state[:-1])


def test_rechecksummed_garbage_payload_is_refused_not_run(frozen_state):
    header, payload = E.open_envelope(frozen_state, MARKED)
    forged = E.make_envelope(header, b"\x01\x12\x01\x07\x04kind\x07\x06frames")
    with pytest.raises(EnvelopeError, match="cannot be decoded|does not fit"):
        tasklet.run_slice(forged, MARKED, 10)


def test_forged_resume_point_is_refused(frozen_state):
    header, payload = E.open_envelope(frozen_state, MARKED)
    state = tasklet.codec.decode(payload)
    state["frames"][0][1] = 999
    forged = E.make_envelope(header, tasklet.codec.encode(state))
    with pytest.raises(EnvelopeError, match="resume point"):
        tasklet.run_slice(forged, MARKED, 10)


def test_a_real_job_state_round_trips_through_the_envelope():
    src = source("bubble_sort")
    env = tasklet.start(src, "bubble_sort", [[3, 1, 2]], {}, job_id=7)
    h = tasklet.read_header(env)
    assert (h.seq, h.job_id) == (0, 7)


# -- format 2: states bound to their job and parent (issue 17) ------------------------------------


def _v1(state: bytes) -> bytes:
    """``state`` in the format-1 layout workers made before issue 17 (no parent, no interpreter)."""
    import hashlib
    import json

    header = tasklet.read_header(state)
    fields = {k: v for k, v in header._asdict().items() if k not in ("parent", "interpreter")}
    hlen = struct.unpack(">I", state[6:10])[0]
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    body = struct.pack(">4sHI", b"MKTS", 1, len(raw)) + raw + state[10 + hlen : -32]
    return body + hashlib.sha256(body).digest()


def test_state_0_has_no_parent_and_names_the_interpreter_that_made_it():
    import sys

    h = tasklet.read_header(tasklet.start(MARKED, "count", [5], {}, job_id=3))
    assert (h.parent, h.job_id, h.seq) == ("", 3, 0)
    assert h.interpreter == E.INTERPRETER == "%s-%d.%d" % (sys.implementation.name, *sys.version_info[:2])
    assert E.FORMAT_VERSION == 2


def test_each_new_state_names_its_parents_digest_its_job_and_the_next_seq():
    env = tasklet.start(MARKED, "count", [5000], {}, job_id=9)
    for seq in range(1, 4):
        out = tasklet.run_slice(env, MARKED, 10, budget=5)
        h = tasklet.read_header(out.envelope)
        assert (h.seq, h.job_id, h.parent, h.interpreter) == (seq, 9, env[-32:].hex(), E.INTERPRETER)
        assert E.digest(env) == env[-32:].hex()
        env = out.envelope


def test_a_slice_given_the_job_id_stamps_it_into_a_state_made_without_one(frozen_state):
    out = tasklet.run_slice(frozen_state, MARKED, 10, budget=5, job_id=12)
    assert tasklet.read_header(out.envelope).job_id == 12


def test_a_version_1_envelope_is_refused_saying_upgrade_the_worker(frozen_state, capsys):
    refuse_without_running(_v1(frozen_state), capsys, match="older worker; upgrade the worker")
    with pytest.raises(EnvelopeError, match="upgrade the worker"):
        E.read_header(_v1(frozen_state))


def test_upgrade_v1_keeps_the_payload_and_binds_the_header(frozen_state):
    parent = "ab" * 32
    upgraded = E.upgrade_v1(_v1(frozen_state), 42, parent)
    h, payload_sha256 = E.inspect(upgraded)
    assert (h.job_id, h.parent, h.interpreter, h.seq) == (42, parent, "unknown", 1)
    assert payload_sha256 == E.payload_sha256(frozen_state)
    assert tasklet.run_slice(upgraded, MARKED, 10, budget=5).envelope is not None  # still runs
    with pytest.raises(EnvelopeError, match="version 2 is not supported"):
        E.upgrade_v1(frozen_state, 42, parent)  # already format 2


def test_the_payload_hash_ignores_the_header_and_sees_every_payload_change(frozen_state):
    header, payload = E.open_envelope(frozen_state, MARKED)
    rewritten = E.make_envelope(header._replace(job_id=77, seq=9, parent="cd" * 32), payload)
    assert E.payload_sha256(rewritten) == E.payload_sha256(frozen_state)
    assert E.digest(rewritten) != E.digest(frozen_state)
    assert E.payload_sha256(E.make_envelope(header, payload + b"\x00")) != E.payload_sha256(frozen_state)


@pytest.mark.parametrize("parent", ["x" * 64, "AB" * 32, "ab" * 31])
def test_a_parent_that_is_no_hex_digest_is_refused(frozen_state, parent):
    header, payload = E.open_envelope(frozen_state, MARKED)
    with pytest.raises(EnvelopeError, match="parent"):
        E.read_header(E.make_envelope(header._replace(parent=parent), payload))


def test_the_envelope_module_stays_cheap_to_import():
    """It is imported on every slice: the standard library only, and not ``typing`` (~15 ms)."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('envelope', %r);"
        " spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('typing' in sys.modules)"
    ) % E.__file__
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
