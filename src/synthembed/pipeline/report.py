"""The pipeline's one-page report: time and cost per stage, the data card in brief, training curves, and the base
and trained model's scores side by side (table + charts), with bootstrap intervals on the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthembed.pipeline import MARK

HELDOUT = "HeldOut"
PER_QUERY = Path("per_query") / f"{HELDOUT}.json"  # query id -> nDCG@10, beside an evaluation's task results


def write_pipeline_report(out: Path, stages: list[dict], runs: dict[str, list[dict]]) -> Path:
    lines = ["# Pipeline report", "", "## Stages", "", "| stage | this run | time | result |", "|---|---|---:|---|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {'skipped (up to date)' if s['skipped'] else 'ran'} | "
                     f"{_duration(s['seconds'])} | {_result(s)} |")
    total = sum(s["seconds"] for s in stages)
    lines.append(f"| **all** | | **{_duration(total)}** | stage times include earlier interrupted runs |")
    lines += ["", "## Scores", "", *_scores(runs), "", *_lift(out / "evaluate"),
              "![base versus trained](evaluate/report.png)", ""]
    lines += _data(out / "generate" / "data_card.json", out / "data" / MARK)
    lines += _training(out / "train" / "model" / "training_history.json", out / "training.png")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate_with_per_query(ev, show_progress: bool = True) -> list[dict]:
    """Run an evaluation (`EvaluateConfig` holding the held-out task) and keep the held-out split's per-query
    nDCG@10 beside its results, for the report's intervals."""
    from synthembed.evaluate.cache import EmbeddingCache
    from synthembed.evaluate.run import run_tasks
    from synthembed.formats.offline import cache_dir
    from synthembed.model.load import load_embedder

    embedder = load_embedder(ev.model, max_length=ev.max_length, dtype=ev.dtype)
    results = run_tasks(ev, embedder=embedder, show_progress=show_progress)
    task = next((t for t in ev.tasks if t.name == HELDOUT), None)
    if task is not None:
        cache = EmbeddingCache(cache_dir() / "evaluate" / "embeddings", embedder.fingerprint) if ev.cache else None
        path = Path(ev.output_dir) / PER_QUERY
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(per_query_ndcg(embedder, task.path, cache=cache), indent=1))
    return results


def per_query_ndcg(embedder, beir_dir: Path, k: int = 10, cache=None) -> dict[str, float]:
    """nDCG@k of every judged query of a BEIR directory (queries as written, documents plain), by pytrec_eval;
    their mean is the retrieval evaluator's main score."""
    import pytrec_eval

    from synthembed.evaluate.cache import embed
    from synthembed.evaluate.retrieval import document_text
    from synthembed.evaluate.search import top_k
    from synthembed.formats.beir import load_beir

    data = load_beir(beir_dir, "test")
    qrels = {q: docs for q, docs in data.qrels.items() if docs}
    query_ids, doc_ids = [q for q in data.queries if q in qrels], list(data.corpus)
    # "": the queries are formatted already (None would add the model's saved query prompt), as run_tasks does
    queries = embed(embedder, [data.queries[q] for q in query_ids], "query", "", cache=cache)  # (nq, dim)
    docs = embed(embedder, [document_text(*data.corpus[d]) for d in doc_ids], "document", None, cache=cache)
    scores, index = top_k(queries, docs, min(k, len(doc_ids)))  # (nq, k)
    run = {q: {doc_ids[j]: float(s) for s, j in zip(scores[row], index[row])} for row, q in enumerate(query_ids)}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}"}).evaluate(run)
    return {q: per_query[q][f"ndcg_cut_{k}"] for q in query_ids}


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values (queries) with replacement."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)  # (resamples,)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _lift(evaluate_dir: Path) -> list[str]:
    """Held-out nDCG@10 of base and trained with 95% intervals, and the paired interval of their difference."""
    paths = [evaluate_dir / label / PER_QUERY for label in ("base", "trained")]
    if not all(p.is_file() for p in paths):
        return []
    base, trained = (json.loads(p.read_text()) for p in paths)
    queries = sorted(base)
    if sorted(trained) != queries:
        return []
    b, t = np.array([base[q] for q in queries]), np.array([trained[q] for q in queries])
    rows = [("base", b), ("trained", t), ("trained - base", t - b)]
    lines = [f"Held-out nDCG@10 x100 over {len(queries)} queries, with 95% percentile bootstrap intervals (10,000 "
             "resamples of the queries, seed 0; the difference resamples the same queries for both models).", "",
             "| | nDCG@10 | 95% interval |", "|---|---:|---|"]
    for label, values in rows:
        low, high = bootstrap_interval(values)
        lines.append(f"| {label} | {100 * values.mean():+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] |"
                     if label == "trained - base" else
                     f"| {label} | {100 * values.mean():.2f} | [{100 * low:.2f}, {100 * high:.2f}] |")
    low, high = bootstrap_interval(t - b)
    verdict = ("the trained model is ahead (the interval of the difference lies above 0)" if low > 0 else
               "the trained model is behind (the interval of the difference lies below 0)" if high < 0 else
               "the difference is within the noise of this many queries (its interval includes 0)")
    return [*lines, "", f"On this split {verdict}.", ""]


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
