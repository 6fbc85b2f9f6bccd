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
    assert (h.entry, h.seq, h.runtime, h.codec) == ("count", 1, E.RUNTIME_VERSION, "mkt-bin-1")
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
