"""The generation run: brainstorm task pools, then one example per planned item, within a budget, resumable."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from synthembed.config import GenerateConfig
from synthembed.formats.examples import content_hash
from synthembed.generate.backends.base import Backend, BackendError, Completion
from synthembed.generate.brainstorm import brainstorm, read_task_pool, screen_pool
from synthembed.generate.card import write_card
from synthembed.generate.dispatch import Budget, Dispatcher, Job, Paid
from synthembed.generate.ledger import Ledger
from synthembed.generate.parse import ParseError, extract_json_object
from synthembed.generate.plan import Item, check_options, example_id, plan_items, planned_count
from synthembed.generate.progress import RunProgress
from synthembed.generate.validate import check
from synthembed.tasks.families import FAMILIES

log = logging.getLogger(__name__)


INTERRUPTED = "interrupted; rerun the same command to resume"


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
    stopped: str | None = None  # why the run ended early: "budget", "interrupted" or "unreachable"
    families_without_tasks: list[str] = field(default_factory=list)
    brainstorm: Counter = field(default_factory=Counter)  # brainstorm calls by outcome: parsed, rejected, failed
    tasks_rejected: Counter = field(default_factory=Counter)  # reason -> brainstormed tasks dropped


class GenerateStopped(RuntimeError):
    """The run ended early (interrupted, or the server unreachable). What was paid for is in the ledger and the
    outputs are written; the same command resumes. `exit_code` is what the command line exits with."""

    def __init__(self, message: str, report: RunReport, exit_code: int):
        super().__init__(message)
        self.report, self.exit_code = report, exit_code


def make_backend(cfg: GenerateConfig) -> Backend:
    if cfg.backend == "openai":
        from synthembed.generate.backends.openai import OpenAIBackend

        return OpenAIBackend(cfg.model, cfg.base_url, cfg.api_key_env, cfg.concurrency, cfg.timeout_s, cfg.max_retries)
    from synthembed.generate.backends.local import LocalBackend

    return LocalBackend(cfg.model, batch_size=cfg.batch_size, repetition_penalty=cfg.repetition_penalty)


def run_generate(cfg: GenerateConfig, backend: Backend | None = None, show_progress: bool = True) -> RunReport:
    return asyncio.run(generate(cfg, backend, show_progress))


async def generate(cfg: GenerateConfig, backend: Backend | None = None, show_progress: bool = True) -> RunReport:
    """Brainstorm (or read) the task pool, then ask for every pending item. Raises GenerateStopped when
    interrupted or when the server cannot be reached, after recording and exporting what came back."""
    check_options(cfg)
    pool_file = read_task_pool(cfg.task_pool) if cfg.task_pool is not None else None
    started = time.perf_counter()
    ledger = Ledger(Path(cfg.output_dir) / "ledger.sqlite")
    backend = backend or make_backend(cfg)
    budget = Budget(cfg, cfg.resolved_price(), ledger.totals())
    # A reply in flight can take one request timeout: waiting that long after an interrupt loses none of them.
    dispatcher = Dispatcher(backend, ledger, budget, grace_s=cfg.timeout_s)
    report = RunReport(requested=planned_count(cfg))
    try:
        with _interrupts_to(dispatcher):
            pool = await _task_pool(cfg, pool_file, dispatcher, ledger, report)
            if not dispatcher.stopped:
                await _run_items(cfg, pool, dispatcher, ledger, report, show_progress)
    finally:
        await backend.aclose()
        report.stopped = dispatcher.stopped
        report.stopped_by_budget = dispatcher.stopped == "budget"
        _summarise(report, ledger, budget)
        report.seconds = time.perf_counter() - started
        export(cfg, ledger, report)
        ledger.close()
    if dispatcher.stopped == "interrupted":
        raise GenerateStopped(INTERRUPTED, report, 130)
    if dispatcher.stopped == "unreachable":
        raise GenerateStopped(f"{dispatcher.unreachable}. Check the server address (base_url) and that the "
                              "server runs, then rerun the same command.", report, 1)
    return report


@contextmanager
def _interrupts_to(dispatcher: Dispatcher):
    """Route SIGINT to the dispatcher (a graceful stop) while the run is on; elsewhere Python's default."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, dispatcher.interrupt)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or a loop without signals
        installed = False
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


