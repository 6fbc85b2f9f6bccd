"""Job pages (requirements 5b-d, spec 5c): submit, my jobs with one price form, a job, its result.

Submission is the same as ``market submit`` (``market.jobs.submission``): the module is validated,
compiled and frozen in a thread (refusals name their lines), then the job and its state #0 are
stored in one transaction.
Every job URL goes through the store's ``owned_job``: another member's job is "not found".
"""

from __future__ import annotations

import ast
import json
from typing import Any

from twisted.internet.threads import deferToThread

from market.core import money
from market.core.errors import JobRefused, MarketError
from market.jobs import submission
from market.store import accounts as sql_accounts
from market.store import jobs as sql_jobs
from market.web import feed
from market.web.context import Pages, Web, field

FINAL = ("finished", "cancelled")
SHOWN_RESULT = 20_000  # characters of a result shown on its page (the download has it all)


def functions_in(source: str) -> list[str]:
    """The module's top-level function names, for the "function" menu (nothing is executed)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef,))]


def parse_arguments(text: str) -> tuple[list, dict]:
    """Arguments as JSON: a list (positional), an object (keywords), or empty (no arguments)."""
    if not text.strip():
        return [], {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise MarketError(
            f"the arguments are not valid JSON ({e.msg} at line {e.lineno} column {e.colno});"
            ' write a list like [1000, "text"] or an object like {"n": 1000}'
        ) from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise MarketError('the arguments must be a JSON list like [1000] or an object like {"n": 1000}')


def _read_module(request, web: Web) -> tuple[str, str]:
    """(source, error): the uploaded file, else the source carried over from the previous step."""
    uploaded = request.args.get(b"module", [b""])[0]
    raw = uploaded if uploaded.strip() else field(request, "source", limit=web.max_module + 1).encode("utf-8")
    if not raw.strip():
        return "", "Choose a Python module (.py file) to upload."
    if len(raw) > web.max_module:
        return "", f"The module is over {web.max_module // 1024} KiB."
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError:
        return "", "The module is not UTF-8 text."


class JobPages(Pages):
    """Submit, my jobs and their prices, a job, its result, cancel."""

    def _submit_page(self, request, visitor, code=200, **values):
        form: dict[str, Any] = dict(source="", functions=[], function="", args="", name="", price="1.00", errors={})
        form.update(values)
        return self.web.render(request, "submit.html", visitor, code, max_kib=self.web.max_module // 1024, **form)

    async def submit_form(self, request, visitor):
        return self._submit_page(request, visitor)

    async def submit(self, request, visitor):
        errors: dict[str, str] = {}
        source, problem = _read_module(request, self.web)
        if problem:
            errors["module"] = problem
        functions = functions_in(source)
        function = field(request, "function", limit=128).strip()
        if source and not function:
            if len(functions) == 1:
                function = functions[0]
            else:
                errors["function"] = "Pick the function that runs the job."
        args_text = field(request, "args", limit=256 * 1024)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        try:
            args, kwargs = parse_arguments(args_text)
        except MarketError as e:
            errors["args"] = str(e)
        name = field(request, "name", limit=256).strip()
        if not name or len(name) > 128:
            errors["name"] = "Give the job a name of 1 to 128 characters."
        price_text = field(request, "price", limit=32)
        price = 0
        try:
            price = money.parse_price(price_text)
        except MarketError as e:
            errors["price"] = str(e)
        job = None
        if source and function and "args" not in errors:
            try:  # validate, compile, freeze: CPU work, in a thread and outside the transaction
                job = await deferToThread(submission.prepare, source, function, args, kwargs)
            except JobRefused as e:
                errors["module"] = f"This module cannot run as a market job:\n{e}"
            except MarketError as e:
                errors["module"] = str(e)
        values = dict(
            source=source,
            functions=functions,
            function=function,
            args=args_text,
            name=name,
            price=price_text,
            errors=errors,
        )
        if errors:
            return self._submit_page(request, visitor, 400, **values)
        try:
            job_id = await self.web.db.run(
                submission.submit, visitor.account_id, job, name, price, self.web.clock.seconds()
            )
        except MarketError as e:
            errors["module"] = str(e)
            return self._submit_page(request, visitor, 400, **values)
        return self.web.redirect(request, f"/jobs/{job_id}")

    async def _jobs_page(self, request, visitor, code=200, errors=None, updated=0):
        rows = await self.web.db.run(sql_jobs.list_jobs, visitor.account_id)
        account = await self.web.db.run(sql_accounts.account_by_id, visitor.account_id)
        errors = errors or {}
        mine = {r["id"] for r in rows}
        stray = [message for job_id, message in sorted(errors.items()) if job_id not in mine]
        return self.web.render(
            request,
            "jobs.html",
            visitor,
            code,
            jobs=rows,
            final=FINAL,
            errors=errors,
            stray=stray,
            updated=updated,
            feed=feed.feed_path(account),
        )

    async def jobs(self, request, visitor):
        try:
            updated = int(field(request, "updated", "0", limit=6))
        except ValueError:
            updated = 0
        return await self._jobs_page(request, visitor, updated=updated)

    async def prices(self, request, visitor):
        rows = {r["id"]: r for r in await self.web.db.run(sql_jobs.list_jobs, visitor.account_id)}
        errors: dict[int, str] = {}
        changed = 0
        for key in sorted(request.args):
            if not key.startswith(b"price-"):
                continue
            try:
                job_id = int(key[6:])
            except ValueError:
                continue
            text = request.args[key][0].decode("utf-8", "replace")[:32]
            row = rows.get(job_id)
            if row is None:
                errors[job_id] = f"no job {job_id} in your account"
                continue
            try:
                cents = money.parse_price(text)
                if cents == row["price"]:
                    continue
                await self.web.db.run(sql_jobs.set_price, visitor.account_id, job_id, cents)
                changed += 1
            except MarketError as e:
                errors[job_id] = str(e)
        if errors:
            return await self._jobs_page(request, visitor, 400, errors=errors, updated=changed)
        return self.web.redirect(request, f"/jobs?updated={changed}")

    async def job(self, request, visitor, job_id):
        status = await self.web.db.run(sql_jobs.job_status, visitor.account_id, job_id)
        shown = None
        if status["status"] == "finished" and status["outcome"] != "failed":
            result = await self.web.db.run(sql_jobs.job_result, visitor.account_id, job_id)
            shown = _show(result["result"])
        return self.web.render(request, "job.html", visitor, job=status, result=shown, final=FINAL)

    async def result(self, request, visitor, job_id):
        row = await self.web.db.run(sql_jobs.job_result, visitor.account_id, job_id)
        value, problem = _decode(row["result"])
        body = {"job": job_id, "outcome": row["outcome"], "error": row["error"] or problem, "result": value}
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Content-Disposition", f'attachment; filename="job-{job_id}-result.json"'.encode())
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(body, default=repr, indent=1).encode("utf-8")

    async def cancel(self, request, visitor, job_id):
        await self.web.db.run(sql_jobs.cancel_job, visitor.account_id, job_id, self.web.clock.seconds())
        return self.web.redirect(request, f"/jobs/{job_id}")


def _decode(data) -> tuple[Any, str]:
    """(value, problem) — the runtime decodes a result as data, never executing anything."""
    if data is None:
        return None, ""
    from market import tasklet

    try:
        return tasklet.decode_result(bytes(data)), ""
    except Exception as e:  # a malformed result must show as a message, not a traceback
        return None, f"the result could not be decoded: {e}"


def _show(data) -> str:
    value, problem = _decode(data)
    if problem:
        return problem
    text = value if isinstance(value, str) else json.dumps(value, default=repr, indent=1)
    return text if len(text) <= SHOWN_RESULT else text[:SHOWN_RESULT] + "\n… (download the result for the rest)"
