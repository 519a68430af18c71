"""The task pool: brainstormed (through the dispatcher, so within the budget, every call's outcome in the ledger)
or read from a tasks.json, then screened as examples are: list numbering stripped, junk rejected with a reason
(`tasks.check`), near duplicates dropped. Rejected tasks are written beside the pool, never silently lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from synthembed.config import ConfigError, GenerateConfig
from synthembed.generate.backends.base import BackendError, Completion
from synthembed.generate.dispatch import Dispatcher, Job, Paid
from synthembed.generate.ledger import Ledger
from synthembed.generate.parse import ParseError, extract_list
from synthembed.generate.plan import brainstorm_requests, dedupe_tasks
from synthembed.tasks.check import check_task, clean_task
from synthembed.tasks.families import FAMILIES


def read_task_pool(path: Path) -> dict[str, list]:
    """A tasks.json: {family: [task definition, ...]}; errors name the file and the family."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: task pool not found (write one with a brainstorm run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object mapping each family to a list of task definitions")
    for family, tasks in data.items():
        if family not in FAMILIES:
            raise ConfigError(f"{path}: field '{family}': unknown family; allowed: {list(FAMILIES)}")
        if not isinstance(tasks, list):
            raise ConfigError(f"{path}: field '{family}': expected a list of task definitions")
    return data


async def brainstorm(cfg: GenerateConfig, dispatcher: Dispatcher, ledger: Ledger) -> dict[str, list[str]]:
    """Every brainstorm call of the run (replies in the ledger are reused); family -> tasks in call order."""
    calls = list(brainstorm_requests(cfg))
    lists: dict[int, list[str]] = {}

    def job(index: int, family: str, call: int, request) -> Job:
        name = f"brainstorm-{family}-{call:03d}"

        def answered(key: str, done: Completion, paid: Paid | None) -> None:
            try:
                lists[index], reason = extract_list(done.text), None
            except ParseError as err:
                reason = err.reason
            ledger.record_brainstorm(name, family, key, reason, paid)

        def failed(key: str, err: BackendError) -> None:
            ledger.record_brainstorm(name, family, key, f"request_failed: {err}")

        return Job(request, answered, failed)

    await dispatcher.run(job(i, *call) for i, call in enumerate(calls))
    pool: dict[str, list[str]] = {}
    for index, (family, _, _) in enumerate(calls):
        pool.setdefault(family, []).extend(lists.get(index, []))
    return pool


def screen_pool(pool: dict[str, list]) -> tuple[dict[str, list[str]], list[dict]]:
    """(family -> usable distinct tasks, rejected tasks as {family, task, reason})."""
    kept: dict[str, list[str]] = {}
    rejected: list[dict] = []
    for family, tasks in pool.items():
        valid = []
        for raw in tasks:
            task = clean_task(raw) if isinstance(raw, str) else raw
            reason = check_task(task)
            if reason:
                rejected.append({"family": family, "task": raw, "reason": reason})
            else:
                valid.append(task)
        kept[family] = dedupe_tasks(valid)
        unclaimed = Counter(kept[family])
        for task in valid:
            if unclaimed[task] > 0:
                unclaimed[task] -= 1
            else:
                rejected.append({"family": family, "task": task, "reason": "duplicate"})
    return kept, rejected
