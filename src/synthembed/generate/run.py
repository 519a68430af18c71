"""The generation run: brainstorm task pools, then one example per planned item, within a budget, resumable."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from synthembed.config import GenerateConfig, Price
from synthembed.generate.backends.base import Backend, BackendError, ChatRequest, Completion
from synthembed.generate.card import write_card
from synthembed.generate.ledger import Ledger, Totals
from synthembed.generate.parse import ParseError, extract_json_object, extract_list
from synthembed.generate.plan import Item, brainstorm_requests, content_hash, dedupe_tasks, plan_items
from synthembed.generate.progress import RunProgress
from synthembed.generate.validate import check
from synthembed.tasks.families import FAMILIES

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    requested: int = 0  # items planned for this shard
    returned: int = 0  # items with a response (this run and earlier ones)
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    failed: int = 0  # requests that failed for good; retried by the next run
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    families_without_tasks: list[str] = field(default_factory=list)


class Budget:
    """Stops dispatching before the token or cost limit, reserving an estimate for requests in flight."""

    def __init__(self, cfg: GenerateConfig, price: Price | None, spent: Totals):
        self.max_tokens, self.max_cost, self.price = cfg.max_tokens_total, cfg.max_cost, price
        self.tokens_in, self.tokens_out, self.calls = spent.tokens_in, spent.tokens_out, spent.requests
        self.in_flight = 0

    def cost(self, tokens_in: int | None = None, tokens_out: int | None = None) -> float:
        if self.price is None:
            return 0.0
        t_in = self.tokens_in if tokens_in is None else tokens_in
        t_out = self.tokens_out if tokens_out is None else tokens_out
        return (t_in * self.price.input + t_out * self.price.output) / 1e6

    def add(self, done: Completion) -> None:
        self.tokens_in, self.tokens_out, self.calls = self.tokens_in + done.tokens_in, self.tokens_out + done.tokens_out, self.calls + 1

    def allows_another(self, request: ChatRequest) -> bool:
        # Reserve the mean of what calls cost so far (the request's own size before the first answer).
        mean_in = self.tokens_in / self.calls if self.calls else len(request.prompt) / 4
        mean_out = self.tokens_out / self.calls if self.calls else request.max_tokens / 2
        n = self.in_flight + 1
        t_in, t_out = self.tokens_in + n * mean_in, self.tokens_out + n * mean_out
        if self.max_tokens is not None and t_in + t_out > self.max_tokens:
            return False
        return self.max_cost is None or self.cost(t_in, t_out) <= self.max_cost


def make_backend(cfg: GenerateConfig) -> Backend:
    if cfg.backend == "openai":
        from synthembed.generate.backends.openai import OpenAIBackend

        return OpenAIBackend(cfg.model, cfg.base_url, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries)
    from synthembed.generate.backends.local import LocalBackend

    return LocalBackend(cfg.model, batch_size=cfg.batch_size, repetition_penalty=cfg.repetition_penalty)


def run_generate(cfg: GenerateConfig, backend: Backend | None = None, show_progress: bool = True) -> RunReport:
    return asyncio.run(generate(cfg, backend, show_progress))


async def generate(cfg: GenerateConfig, backend: Backend | None = None, show_progress: bool = True) -> RunReport:
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    ledger = Ledger(out / "ledger.sqlite")
    backend = backend or make_backend(cfg)
    budget = Budget(cfg, cfg.resolved_price(), ledger.totals())
    report = RunReport()
    try:
        pool = await _task_pool(cfg, backend, ledger, budget)
        items = plan_items(cfg, pool)
        report.requested = len(items)
        report.families_without_tasks = [
            f for f in cfg.families if FAMILIES[f].brainstorm and cfg.families[f] > 0 and not pool.get(f)
        ]
        done = ledger.finished_items()
        pending = [item for item in items if item.id not in done]
        with RunProgress(len(items), len(items) - len(pending), enabled=show_progress) as progress:
            report.stopped_by_budget = await _run_items(cfg, pending, backend, ledger, budget, progress)
    finally:
        await backend.aclose()
        _summarise(report, ledger, budget)
        report.seconds = time.perf_counter() - started
        export(cfg, ledger, report)
        ledger.close()
    return report


async def _task_pool(cfg: GenerateConfig, backend: Backend, ledger: Ledger, budget: Budget) -> dict[str, list[str]]:
    if cfg.task_pool is not None:
        if not Path(cfg.task_pool).is_file():
            raise FileNotFoundError(f"{cfg.task_pool}: task pool not found (write one with a brainstorm run)")
        return json.loads(Path(cfg.task_pool).read_text())
    calls = list(brainstorm_requests(cfg))

    async def one(family: str, request: ChatRequest) -> list[str]:
        key = request.key(backend.model)
        done = ledger.response(key)
        if done is None:
            t0 = time.perf_counter()
            try:
                done = await backend.complete(request)
            except BackendError as err:
                log.warning("brainstorm call for %s failed: %s", family, err)
                return []
            ledger.record_request(key, "brainstorm", backend.model, request.prompt, done, time.perf_counter() - t0)
            budget.add(done)
        try:
            return extract_list(done.text)
        except ParseError:
            return []

    lists = await asyncio.gather(*(one(family, request) for family, _, request in calls))
    pool: dict[str, list[str]] = {}
    for (family, _, _), tasks in zip(calls, lists):
        pool.setdefault(family, []).extend(tasks)
    pool = {family: dedupe_tasks(tasks) for family, tasks in pool.items()}
    _write_atomic(Path(cfg.output_dir) / "tasks.json", json.dumps(pool, indent=1, ensure_ascii=False))
    return pool


async def _run_items(cfg, pending: list[Item], backend: Backend, ledger: Ledger, budget: Budget, progress) -> bool:
    """Dispatch with at most `backend.max_concurrency` in flight; returns whether the budget stopped it."""
    slots = asyncio.Semaphore(backend.max_concurrency)
    running: set[asyncio.Task] = set()

    async def one(item: Item) -> None:
        try:
            key = item.request.key(backend.model)
            cached = ledger.response(key)
            t0 = time.perf_counter()
            try:
                done = cached or await backend.complete(item.request)
            except BackendError as err:
                ledger.record_item(item.id, item.family, item.language, key, f"request_failed: {err}", None, None)
                progress.update(failed=1)
                return
            verdict, record, digest = judge(cfg, item, done, key, backend.model)
            paid = None if cached else (backend.model, item.request.prompt, done, time.perf_counter() - t0)
            status = ledger.record_item(item.id, item.family, item.language, key, verdict, record, digest, paid)
            if not cached:
                budget.add(done)
            progress.update(kept=status == "kept", rejected=status == "rejected", tokens=done.tokens_out)
        finally:
            budget.in_flight -= 1
            slots.release()

    stopped = False
    for item in pending:
        await slots.acquire()
        if not budget.allows_another(item.request):
            slots.release()
            stopped = True
            log.warning("budget reached: stopping before %s", item.id)
            break
        budget.in_flight += 1
        task = asyncio.create_task(one(item))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return stopped


def judge(cfg: GenerateConfig, item: Item, done: Completion, key: str, model: str):
    """(verdict or None when kept, the record to store, its content hash)."""
    try:
        output = extract_json_object(done.text)
    except ParseError as err:
        return err.reason, None, None
    family = FAMILIES[item.family]
    verdict = check(item.family, output, item.params, check_language=cfg.check_language)
    fields = {k: output.get(k) for k in family.keys}
    record = {"id": item.id, "family": item.family, "task": item.task, "language": item.language,
              "params": item.params, **fields, "model": model, "key": key}
    return verdict, record, content_hash(item.family, output, family.keys)


def _summarise(report: RunReport, ledger: Ledger, budget: Budget) -> None:
    statuses, reasons = ledger.status_counts()
    report.kept = statuses["kept"]
    report.failed = statuses["failed"]
    report.returned = statuses["kept"] + statuses["rejected"]
    report.rejected = Counter({r: n for r, n in reasons.items() if r != "request_failed"})
    totals = ledger.totals()
    report.tokens_in, report.tokens_out = totals.tokens_in, totals.tokens_out
    report.cost = budget.cost(totals.tokens_in, totals.tokens_out)


def export(cfg: GenerateConfig, ledger: Ledger, report: RunReport) -> None:
    """Rewrite examples.jsonl and rejected.jsonl from the ledger (atomically: a kill never leaves half a file)."""
    out = Path(cfg.output_dir)
    kept = ledger.kept_records()
    _write_atomic(out / "examples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    rows = ledger.db.execute(
        "SELECT i.item, i.status, i.reason, r.response FROM items i LEFT JOIN requests r ON r.key = i.key "
        "WHERE i.status != 'kept' ORDER BY i.item"
    )
    rejected = [{"id": a, "status": b, "reason": c, "response": d} for a, b, c, d in rows]
    _write_atomic(out / "rejected.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))
    write_card(out, cfg, kept, report)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
