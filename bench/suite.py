"""The shared evaluation suite: SciFact, STSBenchmark, stsb-multi-mt, Banking77, Tatoeba and XQuAD (monolingual
and cross-lingual: each non-English language's questions against the English paragraphs).

    python bench/suite.py --model gemma-270m --output bench/out/suite-gemma-270m [--dtype bf16] \\
        [--tatoeba-pairs N] [--scifact-docs N]

The caps make cheap runs: `--tatoeba-pairs N` keeps the first N pairs of each language, `--scifact-docs N` every
document relevant to a test query plus the first N others. Capped copies are written under the synthembed cache
directory, never next to the data. Prints and writes <output>/summary.md (and summary.json).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import time
from pathlib import Path
from statistics import mean

from synthembed.evaluate.run import LOADERS, EvaluateConfig, TaskSpec, run_tasks
from synthembed.formats.offline import cache_dir
from synthembed.model.load import load_embedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# XQuAD paragraphs are Wikipedia's: the paper's instruction for MIRACL (Wikipedia passage retrieval)
XQUAD_INSTRUCTION = "Given a question, retrieve Wikipedia passages that answer the question"


def shared_suite(data_dir: Path, tatoeba_pairs: int | None = None, scifact_docs: int | None = None) -> list[TaskSpec]:
    data_dir = Path(data_dir)
    scifact, tatoeba, xquad = data_dir / "scifact", data_dir / "tatoeba", data_dir / "xquad"
    if scifact_docs is not None:
        scifact = _capped_scifact(scifact, scifact_docs)
    if tatoeba_pairs is not None:
        tatoeba = _capped_tatoeba(tatoeba, tatoeba_pairs)
    # the smaller groups first, so that an interrupted run still has scores in most of them
    tasks = [TaskSpec(name="SciFact", type="Retrieval", path=scifact),
             TaskSpec(name="STSBenchmark", type="STS", path=data_dir / "stsbenchmark" / "sts-test.csv"),
             TaskSpec(name="Banking77Classification", type="Classification", path=data_dir / "banking77")]
    # English first, then each language and its queries against English (which then encodes nothing new)
    langs = sorted((p.name for p in xquad.iterdir() if (p / "corpus.jsonl").is_file()), key=lambda x: (x != "en", x))
    for lang in langs:
        tasks.append(TaskSpec(name=f"XQuAD.{lang}", type="Retrieval", path=xquad / lang,
                              instruction=XQUAD_INSTRUCTION))
        if lang != "en":
            tasks.append(TaskSpec(name=f"XQuAD.{lang}-en", type="Retrieval", path=xquad / "en",
                                  queries=xquad / lang, instruction=XQUAD_INSTRUCTION))
    tasks += [TaskSpec(name=f"Tatoeba.{lang}", type="BitextMining", path=tatoeba, lang=lang)
              for lang in _tatoeba_langs(tatoeba)]
    tasks += [TaskSpec(name=f"STSBMultiMT.{path.name.split('-')[1]}", type="STS", path=path)
              for path in sorted((data_dir / "stsb-multi-mt").glob("stsb-*-test.csv"))]
    return tasks


def quick_suite(data_dir: Path, sts_pairs: int = 150, tatoeba_pairs: int = 8, scifact_docs: int = 50,
                banking_per_label: int = 8, banking_test: int = 400, xquad_paragraphs: int = 30) -> list[TaskSpec]:
    """The same tasks on samples small enough to score a 270M model in minutes on 2 cores (for comparing
    models with each other, not with published numbers): random STS pairs, the first Tatoeba pairs, SciFact's
    relevant documents plus a few, Banking77 with a smaller train pool and test sample, and XQuAD's first
    paragraphs with their questions."""
    data_dir = Path(data_dir)
    tasks = shared_suite(data_dir, tatoeba_pairs, scifact_docs)
    out = _capped_dir(f"quick-{sts_pairs}-{banking_per_label}-{banking_test}-{xquad_paragraphs}")
    for task in tasks:
        if task.type == "STS":
            lines = task.path.read_text(encoding="utf-8").splitlines(keepends=True)
            _write(out / "sts" / task.path.name, "".join(random.Random(0).sample(lines, min(sts_pairs, len(lines)))))
            task.path = out / "sts" / task.path.name
        elif task.type == "Classification":
            task.path = _capped_banking(task.path, out / "banking77", banking_per_label, banking_test)
        elif task.name.startswith("XQuAD."):
            task.path = _capped_xquad(task.path, out / "xquad" / task.path.name, xquad_paragraphs)
            if task.queries is not None:
                task.queries = _capped_xquad(task.queries, out / "xquad" / task.queries.name, xquad_paragraphs)
    return tasks


def _capped_banking(root: Path, out: Path, per_label: int, test: int) -> Path:
    """The first `per_label` train texts of each category and `test` random test texts."""
    def rows(name: str) -> tuple[list[str], list[list[str]]]:
        with open(root / f"{name}.csv", encoding="utf-8", newline="") as handle:
            header, *body = list(csv.reader(handle))
        return header, body

    def write(name: str, header: list[str], body: list[list[str]]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows([header, *body])
        _write(out / f"{name}.csv", text.getvalue())

    header, train = rows("train")
    taken: dict[str, int] = {}
    kept = []
    for row in train:
        if taken.get(row[-1], 0) < per_label:
            taken[row[-1]] = taken.get(row[-1], 0) + 1
            kept.append(row)
    write("train", header, kept)
    header, tests = rows("test")
    write("test", header, random.Random(0).sample(tests, min(test, len(tests))))
    return out


def _capped_xquad(root: Path, out: Path, paragraphs: int) -> Path:
    corpus = (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:paragraphs]
    ids = {str(json.loads(line)["_id"]) for line in corpus}
    qrels = (root / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in qrels[1:] if line.split("\t")[1] in ids]
    queries = {line.split("\t")[0] for line in kept}
    _write(out / "corpus.jsonl", "".join(corpus))
    _write(out / "qrels" / "test.tsv", qrels[0] + "".join(kept))
    _write(out / "queries.jsonl", "".join(line for line in (root / "queries.jsonl").read_text(encoding="utf-8")
                                          .splitlines(keepends=True) if str(json.loads(line)["_id"]) in queries))
    return out


def summarize(results: list[dict]) -> dict:
    """Group means (0..1) of the suite's results: stsb-multi-mt Spearman, Tatoeba accuracy, XQuAD nDCG@10."""
    groups = {
        "sts_multi_mt": [r["main_score"] for r in results if r["task_name"].startswith("STSBMultiMT.")],
        "tatoeba_accuracy": [r["scores"]["accuracy"] for r in results if r["task_name"].startswith("Tatoeba.")],
        "xquad_mono": [r["main_score"] for r in results if _xquad(r) and "-" not in r["task_name"]],
        "xquad_cross": [r["main_score"] for r in results if _xquad(r) and "-" in r["task_name"]],
    }
    out = {key: mean(values) if values else None for key, values in groups.items()}
    out["tatoeba_languages"] = len(groups["tatoeba_accuracy"])
    return out


