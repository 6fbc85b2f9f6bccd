"""The hostile suite's own instruments measure what they claim (a bystander on a quiet market)."""

from __future__ import annotations

import os

from tests.hostile.support import Bystander, MemoryWatch, rss_mb, start_market


def test_a_quiet_market_answers_the_bystander_fast_and_stays_small(tmp_path):
    hostile = start_market(tmp_path)
    try:
        with MemoryWatch(hostile.pid) as memory, Bystander(hostile) as bystander:
            import time

            time.sleep(2.0)
        bystander.assert_served()
        assert 10 < memory.peak < 300
        hostile.assert_serves_and_audits_clean()
    finally:
        hostile.market.stop()


def test_the_bystander_reports_a_stalled_market(tmp_path):
    """A market that answers nothing must fail the figures, not hang the test or pass."""
    import signal
    import time

    hostile = start_market(tmp_path)
    try:
        with Bystander(hostile, give_up=1.5) as bystander:
            time.sleep(0.5)
            os.kill(hostile.pid, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(hostile.pid, signal.SIGCONT)
            time.sleep(0.5)
        assert bystander.worst() >= 1.0 and bystander.errors
    finally:
        hostile.market.stop()


def test_rss_of_this_process_is_read():
    assert rss_mb(os.getpid()) > 5