async def _task_pool(cfg: GenerateConfig, pool_file: dict | None, dispatcher: Dispatcher, ledger: Ledger,
                     report: RunReport) -> dict[str, list[str]]:
    raw = pool_file if pool_file is not None else await brainstorm(cfg, dispatcher, ledger)
    pool, rejected = screen_pool(raw)
    report.tasks_rejected = Counter(r["reason"] for r in rejected)
    if not dispatcher.stopped:  # a partial pool from a stopped brainstorm is rebuilt by the next run
        out = Path(cfg.output_dir)
        _write_atomic(out / "tasks.json", json.dumps(pool, indent=1, ensure_ascii=False))
        _write_atomic(out / "tasks_rejected.jsonl", _jsonl(rejected))
    return pool


async def _run_items(cfg, pool, dispatcher: Dispatcher, ledger: Ledger, report: RunReport, show_progress) -> None:
    items = plan_items(cfg, pool)
    report.families_without_tasks = [
        f for f in cfg.families if FAMILIES[f].brainstorm and cfg.families[f] > 0 and not pool.get(f)
    ]
    done = ledger.finished_items()
    pending = [item for item in items if item.id not in done]
    with RunProgress(len(items), len(items) - len(pending), enabled=show_progress) as progress:
        await dispatcher.run(_item_job(cfg, item, ledger, dispatcher.backend.model, progress) for item in pending)


def _item_job(cfg: GenerateConfig, item: Item, ledger: Ledger, model: str, progress: RunProgress) -> Job:
    def answered(key: str, done: Completion, paid: Paid | None) -> None:
        verdict, record, digest = judge(cfg, item, done, key, model)
        status = ledger.record_item(item.id, item.family, item.language, key, verdict, record, digest, paid)
        progress.update(kept=status == "kept", rejected=status == "rejected", tokens=done.tokens_out)

    def failed(key: str, err: BackendError) -> None:
        ledger.record_item(item.id, item.family, item.language, key, f"request_failed: {err}", None, None)
        progress.update(failed=1)

    return Job(item.request, answered, failed)


def judge(cfg: GenerateConfig, item: Item, done: Completion, key: str, model: str):
    """(verdict or None when kept, the record to store, its content hash)."""
    try:
        output = extract_json_object(done.text)
    except ParseError as err:
        return err.reason, None, None
    family = FAMILIES[item.family]
    verdict = check(item.family, output, item.params, check_language=cfg.check_language)
    fields = {k: output.get(k) for k in family.keys}
    record = {"id": example_id(item.id, key), "family": item.family, "task": item.task, "language": item.language,
              "params": item.params, **fields, "model": model, "key": key}
    return verdict, record, content_hash(item.family, output, family.keys)


def _summarise(report: RunReport, ledger: Ledger, budget: Budget) -> None:
    statuses, reasons = ledger.status_counts()
    report.kept = statuses["kept"]
    report.failed = statuses["failed"]
    report.returned = statuses["kept"] + statuses["rejected"]
    report.rejected = Counter({r: n for r, n in reasons.items() if r != "request_failed"})
    report.brainstorm = ledger.brainstorm_counts()
    totals = ledger.totals()
    report.tokens_in, report.tokens_out = totals.tokens_in, totals.tokens_out
    report.cost = budget.cost(totals.tokens_in, totals.tokens_out)


def export(cfg: GenerateConfig, ledger: Ledger, report: RunReport) -> None:
    """Rewrite examples.jsonl and rejected.jsonl from the ledger (atomically: a kill never leaves half a file)."""
    out = Path(cfg.output_dir)
    kept = [{**r, "id": example_id(r["id"], r["key"])} for r in ledger.kept_records()]  # old ledgers: item ids
    if kept or report.stopped in (None, "budget"):  # a run cut short with nothing kept leaves no empty file
        _write_atomic(out / "examples.jsonl", _jsonl(kept))
    rows = ledger.db.execute(
        "SELECT i.item, i.status, i.reason, r.response FROM items i LEFT JOIN requests r ON r.key = i.key "
        "WHERE i.status != 'kept' ORDER BY i.item"
    )
    rejected = ledger.unusable_brainstorms() + [{"id": a, "status": b, "reason": c, "response": d}
                                                for a, b, c, d in rows]
    _write_atomic(out / "rejected.jsonl", _jsonl(rejected))
    write_card(out, cfg, kept, report)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