def _xquad(result: dict) -> bool:
    return result["task_name"].startswith("XQuAD.")


def _tatoeba_langs(root: Path) -> list[str]:
    return sorted(p.name.split(".")[1].split("-")[0] for p in root.glob("tatoeba.*-eng.eng"))


def _capped_dir(name: str) -> Path:
    path = cache_dir() / "bench-suite" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write(path: Path, text: str) -> None:
    """Atomic, so that two runs sharing the cache never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _capped_tatoeba(root: Path, pairs: int) -> Path:
    out = _capped_dir(f"tatoeba-{pairs}")
    for eng in root.glob("tatoeba.*-eng.eng"):
        other = eng.with_suffix("." + eng.name.split(".")[1].split("-")[0])
        for path in (eng, other):
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:pairs]
            _write(out / path.name, "".join(lines))
    return out


def _capped_scifact(root: Path, docs: int) -> Path:
    out = _capped_dir(f"scifact-{docs}")
    qrels = root / "qrels" / "test.tsv"
    relevant = {line.split("\t")[1] for line in qrels.read_text(encoding="utf-8").splitlines()[1:] if line.strip()}
    kept, others = [], 0
    for line in (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.strip():
            continue
        if str(json.loads(line)["_id"]) in relevant:
            kept.append(line)
        elif others < docs:
            kept.append(line)
            others += 1
    _write(out / "corpus.jsonl", "".join(kept))
    _write(out / "queries.jsonl", (root / "queries.jsonl").read_text(encoding="utf-8"))
    _write(out / "qrels" / "test.tsv", qrels.read_text(encoding="utf-8"))
    return out


def summary_markdown(results: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| task | type | main score (x100) |", "|---|---|---:|"]
    lines += [f"| {r['task_name']} | {r['task_type']} | {100 * r['main_score']:.2f} |" for r in results]
    groups = summarize(results)
    labels = {"sts_multi_mt": "STS multi-mt mean (Spearman)",
              "tatoeba_accuracy": f"Tatoeba mean accuracy ({groups['tatoeba_languages']} languages)",
              "xquad_mono": "XQuAD mono mean (nDCG@10)", "xquad_cross": "XQuAD cross mean (nDCG@10)"}
    lines += ["", "| group | mean (x100) |", "|---|---:|"]
    lines += [f"| {label} | {100 * groups[key]:.2f} |" for key, label in labels.items() if groups[key] is not None]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="minilm | gemma-270m | smollm2-135m | a model directory")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--tatoeba-pairs", type=int, help="keep the first N pairs of each Tatoeba language")
    parser.add_argument("--scifact-docs", type=int, help="keep the relevant SciFact docs plus the first N others")
    parser.add_argument("--data", type=Path, default=DATA, help=f"evaluation data directory (default {DATA})")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    tasks = shared_suite(args.data, args.tatoeba_pairs, args.scifact_docs)
    for task in tasks:  # all data is checked before any encoding
        LOADERS[task.type](task)
    cfg = EvaluateConfig(model=args.model, output_dir=args.output, dtype=args.dtype, batch_size=args.batch_size)
    embedder = load_embedder(args.model, dtype=args.dtype)
    caps = {"tatoeba_pairs": args.tatoeba_pairs, "scifact_docs": args.scifact_docs}
    start, results = time.perf_counter(), []
    for task in tasks:  # one at a time, the summary rewritten after each: an interrupted run keeps its scores
        [result] = run_tasks(cfg.model_copy(update={"tasks": [task]}), embedder=embedder, show_progress=False)
        results.append(result)
        wall = time.perf_counter() - start
        print(f"{task.name:<28} {100 * result['main_score']:6.2f}  ({wall:.0f} s)", flush=True)
        text = summary_markdown(results, f"{args.model} ({args.dtype})")
        text += f"\nCaps: {caps}. Tasks: {len(results)} of {len(tasks)}. Wall time: {wall:.0f} s.\n"
        (args.output / "summary.md").write_text(text)
        (args.output / "summary.json").write_text(json.dumps(
            {"model": args.model, "dtype": args.dtype, "caps": caps, "tasks_done": len(results),
             "tasks_total": len(tasks), "wall_s": round(wall, 1), **summarize(results)}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
