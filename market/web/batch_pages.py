"""Batch pages (issue 19): a batch's aggregate progress, jobs per status, cost so far and estimate,
a paged list of its jobs, cancel and reprice all, and its results as JSON Lines or CSV.

Every URL goes through the store's ``owned_batch``: another member's batch is "not found". The
results download reads the batch in pages and shows each result in a helper within the budget
a job's JSON download has (``market.jobs.results``): a result too large to convert is null with
its reason, and its own job page has the encoded bytes.
"""

from __future__ import annotations

from typing import Any

from market.core import money
from market.core import verification as policy
from market.core.errors import KINDS, MarketError, error_for
from market.jobs import batches
from market.store import batches as sql_batches
from market.web.context import Pages, field
from market.web.job_pages import _module_problem, _read_module

#: jobs listed on one page of a batch
PAGE = 50
#: bytes of argument sets the form takes (pasted or uploaded)
MAX_SETS_TEXT = 8 * 1024 * 1024
#: characters of one result in the results download, and of the whole download (it is built in
#: memory): past it, a job's result is null with the reason, and ``market batch results`` pages it all
RESULT_CHARS = 1024 * 1024
DOWNLOAD_CHARS = 64 * 1024 * 1024


class BatchPages(Pages):
    """Submit a batch, a batch, its jobs page by page, cancel, price and results."""

    def _form(self, request, visitor, code=200, **values):
        form: dict[str, Any] = dict(function="", sets="", fmt="jsonl", name="", price="1.00", errors={})
        form.update(values)
        return self.web.render(
            request,
            "batch_submit.html",
            visitor,
            code,
            max_kib=self.web.max_module // 1024,
            max_batch=self.web.max_batch,
            fee=policy.fee_words(self.web.verification),
            **form,
        )

    async def submit_form(self, request, visitor):
        return self._form(request, visitor)

    async def submit(self, request, visitor):
        """The module checked once and every argument set frozen in a helper; then the batch and
        its jobs stored in chunks of ``batches.CHUNK``, one short transaction each."""
        errors: dict[str, str] = {}
        source, problem = _read_module(request, self.web)
        if problem:
            errors["module"] = problem
        function = field(request, "function", limit=128).strip()
        if not function:
            errors["function"] = "Name the function that runs each job."
        uploaded = request.args.get(b"setsfile", [b""])[0]
        if len(uploaded) > MAX_SETS_TEXT:
            errors["sets"] = f"The argument sets are over {MAX_SETS_TEXT // (1024 * 1024)} MiB."
            uploaded = b""
        sets_text = field(request, "sets", limit=MAX_SETS_TEXT)
        text = sets_text
        if uploaded.strip():
            try:
                text = uploaded.decode("utf-8")
            except UnicodeDecodeError:
                errors["sets"] = "The argument file is not UTF-8 text."
        if not text.strip() and "sets" not in errors:
            errors["sets"] = "Paste the argument sets or choose a file of them."
        fmt = field(request, "format", "jsonl", limit=8)
        if fmt not in ("json", "jsonl", "csv"):
            fmt = "jsonl"
        name = field(request, "name", limit=256).strip()
        if not name or len(name) > 100:
            errors["name"] = "Give the batch a name of 1 to 100 characters."
        price = 0
        price_text = field(request, "price", limit=32)
        try:
            price = money.parse_price(price_text)
        except MarketError as e:
            errors["price"] = str(e)
        values = dict(function=function, sets=sets_text, fmt=fmt, name=name, price=price_text, errors=errors)
        if errors:
            return self._form(request, visitor, 400, **values)
        try:
            answer = await self.web.offload.call(
                "market.jobs.batches:frozen_batch",
                source,
                function,
                text,
                fmt,
                self.web.max_batch,
                self.web.max_argument_set,
                owner=visitor.account_id,
            )
        except MarketError as e:  # the helpers are busy, or it took too long
            errors["module"] = _module_problem(e)
            return self._form(request, visitor, 400, **values)
        if answer["refusal"] is not None:
            kind, words = answer["refusal"]
            refusal = error_for(KINDS.get(kind, KINDS["internal"]), words)
            errors["sets" if "argument" in words or "line" in words else "module"] = _module_problem(refusal)
            return self._form(request, visitor, 400, **values)
        read = answer["states"]
        now = self.web.clock.seconds()
        batch_id = await self.web.db.run(
            sql_batches.create_batch, visitor.account_id, name, source, function, price, len(read), now
        )
        for start in range(0, len(read), batches.CHUNK):
            await self.web.db.run(
                sql_batches.add_jobs,
                visitor.account_id,
                batch_id,
                answer["source_sha256"],
                read[start : start + batches.CHUNK],
                now,
            )
        return self.web.redirect(request, f"/batches/{batch_id}")

    async def batches(self, request, visitor):
        rows = await self.web.db.run(sql_batches.list_batches, visitor.account_id)
        return self.web.render(request, "batches.html", visitor, batches=rows)

    async def batch(self, request, visitor, batch_id, code=200, error=""):
        try:
            page = max(1, min(int(field(request, "page", "1", limit=7)), 10**6))
        except ValueError:
            page = 1
        summary = await self.web.db.run(sql_batches.summary, visitor.account_id, batch_id)
        jobs = await self.web.db.run(sql_batches.batch_jobs, visitor.account_id, batch_id, (page - 1) * PAGE, PAGE)
        pages = max(1, -(-summary["jobs"] // PAGE))
        progress = summary["progress"]
        estimate = round(summary["paid"] / progress) if progress > 0 else None
        return self.web.render(
            request,
            "batch.html",
            visitor,
            code,
            batch=summary,
            jobs=jobs,
            page=page,
            pages=pages,
            estimate=estimate,
            error=error,
            running=any(s not in ("finished", "cancelled") for s in summary["counts"]),
        )

    async def cancel(self, request, visitor, batch_id):
        await self.web.db.run(sql_batches.cancel_batch, visitor.account_id, batch_id, self.web.clock.seconds())
        return self.web.redirect(request, f"/batches/{batch_id}")

    async def price(self, request, visitor, batch_id):
        try:
            cents = money.parse_price(field(request, "price", limit=32))
        except MarketError as e:
            return await self.batch(request, visitor, batch_id, 400, str(e))
        await self.web.db.run(sql_batches.price_batch, visitor.account_id, batch_id, cents)
        return self.web.redirect(request, f"/batches/{batch_id}")

    async def results(self, request, visitor, batch_id):
        from market.jobs import results

        fmt = field(request, "format", "jsonl", limit=8)
        if fmt not in ("jsonl", "csv"):
            fmt = "jsonl"
        chunks: list[str] = []
        after, first, size = -1, True, 0
        render_chars = min(self.web.offload.settings.render_chars, RESULT_CHARS)
        while True:
            rows = await self.web.db.run(
                sql_batches.batch_results, visitor.account_id, batch_id, after, batches.RESULTS_PAGE
            )
            if not rows:
                break
            records = []
            for r in rows:
                line = {**r, "index": r["batch_index"], "job": r["id"]}
                if r["outcome"] == "finished" and not r["verification"]:
                    line["verification"] = "unverified"
                text = None
                if r["result"] is not None and size > DOWNLOAD_CHARS:
                    line["error"] = line["error"] or "the download is full; get this one with: market batch results"
                elif r["result"] is not None:
                    try:
                        shown = await results.show(
                            self.web.offload, bytes(r["result"]), render_chars, None, False, owner=visitor.account_id
                        )
                    except MarketError as e:
                        shown = results.Shown(None, False, len(r["result"]), f"cannot be shown right now ({e})")
                    if shown.text is not None and shown.complete:
                        text = shown.text
                        size += len(text)
                    else:
                        line["error"] = line["error"] or f"the result {shown.problem}; see /jobs/{r['id']}"
                records.append(batches.result_record(line, text))
            chunks.append(
                batches.csv_lines(records, first)
                if fmt == "csv"
                else "".join(batches.jsonl_line(rec) for rec in records)
            )
            first, after = False, rows[-1]["batch_index"]
        if first and fmt == "csv":
            chunks.append(batches.csv_lines([], True))
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-store")
        kind = b"text/csv" if fmt == "csv" else b"application/x-ndjson"
        request.setHeader(b"Content-Type", kind + b"; charset=utf-8")
        request.setHeader(b"Content-Disposition", f'attachment; filename="batch-{batch_id}-results.{fmt}"'.encode())
        return "".join(chunks).encode("utf-8")
