"""Batch pages (issue 19): a batch's aggregate progress, jobs per status, cost so far and estimate,
a paged list of its jobs, cancel and reprice all, and its results as JSON Lines or CSV.

Every URL goes through the store's ``owned_batch``: another member's batch is "not found". The
results download reads the batch in pages and shows each result in a helper within the budget
a job's JSON download has (``market.jobs.results``): a result too large to convert is null with
its reason, and its own job page has the encoded bytes.
"""

from __future__ import annotations

from market.core import money
from market.core.errors import MarketError
from market.jobs import batches
from market.store import batches as sql_batches
from market.web.context import Pages, field

#: jobs listed on one page of a batch
PAGE = 50
#: characters of one result in the results download, and of the whole download (it is built in
#: memory): past it, a job's result is null with the reason, and ``market batch results`` pages it all
RESULT_CHARS = 1024 * 1024
DOWNLOAD_CHARS = 64 * 1024 * 1024


class BatchPages(Pages):
    """A batch, its jobs page by page, cancel, price and results."""

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
