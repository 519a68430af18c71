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
import json
import os
import time
from pathlib import Path
from statistics import mean

from synthembed.evaluate.run import EvaluateConfig, TaskSpec, run_tasks
from synthembed.model.offline import cache_dir

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
    tasks = [TaskSpec(name="SciFact", type="Retrieval", path=scifact),
             TaskSpec(name="STSBenchmark", type="STS", path=data_dir / "stsbenchmark" / "sts-test.csv")]
    tasks += [TaskSpec(name=f"STSBMultiMT.{path.name.split('-')[1]}", type="STS", path=path)
              for path in sorted((data_dir / "stsb-multi-mt").glob("stsb-*-test.csv"))]
    tasks.append(TaskSpec(name="Banking77Classification", type="Classification", path=data_dir / "banking77"))
    tasks += [TaskSpec(name=f"Tatoeba.{lang}", type="BitextMining", path=tatoeba, lang=lang)
              for lang in _tatoeba_langs(tatoeba)]
    langs = sorted(p.name for p in xquad.iterdir() if (p / "corpus.jsonl").is_file())
    tasks += [TaskSpec(name=f"XQuAD.{lang}", type="Retrieval", path=xquad / lang, instruction=XQUAD_INSTRUCTION)
              for lang in langs]
    tasks += [TaskSpec(name=f"XQuAD.{lang}-en", type="Retrieval", path=xquad / "en", queries=xquad / lang,
                       instruction=XQUAD_INSTRUCTION) for lang in langs if lang != "en"]
    return tasks


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
    cfg = EvaluateConfig(model=args.model, tasks=tasks, output_dir=args.output, dtype=args.dtype,
                         batch_size=args.batch_size)
    start = time.perf_counter()
    results = run_tasks(cfg, show_progress=False)
    wall = time.perf_counter() - start
    caps = {"tatoeba_pairs": args.tatoeba_pairs, "scifact_docs": args.scifact_docs}
    text = summary_markdown(results, f"{args.model} ({args.dtype})")
    text += f"\nCaps: {caps}. Wall time: {wall:.0f} s.\n"
    (args.output / "summary.md").write_text(text)
    (args.output / "summary.json").write_text(json.dumps({"model": args.model, "dtype": args.dtype, "caps": caps,
                                                          "wall_s": round(wall, 1), **summarize(results)}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
