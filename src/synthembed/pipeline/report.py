"""The pipeline's one-page report: time and cost per stage, the data card in brief, training curves, and the base
and trained model's scores side by side (table + charts)."""

from __future__ import annotations

import json
from pathlib import Path

from synthembed.pipeline.run import MARK


def write_pipeline_report(out: Path, stages: list[dict], runs: dict[str, list[dict]]) -> Path:
    lines = ["# Pipeline report", "", "## Stages", "", "| stage | this run | time | result |", "|---|---|---:|---|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {'skipped (up to date)' if s['skipped'] else 'ran'} | "
                     f"{_duration(s['seconds'])} | {_result(s)} |")
    total = sum(s["seconds"] for s in stages)
    lines.append(f"| **all** | | **{_duration(total)}** | stage times include earlier interrupted runs |")
    lines += ["", "## Scores", "", *_scores(runs), "", "![base versus trained](evaluate/report.png)", ""]
    lines += _data(out / "generate" / "data_card.json", out / "data" / MARK)
    lines += _training(out / "train" / "model" / "training_history.json", out / "training.png")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path



def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes else f"{sec} s"


def _result(stage: dict) -> str:
    if stage["stage"] == "generate":
        return (f"{stage['kept']} kept of {stage['requested']} requested, {stage['tokens']:,} tokens, "
                f"${stage['cost_usd']:.4f}")
    if stage["stage"] == "split":
        return f"{stage['train']} training examples, {stage['heldout']} held out"
    if stage["stage"] == "train":
        return f"`{stage['model']}`"
    return ", ".join(f"{task} {100 * score:.2f}" for task, score in stage["scores"].items())


def _scores(runs: dict[str, list[dict]]) -> list[str]:
    tasks = list(dict.fromkeys(r["task_name"] for results in runs.values() for r in results))
    lines = ["Main score x100 (HeldOut: nDCG@10 of the held-out generated examples).", "",
             "| model | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for label, results in runs.items():
        scores = {r["task_name"]: 100 * r["main_score"] for r in results}
        lines.append(f"| {label} | " + " | ".join(f"{scores[t]:.2f}" if t in scores else "" for t in tasks) + " |")
    return lines


def _data(card_path: Path, split_mark: Path) -> list[str]:
    if not card_path.is_file():
        return []
    card = json.loads(card_path.read_text())
    rejected = ", ".join(f"{reason} {n}" for reason, n in card["rejected"].items()) or "none"
    families = ", ".join(f"{f} {n}" for f, n in card["by_family"].items())
    lines = ["## Data", "", f"Generator: {card['generator']['backend']} `{card['generator']['model']}`. "
             f"Kept {card['kept']} of {card['returned']} replies ({families}); rejected: {rejected}. "
             "Full card: [generate/data_card.md](generate/data_card.md).", ""]
    if split_mark.is_file():
        split = json.loads(split_mark.read_text())
        lines += [f"Split: {split['train']} examples for training, {split['heldout']} held out for evaluation.", ""]
    return lines


def _training(history_path: Path, png: Path) -> list[str]:
    if not history_path.is_file():
        return []
    history = json.loads(history_path.read_text())
    if not history:
        return []
    _curves(history, png)
    rates = sorted(r["examples_per_s"] for r in history)
    median = rates[len(rates) // 2]
    peak = max(r["peak_memory_gb"] for r in history)
    return ["## Training", "", f"{len(history)} steps; loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}; "
            f"median {median:.2f} examples/s; peak memory {peak:.2f} GB.", "", f"![training curves]({png.name})", ""]


def _curves(history: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, (loss, lr) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss.plot(steps, [r["loss"] for r in history], marker=".")
    loss.set(title="InfoNCE loss", xlabel="step")
    lr.plot(steps, [r["lr"] for r in history], color="tab:orange")
    lr.set(title="learning rate", xlabel="step")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
