"""generate -> held-out split -> train -> evaluate (base and trained) -> report, as one command.

Each stage writes into its own directory under the pipeline's output_dir and marks it with a fingerprint of the
settings it depends on (its own and every upstream stage's). A stage whose mark matches is skipped; one that was
interrupted resumes (generation from its ledger, training from its checkpoint); one whose settings changed starts
again from an empty directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from synthembed.config import GenerateConfig, Strict
from synthembed.evaluate.run import EvaluateConfig, TaskSpec
from synthembed.pipeline import MARK
from synthembed.train.config import DataSource, TrainConfig

log = logging.getLogger(__name__)


class PipelineConfig(Strict):
    output_dir: Path = Path("runs/pipeline")
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    holdout: float = Field(0.2, gt=0)  # < 1: fraction of the generated examples; >= 1: a count
    train: TrainConfig = Field(default_factory=TrainConfig)  # train.data: more sources beside the generated split
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)  # evaluate.tasks: sets beside the held-out one


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings(cfg, exclude: set[str]) -> dict:
    """A stage's settings as they enter its key. Unset options (None: a feature left off) are left out, so a
    release that adds one keeps the keys of earlier runs and reruns nothing."""
    return cfg.model_dump(mode="json", exclude=exclude, exclude_none=True)


def run_stage(name: str, directory: Path, key: str, work: Callable[[], dict]) -> dict:
    """Run `work` unless `directory` holds a finished mark with this key; returns the stage's record."""
    mark = directory / MARK
    record = json.loads(mark.read_text()) if mark.is_file() else {}
    if record.get("fingerprint") == key and record.get("done"):
        log.info("%s: up to date, skipped", name)
        return {**record, "skipped": True}
    if record.get("fingerprint") not in (None, key):
        log.info("%s: settings changed, starting again", name)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"stage": name, "fingerprint": key, "done": False}))
    started = time.perf_counter()
    info = work()
    spent = record.get("seconds", 0.0) if record.get("fingerprint") == key else 0.0  # earlier interrupted runs
    record = {"stage": name, "fingerprint": key, "done": True, "seconds": spent + time.perf_counter() - started,
              **info}
    mark.write_text(json.dumps(record, indent=1, default=str))
    return {**record, "skipped": False}


def run_pipeline(cfg: PipelineConfig, show_progress: bool = True) -> Path:
    from synthembed.data.holdout import split_holdout
    from synthembed.evaluate.report import load_results, write_report
    from synthembed.generate.run import run_generate
    from synthembed.pipeline.report import evaluate_with_per_query, write_pipeline_report
    from synthembed.train.export import add_scores
    from synthembed.train.trainer import train

    out = Path(cfg.output_dir)
    gen = cfg.generate.model_copy(update={"output_dir": out / "generate"})
    gen_key = fingerprint(gen.model_dump(mode="json", exclude={"output_dir"}))

    def generate() -> dict:
        report = run_generate(gen, show_progress=show_progress)
        return {"kept": report.kept, "requested": report.requested, "cost_usd": report.cost,
                "tokens": report.tokens_in + report.tokens_out}

    stages = [run_stage("generate", gen.output_dir, gen_key, generate)]
    split_dir = out / "data"
    split_key = fingerprint(gen_key, cfg.holdout)
    stages.append(run_stage("split", split_dir, split_key,
                            lambda: split_holdout(gen.output_dir, split_dir, cfg.holdout, gen.seed)))

    # train.data may name the generate output (so that `synthembed train` runs alone): here its split replaces it
    extra = [s for s in cfg.train.data if Path(s.path) not in (cfg.generate.output_dir, gen.output_dir)]
    tr = cfg.train.model_copy(update={"output_dir": out / "train",
                                      "data": [DataSource(path=split_dir / "train.jsonl"), *extra]})
    train_key = fingerprint(split_key, settings(tr, {"output_dir"}))
    stages.append(run_stage("train", tr.output_dir, train_key,
                            lambda: {"model": str(train(tr, show_progress=show_progress))}))

    heldout = TaskSpec(name="HeldOut", type="Retrieval", path=split_dir / "heldout", instruction="")
    tasks = [heldout, *cfg.evaluate.tasks]
    runs = {}
    for label, model, upstream in (("base", cfg.train.model, split_key), ("trained", stages[-1]["model"], train_key)):
        ev = cfg.evaluate.model_copy(update={"model": model, "tasks": tasks, "output_dir": out / "evaluate" / label})
        # where it runs does not change the scores beyond bf16 tolerance
        key = fingerprint(upstream, label, settings(ev, {"output_dir", "device"}))
        stages.append(run_stage(f"evaluate {label}", ev.output_dir, key,
                                lambda ev=ev: {"scores": {r["task_name"]: r["main_score"]
                                                          for r in evaluate_with_per_query(ev, show_progress)}}))
        runs[f"{Path(str(cfg.train.model)).name} {label}"] = load_results(ev.output_dir)
    add_scores(Path(stages[2]["model"]), runs[f"{Path(str(cfg.train.model)).name} trained"])
    write_report(runs, out / "evaluate", title="Base versus trained")
    return write_pipeline_report(out, stages, runs)

