"""Job pages (requirements 5b-d, spec 5c): submit, my jobs with one price form, a job, its result.

Submission is the same as ``market submit`` (``market.jobs.submission``): the module's size is
checked at once, then it is parsed, validated, compiled and its arguments frozen in a helper process
(``market.offload``; refusals name their lines), then the job and its state #0 are stored in one
transaction. A result is shown and converted to JSON in a helper too, within a budget
(``market.jobs.results``); the encoded result can always be downloaded as it is.
Every job URL goes through the store's ``owned_job``: another member's job is "not found".
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from market.core import listing, money, prices, states
from market.core import verification as policy
from market.core.errors import JobRefused, MarketError, TooLarge
from market.core.text import printable
from market.jobs import results, submission
from market.store import accounts as sql_accounts
from market.store import jobs as sql_jobs
from market.store import live as sql_live
from market.store import logs as sql_logs
from market.web import feed
from market.web.context import Pages, Web, field

FINAL = ("finished", "cancelled")
#: the jobs list's parameters (``market.core.listing``)
_LIST_FIELDS = ("page", "per", "sort", "dir", "state", "name", "batch", "q")


def _list_link(query: listing.JobQuery, **change: Any) -> str:
    """/jobs with ``query`` changed by ``change`` (a new sort or filter starts at page 1)."""
    if "page" not in change:
        change["page"] = 1
    params = query.params(**change)
    return "/jobs" + ("?" + urlencode(params) if params else "")


SHOWN_RESULT = results.SHOWN_CHARS  # characters of a result shown on its page (the download has it all)
#: characters of JSON the arguments field may hold
MAX_ARGUMENTS = 256 * 1024
#: characters of a task's output the JSON download carries (it is text already: converted here,
#: not in a helper, so kept small; the encoded download has it all)
TASK_OUTPUT_CHARS = 1024 * 1024


def parse_arguments(text: str) -> tuple[list, dict]:
    """Arguments as JSON: a list (positional), an object (keywords), or empty (no arguments).

    Anything that is not such JSON is a :class:`MarketError` in plain words: a syntax error, a
    number of more digits than Python converts (over 4,300), nesting deeper than the parser goes.
    """
    if not text.strip():
        return [], {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise MarketError(
            f"the arguments are not valid JSON ({e.msg} at line {e.lineno} column {e.colno});"
            ' write a list like [1000, "text"] or an object like {"n": 1000}'
        ) from None
    except ValueError:  # an integer of over 4,300 digits (CPython's limit on int(str))
        raise MarketError(
            "the arguments hold a number too long for the market to read (over 4,300 digits); send it as a string"
        ) from None
    except RecursionError:
        raise MarketError("the arguments are nested too deeply; flatten them") from None
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


def _module_problem(e: MarketError) -> str:
    if isinstance(e, JobRefused):
        return f"This module cannot run as a market job:\n{e}"
    return f"This module cannot be checked: {e}."


class JobPages(Pages):
    """Submit, my jobs and their prices, a job, its result, cancel."""

    def _submit_page(self, request, visitor, code=200, **values):
        form: dict[str, Any] = dict(
            source="", functions=[], function="", args="", name="", price="1.00", errors={}, price_unusual=False
        )
        form.update(values)
        fee = policy.fee_words(self.web.verification)
        return self.web.render(
            request, "submit.html", visitor, code, max_kib=self.web.max_module // 1024, fee=fee, **form
        )

    async def submit_form(self, request, visitor):
        return self._submit_page(request, visitor)

    async def submit(self, request, visitor):
        errors: dict[str, str] = {}
        source, problem = _read_module(request, self.web)
        if problem:
            errors["module"] = problem
        function = field(request, "function", limit=128).strip()
        args_text = field(request, "args", limit=MAX_ARGUMENTS)
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
        unusual = False
        try:
            price = money.parse_price(price_text)
            prices.check_ceiling(price, self.web.max_price)
        except MarketError as e:
            errors["price"] = str(e)
        else:  # what the price buys now; an unusual one is confirmed by ticking the box it brings
            view = prices.price_view(price, await self.web.db.run(sql_jobs.competing_prices))
            confirmed = field(request, "confirm-price", limit=32) == price_text
            if view.unusual and not confirmed:
                unusual = True
                errors["price"] = view.words[0].upper() + view.words[1:] + "."
        job = None
        functions: list[str] = []
        if source:
            try:  # parse, validate, compile, freeze: in a helper process, outside the transaction
                examined = await submission.examine_in(
                    self.web.offload, source, function, args, kwargs, visitor.account_id, "args" not in errors
                )
            except MarketError as e:  # over a limit, or the helpers are busy
                errors["module"] = _module_problem(e)
            else:
                functions, function, job = examined.functions, examined.entry, examined.job
                if not function:
                    errors["function"] = "Pick the function that runs the job."
                elif examined.refusal is not None:
                    errors["module"] = _module_problem(examined.refusal)
        values = dict(
            source=source,
            functions=functions,
            function=function,
            args=args_text,
            name=name,
            price=price_text,
            errors=errors,
            price_unusual=unusual,
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
        query, problems = listing.parse({k: field(request, k, limit=4 * listing.MAX_TEXT) for k in _LIST_FIELDS})
        found = await self.web.db.run(sql_jobs.page_of_jobs, visitor.account_id, query)
        rows = found["jobs"]
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
            query=query,
            problems=problems,
            total=found["total"],
            pages=query.pages(found["total"]),
            link=lambda **change: _list_link(query, **change),
            sorts=listing.SORTS,
            list_states=listing.STATES,
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
                prices.check_ceiling(cents, self.web.max_price)
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
        if status["status"] == "finished" and not states.state_of(status).failed:
            row = await self.web.db.run(sql_jobs.job_result, visitor.account_id, job_id)
            shown = await self._shown(row, visitor, SHOWN_RESULT, indent=1, as_text=True)
        printed = await self.web.db.run(sql_logs.read, visitor.account_id, job_id)
        live = await self.web.db.run(sql_live.job_live, visitor.account_id, job_id)
        return self.web.render(
            request, "job.html", visitor, job=status, shown=shown, final=FINAL, printed=printed, live=live
        )

    async def log(self, request, visitor, job_id):
        """The job's printed output (owner only): as plain text, or with ``?after=N`` as JSON
        ``{job, status, log, next, slices}`` of what came after row N — the job page's live tail."""
        after_text = field(request, "after", limit=20)
        after = int(after_text) if after_text.isdigit() else None
        answer = await self.web.db.run(sql_logs.read, visitor.account_id, job_id, after or 0)
        request.setHeader(b"Cache-Control", b"no-store")
        if after is None:
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return printable(answer["log"], lines=True).encode("utf-8")
        answer["log"] = printable(answer["log"], lines=True)
        answer["final"] = answer["status"] in FINAL
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return json.dumps(answer).encode("utf-8")

    async def _shown(self, row, visitor, max_chars: int, indent: int | None, as_text: bool) -> results.Shown | None:
        """The result's text within ``max_chars`` (a task's output as it is), or why not."""
        data = row["result"]
        if data is None:
            return None
        data = bytes(data)
        if row["kind"] == "task":  # a task's result is its output: text already
            max_chars = min(max_chars, TASK_OUTPUT_CHARS)
            text = data[: 4 * max_chars].decode("utf-8", "replace")
            complete = len(data) <= max_chars and len(text) <= max_chars
            return results.Shown(text[:max_chars], complete, len(data), "" if complete else "is longer")
        try:
            return await results.show(self.web.offload, data, max_chars, indent, as_text, owner=visitor.account_id)
        except MarketError as e:  # the helpers are busy or it took too long: say so, keep the page
            return results.Shown(None, False, len(data), f"cannot be shown right now ({e})")

    async def result(self, request, visitor, job_id):
        row = await self.web.db.run(sql_jobs.job_result, visitor.account_id, job_id)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-store")
        if field(request, "as", limit=16) == "encoded":  # the bytes as the worker sent them
            request.setHeader(b"Content-Type", b"application/octet-stream")
            request.setHeader(b"Content-Disposition", f'attachment; filename="job-{job_id}-result.bin"'.encode())
            return bytes(row["result"] or b"")
        text = "null"
        error = row["error"]
        if row["result"] is not None:
            shown = await self._shown(row, visitor, self.web.offload.settings.render_chars, 1, as_text=False)
            assert shown is not None  # (there is a result)
            if shown.malformed:
                error = error or f"the result {shown.problem}"
            elif not shown.complete:
                raise TooLarge(
                    f"The result ({shown.size:,} bytes encoded) cannot be converted to JSON here: it"
                    f" {shown.problem}. Download the encoded result instead: /jobs/{job_id}/result?as=encoded"
                )
            else:
                text = (shown.text or "") if row["kind"] != "task" else json.dumps(shown.text)
        head = {"job": job_id, "outcome": row["outcome"], "error": error}
        body = json.dumps(head, indent=1)[:-2] + ',\n "result": ' + text + "\n}"
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Content-Disposition", f'attachment; filename="job-{job_id}-result.json"'.encode())
        return body.encode("utf-8")

    async def cancel(self, request, visitor, job_id):
        await self.web.db.run(sql_jobs.cancel_job, visitor.account_id, job_id, self.web.clock.seconds())
        return self.web.redirect(request, f"/jobs/{job_id}")
