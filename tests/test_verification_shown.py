"""A result's verification and the verification fee, as the web pages show them."""

from __future__ import annotations

from types import SimpleNamespace

from market.core import verification as policy
from market.web.render import Renderer
from market.web.sessions import Visitor


class Request:
    def setResponseCode(self, code):
        pass

    def setHeader(self, name, value):
        pass


VISITOR = Visitor(csrf="x", account_id=1, name="ann")


def job(**kw):
    base = dict(
        id=5,
        batch_id=None,
        kind="job",
        name="sum",
        price=100,
        status="finished",
        submitted_at=0.0,
        executed_ms=1500,
        slices=2,
        progress=1.0,
        finished_at=10.0,
        outcome="finished",
        error=None,
        last_slice=None,
        verification="unverified",
        verification_note="waiting for a verifier",
    )
    base.update(kw)
    return base


def page(template: str, **values) -> str:
    return Renderer().page(Request(), template, visitor=VISITOR, **values).decode()


def test_the_submit_form_shows_the_verification_fee_before_submitting():
    form = dict(source="", functions=[], function="", args="", name="", price="1.00", errors={})
    html = page("submit.html", max_kib=1024, fee=policy.fee_words(policy.Settings(fraction=0.1)), **form)
    assert 'id="verification-fee"' in html and "10 % of slices are replayed" in html


# what the job page's other sections need (live progress, the job's output): nothing yet
_LIVE = SimpleNamespace(
    over=False,
    progress=None,
    slices=0,
    executed_seconds=0.0,
    cost="0.00",
    remaining_seconds=None,
    remaining_cost=None,
    price="1.00",
    total_cost=None,
)
_PRINTED = SimpleNamespace(log="", next=0)


def job_page(**values) -> str:
    return page("job.html", live=_LIVE, printed=_PRINTED, **values)


def test_an_unverified_result_says_so_and_why():
    html = job_page(job=job(), shown=None, final=("finished", "cancelled"))
    assert 'id="job-verification"' in html and "unverified: waiting for a verifier" in html


def test_a_verified_result_says_verified():
    html = job_page(job=job(verification="verified", verification_note=None), shown=None, final=("finished",))
    assert 'class="verification-verified">verified<' in html


def test_a_job_without_a_result_shows_no_verification():
    html = job_page(job=job(status="ready", outcome=None, verification=None), shown=None, final=("finished",))
    assert "job-verification" not in html
