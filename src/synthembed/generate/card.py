"""The data card of a generation run: what was asked, kept and rejected, in which languages, at what cost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rich.table import Table

STOPPED = {"budget": "budget reached", "interrupted": "interrupted", "unreachable": "server unreachable"}


def summary_table(report) -> Table:
    """The table a run ends with: requested, returned, kept, rejected by reason."""
    table = Table(title="generation")
    table.add_column("count")
    table.add_column("n", justify="right")
    table.add_row("requested", str(report.requested))
    table.add_row("returned", str(report.returned))
    table.add_row("kept", f"[green]{report.kept}")
    for reason, n in report.rejected.most_common():
        table.add_row(f"rejected: {reason}", f"[yellow]{n}")
    if report.failed:
        table.add_row("failed (retried next run)", f"[red]{report.failed}")
    if report.brainstorm:
        calls = report.brainstorm
        table.add_row("brainstorm calls parsed / rejected / failed",
                      f"{calls['parsed']} / {calls['rejected']} / {calls['failed']}")
    for reason, n in report.tasks_rejected.most_common():
        table.add_row(f"tasks rejected: {reason}", f"[yellow]{n}")
    table.add_row("tokens in / out", f"{report.tokens_in:,} / {report.tokens_out:,}")
    table.add_row("cost (USD)", f"{report.cost:.4f}")
    if report.stopped:
        table.add_row("stopped early", f"[red]{STOPPED[report.stopped]}")
    return table


def card_data(cfg, kept: list[dict], report) -> dict:
    pool_path = Path(cfg.output_dir) / "tasks.json"
    pool = json.loads(pool_path.read_text()) if pool_path.is_file() else {}
    return {
        "generator": {"backend": cfg.backend, "model": cfg.model, "shard": cfg.shard, "seed": cfg.seed},
        "requested": report.requested,
        "returned": report.returned,
        "kept": report.kept,
        "kept_fraction_of_returned": round(report.kept / report.returned, 4) if report.returned else None,
        "rejected": dict(report.rejected.most_common()),
        "failed": report.failed,
        "tokens": {"input": report.tokens_in, "output": report.tokens_out},
        "cost_usd": round(report.cost, 6),
        "seconds": round(report.seconds, 2),
        "stopped_by_budget": report.stopped_by_budget,
        "stopped": report.stopped,
        "brainstorm_calls": dict(report.brainstorm),
        "tasks_rejected": dict(report.tasks_rejected.most_common()),
        "task_pool_sizes": {family: len(tasks) for family, tasks in pool.items()},
        "families_without_tasks": report.families_without_tasks,
        "by_family": dict(Counter(r["family"] for r in kept).most_common()),
        "by_language": dict(Counter(r["language"] for r in kept).most_common()),
    }


def write_card(out: Path, cfg, kept: list[dict], report) -> dict:
    data = card_data(cfg, kept, report)
    (out / "data_card.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    (out / "data_card.md").write_text(_markdown(data))
    return data


def _markdown(d: dict) -> str:
    g = d["generator"]
    lines = [
        "# Data card",
        "",
        f"Synthetic embedding-training data written by `{g['model']}` ({g['backend']} backend, shard {g['shard']},"
        f" seed {g['seed']}) with the prompts of Wang et al., *Improving Text Embeddings with Large Language Models*"
        " (2023).",
        "",
        "| | count |",
        "|---|---:|",
        f"| requested | {d['requested']} |",
        f"| returned | {d['returned']} |",
        f"| kept | {d['kept']} |",
        *(f"| rejected: {reason} | {n} |" for reason, n in d["rejected"].items()),
        f"| failed requests | {d['failed']} |",
        "",
        f"Tokens: {d['tokens']['input']:,} in, {d['tokens']['output']:,} out; cost ${d['cost_usd']:.4f};"
        f" {d['seconds']:.1f} s." + (f" Stopped early: {STOPPED[d['stopped']]}." if d["stopped"] else ""),
        "",
        _counts("Family", d["by_family"]),
        _counts("Language", d["by_language"]),
    ]
    if d["task_pool_sizes"]:
        lines.append(_counts("Task pool (unique tasks)", d["task_pool_sizes"]))
    if d["brainstorm_calls"]:
        lines.append(_counts("Brainstorm calls", d["brainstorm_calls"]))
    if d["tasks_rejected"]:
        lines.append(_counts("Brainstormed tasks rejected", d["tasks_rejected"]))
    if d["families_without_tasks"]:
        lines.append(f"No task survived brainstorming for: {', '.join(d['families_without_tasks'])}.\n")
    return "\n".join(lines)


def _counts(title: str, counts: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"## {title}\n\n| {title.lower()} | n |\n|---|---:|\n{rows}\n"
