"""The paper's results table in miniature: Gemma-3-270M with LoRA, one recipe, different training data.

Rows: (a) the base model; (b) synthetic data written by a capable LLM (../shared/data/synthetic-frontier);
(c) synthetic data from the embedded local generator (SmolLM2-135M) and (b-) the same number of frontier rows;
(d) labeled data only (the train splits of SciFact, STSBenchmark and Banking77; with --full the whole splits, and
(d-) as many rows as (b)); (e) synthetic + labeled; and
all-MiniLM-L6-v2 as a reference. Every model is trained with `synthembed train` and scored with the project's
evaluator on the shared suite (bench/suite.py). Finished rows are kept, so an interrupted run resumes.

    python bench/quality.py --local-data runs/local-gen [--synthetic-n 320] [--labeled-per-set 107] [--rows a,b,..]
    python bench/quality.py --full --rows ref,a,b,d-,d --model-b bench/out/train-epoch/model \
        [--tasks SciFact,STSBenchmark]      # whole data sets; resumes by row and by task
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from suite import DATA, quick_suite, shared_suite, summarize

from synthembed.data.labeled import from_beir, from_classification, from_sts
from synthembed.evaluate.run import EvaluateConfig, run_tasks
from synthembed.formats.datasets import load_classification, load_sts
from synthembed.formats.instructions import instruction_for
from synthembed.formats.jsonl import write_jsonl

OUT = Path(__file__).resolve().parent / "out" / "quality"
RESULTS = Path(__file__).resolve().parent / "results"
FRONTIER = DATA / "synthetic-frontier"
# The CPU recipe (as configs/demo.yaml): the paper's loss and LoRA; short texts and few steps.
RECIPE = {"batch_size": 16, "epochs": 1, "lr": 2e-4, "warmup_steps": 2, "query_max_length": 48,
          "doc_max_length": 96, "gradient_checkpointing": False, "hard_negatives": 1, "by_source": False}
# Row (b)'s recipe (bench/train.py --epoch), used for every row trained on whole data sets; the rows were trained
# with mixed batches, the default then, so that stays pinned here
FULL_RECIPE = {"batch_size": 16, "epochs": 1, "hard_negatives": 1, "query_max_length": 192, "doc_max_length": 192,
               "gradient_checkpointing": False, "by_source": False}
# Several labeled files: each batch from one file (sentence-transformers' convention for multi-dataset training),
# so a batch of short Banking77 texts is not padded to a SciFact abstract's length
FULL_LABELED_RECIPE = {**FULL_RECIPE, "by_source": True}
# Tatoeba on whole data sets: 30 widely spoken languages of the paper's list, all their pairs
FULL_TATOEBA = set("""ara ben bul ces cmn dan deu ell fin fra heb hin hun ind ita jpn kor nld nob pes pol por ron
                   rus spa swe tha tur ukr vie""".split())
SAME_AS_B = 450  # labeled rows per set: 3 x 450 = 1,350, about (b)'s 1,360
COLUMNS = [("SciFact", "SciFact"), ("STSBenchmark", "STSB"), ("sts_multi_mt", "STS multi-mt"),
           ("Banking77Classification", "Banking77"), ("tatoeba_accuracy", "Tatoeba"),
           ("xquad_mono", "XQuAD mono"), ("xquad_cross", "XQuAD cross")]


def labeled_sources(per_set: int | None, name: str = "labeled") -> list[Path]:
    """SciFact, STSBenchmark and Banking77 train splits in the labeled layout, `per_set` rows each (None: all)."""
    rng = random.Random(0)
    sets = {
        "scifact": from_beir(DATA / "scifact", "train", instruction_for("SciFact", "Retrieval")),
        "stsbenchmark": from_sts(load_sts(DATA / "stsbenchmark" / "sts-train.csv"), min_score=4.0),
        "banking77": from_classification(load_classification(DATA / "banking77").train,
                                         instruction_for("Banking77Classification", "Classification")),
    }
    return [write_jsonl(OUT / name / f"{key}.jsonl", rng.sample(rows, min(per_set or len(rows), len(rows))))
            for key, rows in sets.items()]


def frontier_subset(n: int) -> Path:
    """n random frontier rows (the same n always gives the same rows)."""
    rows = [line for f in sorted(FRONTIER.glob("*.jsonl")) for line in f.read_text().splitlines() if line.strip()]
    return write_jsonl(OUT / f"frontier-{n}.jsonl", map(json.loads, random.Random(0).sample(rows, n)))


def settings(pairs: list[str]) -> dict[str, str]:
    """["lr=2e-4", "tau=0.05"] -> {"lr": "2e-4", "tau": "0.05"}"""
    return dict(pair.split("=", 1) for pair in pairs)


def weighted(files: list[Path], weights: list[str]) -> list[str]:
    """Synthetic files as `--data PATH[:WEIGHT]`, weighted by file stem (["sts=3"])."""
    by_stem = settings(weights)
    return [f"{f}:{by_stem[f.stem]}" if f.stem in by_stem else str(f) for f in files]


def train_row(name: str, data: list[Path] | list[str], recipe: dict = RECIPE) -> Path:
    out = OUT / "models" / name
    if not (out / "model" / "modules.json").is_file():
        cmd = [sys.executable, "-m", "synthembed.cli", "train", "--model", "gemma-270m", "--output", str(out), "-q"]
        cmd += [a for path in data for a in ("--data", str(path))]
        cmd += [a for k, v in recipe.items() for a in ("--set", f"{k}={v}")]
        subprocess.run(cmd, check=True)
    return out / "model"


def evaluate_row(name: str, model: str, args) -> dict:
    path = OUT / "scores" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    tasks = quick_suite(DATA)
    cfg = EvaluateConfig(model=model, tasks=tasks, output_dir=OUT / "eval" / name, dtype="bf16",
                         max_length=args.max_length)
    started = time.perf_counter()
    results = run_tasks(cfg, show_progress=False)
    row = {**{r["task_name"]: r["main_score"] for r in results}, **summarize(results),
           "eval_s": round(time.perf_counter() - started)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1))
    return row


def evaluate_full(name: str, model: str, args) -> dict:
    """The whole data sets (--tasks narrows them); each task's result is kept as it lands, so a rerun resumes
    with the tasks still missing."""
    out = OUT / "eval-full" / name
    tasks = [t for t in shared_suite(DATA) if _selected(t.name, args.tasks)
             and (t.type != "BitextMining" or t.lang in FULL_TATOEBA)]
    todo = [t for t in tasks if not (out / f"{t.name}.json").is_file()]
    if todo:
        run_tasks(EvaluateConfig(model=model, tasks=todo, output_dir=out, dtype="bf16", max_length=args.max_length),
                  show_progress=False)
    results = [json.loads((out / f"{t.name}.json").read_text()) for t in tasks]
    return {**{r["task_name"]: r["main_score"] for r in results}, **summarize(results)}


def _selected(task: str, prefixes: str | None) -> bool:
    return not prefixes or any(task.startswith(p) for p in prefixes.split(","))


def table(rows: dict[str, dict], args) -> str:
    lines = ["| row | " + " | ".join(label for _, label in COLUMNS) + " | average |",
             "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for name, scores in rows.items():
        values = [100 * scores[key] if scores.get(key) is not None else None for key, _ in COLUMNS]
        known = [v for v in values if v is not None]
        average = f"{sum(known) / len(known):.2f}" if len(known) == len(values) else "—"
        lines.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:.2f}" for v in values) + f" | {average} |")
    return "\n".join(lines)


def chart(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(rows)
    for i, (name, scores) in enumerate(rows.items()):
        ax.bar([c + i * width for c in range(len(COLUMNS))], [100 * (scores.get(k) or 0) for k, _ in COLUMNS],
               width, label=name)  # a task not scored yet draws no bar
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(COLUMNS))], [label for _, label in COLUMNS])
    ax.set_ylabel("score x100")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.08))  # below: no bar hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-data", type=Path, help="a `synthembed generate` output directory (rows c, b-)")
    parser.add_argument("--labeled-per-set", type=int, help="row (d)'s rows from each labeled train split "
                        f"(default: {SAME_AS_B}; with --full, the whole splits, 12,328 rows)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rows", default="ref,a,b,c,b-,d,e")
    parser.add_argument("--synthetic-n", type=int, help="a random subset of the frontier rows (default: all)")
    parser.add_argument("--train-only", action="store_true", help="train the rows' models, evaluate nothing")
    parser.add_argument("--full", action="store_true", help="whole data sets instead of the quick suite")
    parser.add_argument("--tasks", help="with --full: task name prefixes to score, e.g. SciFact,STSBenchmark")
    parser.add_argument("--model-b", type=Path, help="with --full: row (b)'s trained model (e.g. bench/train.py "
                        "--epoch's bench/out/train-epoch/model: all frontier rows, one epoch)")
    parser.add_argument("--b-set", action="append", default=[], metavar="KEY=VALUE",
                        help="with --full: row (b*) is row (b) with these recipe changes, e.g. --b-set lr=2e-4 "
                        "(repeatable)")
    parser.add_argument("--b-weight", action="append", default=[], metavar="FILE=WEIGHT",
                        help="with --full: row (b*)'s copies per epoch of a synthetic file, e.g. sts=3 (repeatable)")
    args = parser.parse_args()
    variant = "-".join(f"{k}{v}" for k, v in {**settings(args.b_set), **settings(args.b_weight)}.items())
    b_star = f"b-{variant}"  # row (b*)'s model and scores directory
    if "b*" in args.rows.split(",") and not variant:
        parser.error("row b* is row b with changes: give --b-set KEY=VALUE or --b-weight FILE=WEIGHT")
    local = args.local_data / "examples.jsonl" if args.local_data else None
    n_local = sum(1 for _ in open(local)) if local else 0
    if args.labeled_per_set is None:
        args.labeled_per_set = 0 if args.full else SAME_AS_B
    per_set = args.labeled_per_set or None
    labeled = labeled_sources(per_set, f"labeled-{per_set or 'all'}")
    frontier = sorted(FRONTIER.glob("*.jsonl"))
    synthetic = [frontier_subset(args.synthetic_n)] if args.synthetic_n else frontier
    n_synthetic = sum(1 for f in synthetic for _ in open(f))
    n_labeled = sum(1 for f in labeled for _ in open(f))
    plan = {
        "ref": ("all-MiniLM-L6-v2 (reference)", lambda: "minilm"),
        "a": ("(a) gemma-270m, untrained", lambda: "gemma-270m"),
        "b": (f"(b) synthetic, frontier LLM ({n_synthetic})",
              lambda: (args.model_b or train_row("b-full", synthetic, FULL_RECIPE)) if args.full
              else train_row("b", synthetic)),
        # with --full: row (b) with the recipe changes of --b-set and --b-weight
        "b*": (f"(b*) synthetic, frontier LLM ({n_synthetic}), {', '.join(args.b_set + args.b_weight)}",
               lambda: train_row(b_star, weighted(synthetic, args.b_weight),
                                 {**FULL_RECIPE, **settings(args.b_set)})),
        "c": (f"(c) synthetic, local SmolLM2-135M ({n_local})", lambda: train_row("c", [local])),
        "b-": (f"(b-) synthetic, frontier LLM, as many as (c) ({n_local})",
               lambda: train_row("b-", [frontier_subset(n_local)])),
        "d": (f"(d) labeled only ({n_labeled})",
              lambda: train_row(f"d-{per_set or 'all'}-full", labeled, FULL_LABELED_RECIPE) if args.full
              else train_row("d", labeled)),
        # with --full: labeled data of (b)'s size in (b)'s recipe (the whole splits are row d)
        "d-": (f"(d-) labeled only, as many as (b) ({3 * SAME_AS_B})",
               lambda: train_row(f"d-{SAME_AS_B}-full", labeled_sources(SAME_AS_B, f"labeled-{SAME_AS_B}"),
                                 FULL_RECIPE)),
        # quick suite: as many examples as (b) and (d), half of each, so that the rows differ in the data's kind
        # only; --full: all of both (the paper's best row)
        "e": (f"(e) synthetic + labeled ({n_synthetic} + {n_labeled})", lambda: train_row(
                  "e-full", [*synthetic, *labeled], FULL_LABELED_RECIPE)) if args.full else
             (f"(e) synthetic + labeled, half each ({n_synthetic // 2} + {3 * (args.labeled_per_set // 2)})",
              lambda: train_row("e", [frontier_subset(n_synthetic // 2),
                                      *labeled_sources(args.labeled_per_set // 2, "labeled-half")])),
    }
    if args.train_only:
        for key in args.rows.split(","):
            print(plan[key][0], plan[key][1](), flush=True)
        return
    rows = {}
    for key in args.rows.split(","):
        label, model = plan[key]
        started = time.perf_counter()
        name = b_star if key == "b*" else key
        rows[label] = (evaluate_full if args.full else evaluate_row)(name, str(model()), args)
        print(f"{label}: {json.dumps({k: rows[label].get(k) for k, _ in COLUMNS})} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    if args.full:
        chart(rows, RESULTS / "quality-full.png")
        (RESULTS / "quality-full.md").write_text(
            "# Full data sets: Gemma-3-270M + LoRA on CPU\n\n" + table(rows, args) + "\n\n![quality](quality-full.png)"
            "\n\nEvaluation: bf16, max "
            f"length {args.max_length}, whole test sets; — = not scored yet (tasks: {args.tasks or 'all'}).\n\n"
            f"    python {' '.join(sys.argv)}\n")
        print(table(rows, args))
        return
    chart(rows, RESULTS / "quality.png")
    caps = ("the quick suite of bench/suite.py: 150 random pairs per STS set, the first 8 Tatoeba pairs of each of "
            "112 languages, SciFact's 283 relevant documents + 50 others, Banking77 with 8 train texts per intent "
            "and 400 test texts, XQuAD's first 30 paragraphs per language with their questions")
    (RESULTS / "quality.md").write_text(
        "# Synthetic versus labeled data, Gemma-3-270M + LoRA on CPU\n\n" + table(rows, args) +
        f"\n\n![quality](quality.png)\n\nRecipe: {json.dumps(RECIPE)}, LoRA r16 (the defaults). Evaluation: bf16, max length "
        f"{args.max_length}; {caps}.\n\n    python bench/quality.py --local-data {args.local_data}\n")
    print(table(rows, args))


if __name__ == "__main__":
    main()
