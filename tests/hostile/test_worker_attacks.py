"""No stranger can take down a worker: each attack in ``attacks_worker`` against a real ``twistd
market`` and a real ``twistd worker --memory 256 --slice 2 --disk 64 --output 4``.

Every test asserts the same three things besides its own: the worker's whole process tree stayed
under its --memory plus its own baseline (``WORKER_ALLOWANCE_MB``), the worker then took the next
lease and finished a normal job correctly, and the market's audit is clean. One worker serves the
whole module, so an attack that broke it fails every test after it too.
"""

from __future__ import annotations

import os

import pytest

from tests.hostile import attacks_worker as attacks
from tests.support import need_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks run jobs as an unused uid: needs root")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    need_program("bwrap")
    need_program("mksquashfs")
    rig = attacks.start_rig(tmp_path_factory.mktemp("worker-attacks"))
    yield rig
    attacks.stop_rig(rig)
    for figures in rig.figures:
        print(figures)


def survived(rig, figures):
    """The worker's tree stayed in its bound, it serves the next lease, the books balance."""
    assert figures["worker_alive"], rig.logtext()[-3000:]
    assert figures["peak_tree_mb"] <= rig.bound_mb, figures
    assert attacks.normal_job_finishes(rig), rig.logtext()[-3000:]
    rig.hostile.assert_serves_and_audits_clean()


def test_a_task_gets_no_more_memory_disk_output_or_time_than_the_worker_gives(rig):
    figures = attacks.huge_limits_task(rig)
    assert figures["outcome"] == "overflow", figures
    assert figures["output_bytes"] == rig.output_mb << 20  # the worker's --output, not the 256 MiB asked
    assert figures["disk_written_mb"] is not None and figures["disk_written_mb"] <= rig.disk_mb, figures
    assert figures["memory_line"] == "memory refused", figures
    # the owner learns which limits this worker lowered
    for note in ("memory 1024 MB -> 256 MB", "disk 1024 MB -> 64 MB", "time 600 s -> 2 s", "output 268435456"):
        assert note in figures["message"], figures
    survived(rig, figures)


def test_a_task_forking_memory_hungry_children_is_killed_at_its_total_memory(rig):
    figures = attacks.forking_memory_task(rig)
    assert figures["outcome"] == "crash" and "out of memory" in figures["message"], figures
    assert figures["seconds"] < 10, figures  # killed by the watchdog, not by its time limit
    survived(rig, figures)


def test_a_task_cannot_enter_a_nested_user_namespace_nor_fork_past_its_process_limit(rig):
    from market.sandbox.task import TASK_PROCESSES

    figures = attacks.nested_userns_task(rig)
    assert figures["outcome"] == "success", figures
    assert figures["escaped"] is False, figures
    assert figures["unshare"] == figures["clone"] == "Operation not permitted", figures
    assert figures["clone3"] == "Function not implemented", figures
    assert figures["unshare -U"] != 0, figures
    assert figures["forked"] < TASK_PROCESSES, figures
    survived(rig, figures)


def test_a_squashfs_bomb_is_refused_before_a_byte_is_unpacked(rig):
    figures = attacks.squashfs_bomb_task(rig)
    assert figures["outcome"] == "error", figures
    assert "refused before unpacking" in figures["message"] and "64.0 MB" in figures["message"], figures
    assert figures["disk_written_mb"] < 1, figures
    survived(rig, figures)


def test_a_market_job_cannot_fork_and_gets_no_more_memory_than_the_worker_gives(rig):
    figures = attacks.tasklet_hog_job(rig)
    assert figures["outcome"] == "finished", figures
    assert figures["fork"].startswith("refused") and figures["children"] == 0, figures
    assert 0 < figures["allocated_mb"] <= rig.memory_mb, figures
    survived(rig, figures)


def test_a_finished_slice_is_delivered_through_fault_9(rig):
    figures = attacks.fault9_delivery(rig)
    assert figures["faults_answered"] == 2, figures
    assert figures["correct"] and figures["lost_leases"] == 0, figures
    survived(rig, figures)


def test_a_job_without_a_freeze_point_is_billed_and_ends_with_the_reason(rig):
    figures = attacks.nofreeze_job(rig)
    assert figures["outcome"] == "nofreeze", figures
    assert figures["slice_statuses"] == ["nofreeze", "nofreeze"], figures  # the market's nofreeze-strikes: 2
    assert "line 4 in work()" in figures["message"] and "sum(range(n))" in figures["message"], figures
    assert "split" in figures["message"], figures
    # each slice billed at the lease's price (1.00/s) for its 2 s: the owner pays, the host is paid
    assert figures["owner_paid"] == figures["host_earned"] == figures["leases_paid"] == 400, figures
    survived(rig, figures)
