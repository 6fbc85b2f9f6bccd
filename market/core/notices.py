"""E-mail on finish or failure (opt-in): what the mail about an ended job or batch says.

Plain values in, ``(subject, body)`` out: the store (``market.store.notices``) decides which
jobs and batches ended and claims each once; the site's notifier (``market.web.notify``) sends.
A job of a batch is not mailed on its own: its batch is, once, when its last job ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from market.core import money, states


def job_notice(row: Mapping[str, Any], base_url: str | None = None) -> tuple[str, str]:
    """The mail about one ended job (a job row: id, name, status, outcome, error, ...)."""
    state = states.state_of(row)
    name = row.get("name") or f"job {row['id']}"
    subject = f"Job {row['id']} ({name}) {state.status}"
    lines = [f"Your job {row['id']} ({name}) has {state.status}: {state.reason}."]
    if state.failed and state.error:
        where = f" (line {state.error_line} of your module)" if state.error_line else ""
        lines += ["", f"The error{where}:", _last_lines(state.error)]
    if row.get("paid") is not None:
        lines += ["", f"It cost {money.format_cents(int(row['paid']))} credits."]
    if base_url:
        lines += ["", f"{base_url}/jobs/{row['id']}"]
    return subject, "\n".join(lines) + _footer(base_url)


def batch_notice(batch: Mapping[str, Any], counts: Mapping[str, int], base_url: str | None = None) -> tuple[str, str]:
    """The mail about a batch whose jobs all ended: ``counts`` by the words members read
    (finished, failed, cancelled)."""
    words = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()) if n)
    subject = f"Batch {batch['id']} ({batch['name']}) ended: {words}"
    lines = [f"All {sum(counts.values()):,} jobs of your batch {batch['id']} ({batch['name']}) have ended: {words}."]
    if batch.get("paid") is not None:
        lines += ["", f"It cost {money.format_cents(int(batch['paid']))} credits."]
    if base_url:
        lines += ["", f"{base_url}/batches/{batch['id']}"]
    return subject, "\n".join(lines) + _footer(base_url)


def _last_lines(text: str, most: int = 20) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-most:])


def _footer(base_url: str | None) -> str:
    where = f" ({base_url}/account)" if base_url else ""
    return (
        f"\n\n-- \nYou asked for these e-mails on your account page{where};"
        " turn them off there or with: market notify off\n"
    )
