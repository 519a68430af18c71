"""Side-by-side report of evaluation runs: a markdown table of main scores and a grouped bar chart (PNG)."""

from __future__ import annotations

import json
from pathlib import Path


def load_results(run_dir: Path) -> list[dict]:
    """The per-task result files of one `synthembed evaluate` output directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such evaluation output directory")
    results = []
    for path in sorted(run_dir.glob("*.json")):
        row = json.loads(path.read_text())
        if {"task_name", "main_score", "model"} <= set(row):
            results.append(row)
    if not results:
        raise FileNotFoundError(f"{run_dir}: holds no task results (*.json with task_name, main_score)")
    return results


def write_report(runs: dict[str, list[dict]], out: Path, title: str = "Evaluation") -> Path:
    """`runs`: label -> results. Writes out/report.md and out/report.png; returns the markdown path.
    Results scored at a Matryoshka dim (`dim`) get a row of their own, `label @dim`, under the task's column.
    A row's average is over every column, so a row missing a task shows "—" instead."""
    runs = rows_by_dim(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r["task_name"] for results in runs.values() for r in results))
    table = {label: {r["task_name"]: 100 * r["main_score"] for r in results} for label, results in runs.items()}
    header = "| model | " + " | ".join(tasks) + " | average |"
    lines = [f"# {title}", "", "Main score of each task (x100: nDCG@10, Spearman, accuracy, F1 ...).", "",
             header, "|---|" + "---:|" * (len(tasks) + 1)]
    for label, scores in table.items():
        cells = [f"{scores[t]:.2f}" if t in scores else "" for t in tasks]
        # a mean over fewer tasks (mteb tasks have no @dim rows; runs compared may differ) is not comparable
        mean = f"{sum(scores[t] for t in tasks) / len(tasks):.2f}" if all(t in scores for t in tasks) else "—"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean} |")
    lines += ["", "![main scores](report.png)", ""]
    _chart(table, tasks, out / "report.png", title)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def rows_by_dim(runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """label -> results, with each run's results at a Matryoshka dim moved to a row `label @dim` and named by
    their task (`SciFact@64` -> `SciFact`), so the columns stay one per task and each row's average one size's."""
    rows: dict[str, list[dict]] = {}
    for label, results in runs.items():
        for r in results:
            dim = r.get("dim")
            row = label if dim is None else f"{label} @{dim}"
            task = r["task_name"] if dim is None else r["task_name"].removesuffix(f"@{dim}")
            rows.setdefault(row, []).append({**r, "task_name": task})
    return rows


def _chart(table: dict[str, dict[str, float]], tasks: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(len(table), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks) + 2), 4))
    for i, (label, scores) in enumerate(table.items()):
        xs = [j + i * width for j in range(len(tasks))]
        ax.bar(xs, [scores.get(t, 0) for t in tasks], width, label=label)
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(tasks))], tasks, rotation=20, ha="right")
    ax.set_ylabel("main score (x100)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
