"""Run a list of evaluation tasks on one model: one MTEB-like JSON per task, then a report."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, ValidationError, model_validator

from synthembed.config import ConfigError, Strict
from synthembed.evaluate import evaluator, passkey
from synthembed.evaluate.cache import EmbeddingCache
from synthembed.evaluate.mteb_adapter import load_mteb_tasks, run_mteb_tasks
from synthembed.formats.beir import load_beir
from synthembed.formats.datasets import (DataError, RetrievalData, load_classification, load_clustering, load_pairs,
                                         load_reranking, load_sts, load_tatoeba)
from synthembed.formats.instructions import instruction_for
from synthembed.formats.offline import cache_dir

log = logging.getLogger(__name__)

TaskType = Literal["Retrieval", "STS", "BitextMining", "Classification", "Clustering", "PairClassification",
                   "Reranking", "Passkey"]
LOADERS = {
    "Retrieval": lambda t: load_retrieval(t),
    "STS": lambda t: load_sts(t.path),
    "BitextMining": lambda t: load_tatoeba(t.path, t.lang),
    "Classification": lambda t: load_classification(t.path),
    "Clustering": lambda t: load_clustering(t.path),
    "PairClassification": lambda t: load_pairs(t.path),
    "Reranking": lambda t: load_reranking(t.path),
    "Passkey": lambda t: t,  # generated when scored: its lengths are in the embedder's tokens
}


class TaskSpec(Strict):
    # also picks the paper's instruction for known MTEB names (e.g. SciFact); Passkey tasks default to "Passkey"
    name: str
    type: TaskType
    path: Path | None = None  # every type but Passkey reads its data here
    split: str = "test"
    lang: str | None = None  # BitextMining on a Tatoeba directory: e.g. "deu"
    instruction: str | None = None  # overrides the instruction map
    # Retrieval: a BEIR directory whose queries and qrels replace the task's own, e.g. de questions against the
    # en corpus (cross-lingual XQuAD); its qrels must name doc ids of `path`'s corpus
    queries: Path | None = None
    # Passkey: document lengths in the embedder's tokens, and people (documents) per length
    lengths: list[PositiveInt] = Field(default_factory=lambda: [256, 512, 1024], min_length=1)
    n: int = Field(20, ge=2, le=len(passkey.FIRST) * len(passkey.LAST))

    @model_validator(mode="before")
    @classmethod
    def _passkey_default_name(cls, data):
        if isinstance(data, dict) and data.get("type") == "Passkey" and "name" not in data:
            return {**data, "name": "Passkey"}
        return data

    @model_validator(mode="after")
    def _path_unless_generated(self):
        if self.path is None and self.type != "Passkey":
            raise ValueError(f"task {self.name!r}: a {self.type} task needs a path")
        return self


class EvaluateConfig(Strict):
    model: str = "minilm"
    tasks: list[TaskSpec] = Field(default_factory=list)
    output_dir: Path = Path("runs/evaluate")
    batch_size: int = Field(32, ge=1)
    max_length: int | None = None
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU, exact fp32 on the CPU
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    query_template: str | None = None  # None: "Instruct: {instruction}\nQuery: {text}" (see HFEmbedder)
    cache: bool = True  # corpus embeddings on disk, keyed by (model fingerprint, text)
    mteb_tasks: list[str] = Field(default_factory=list)  # mteb's own tasks by name, run through mteb (test extra)
    rope_theta: float | None = Field(None, gt=0)  # load the model with this RoPE base (long-context passkey)
    dims: list[PositiveInt] | None = None  # Matryoshka: also score every task cut to these leading dims


def parse_task(spec: str) -> TaskSpec:
    """`TYPE:PATH[:NAME]`, with `lang=xxx` allowed as NAME for Tatoeba, e.g. `Retrieval:data/scifact:SciFact`."""
    parts = spec.split(":")
    if parts[0].lower() == "passkey":
        return parse_passkey(spec, parts)
    if len(parts) < 2:
        raise ConfigError(f"--task {spec!r}: expected TYPE:PATH[:NAME], TYPE one of {list(LOADERS)}")
    kind = next((t for t in LOADERS if t.lower() == parts[0].lower()), None)
    if kind is None:
        raise ConfigError(f"--task {spec!r}: unknown type {parts[0]!r}; allowed: {list(LOADERS)}")
    name = parts[2] if len(parts) > 2 else Path(parts[1]).stem
    lang = parts[3] if len(parts) > 3 else None
    return TaskSpec(name=name, type=kind, path=Path(parts[1]), lang=lang)


def parse_passkey(spec: str, parts: list[str]) -> TaskSpec:
    """`Passkey[:LENGTH,LENGTH...[:NAME]]`, lengths in tokens, e.g. `Passkey:256,512,1024`."""
    try:
        lengths = [int(x) for x in parts[1].split(",")] if len(parts) > 1 and parts[1] else None
    except ValueError:
        raise ConfigError(f"--task {spec!r}: expected Passkey:LENGTH[,LENGTH...][:NAME] with lengths in tokens, "
                          f"e.g. Passkey:256,512,1024") from None
    try:
        return TaskSpec(type="Passkey", **({"name": parts[2]} if len(parts) > 2 else {}),
                        **({"lengths": lengths} if lengths else {}))
    except ValidationError as err:  # one line, as the CLI's other errors, not pydantic's report
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"--task {spec!r}: {problems}") from None


def load_retrieval(task: TaskSpec) -> RetrievalData:
    data = load_beir(task.path, task.split)
    if task.queries is None:
        return data
    other = load_beir(task.queries, task.split)  # its own files are checked as usual
    for qid, docs in other.qrels.items():
        missing = [doc for doc in docs if doc not in data.corpus]
        if missing:
            raise DataError(f"{Path(task.queries) / 'qrels' / f'{task.split}.tsv'}: query {qid!r} judges doc "
                            f"{missing[0]!r}, which is not in {Path(task.path) / 'corpus.jsonl'} (the queries "
                            f"must share doc ids with the corpus they are searched against)")
    return RetrievalData(data.corpus, other.queries, other.qrels)


def dims_to_score(dims: list[int] | None, full: int | None) -> list[int | None]:
    """The full size (None) first, then each Matryoshka dim below it; a dim above the model's is an error."""
    full = full or max(dims or [0]) + 1  # an embedder that does not say its size: trust the dims
    too_big = [d for d in dims or [] if d > full]
    if too_big:
        raise ConfigError(f"evaluate.dims: {too_big[0]} is above the model's {full} dimensions")
    return [None, *sorted({d for d in dims or [] if d < full})]


def run_tasks(cfg: EvaluateConfig, embedder=None, show_progress: bool = True) -> list[dict]:
    from synthembed.model.load import load_embedder

    if not cfg.tasks and not cfg.mteb_tasks:
        raise ConfigError("no tasks: give --task TYPE:PATH[:NAME], --mteb TASK or a config with evaluate.tasks")
    refuse_duplicate_names(cfg)
    data = [(task, LOADERS[task.type](task)) for task in cfg.tasks]  # bad data fails before any encoding
    mteb_tasks = load_mteb_tasks(cfg.mteb_tasks) if cfg.mteb_tasks else []
    if cfg.dims and mteb_tasks:  # mteb takes the encoder's vectors as they come
        log.warning("evaluate.dims: mteb tasks are scored at the full size only")
    embedder = embedder or load_embedder(cfg.model, max_length=cfg.max_length, dtype=cfg.dtype, device=cfg.device,
                                         query_template=cfg.query_template, rope_theta=cfg.rope_theta)
    for task in cfg.tasks:
        if task.type == "Passkey":
            passkey.check_lengths_fit(embedder, task.name, task.lengths)
    cache = EmbeddingCache(cache_dir() / "evaluate" / "embeddings", embedder.fingerprint) if cfg.cache else None
    if cfg.dims and cache is None:  # each text is still encoded once for all dims
        cache = EmbeddingCache(None, embedder.fingerprint)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for task, loaded in data:
        for dim in dims_to_score(cfg.dims, getattr(embedder, "dim", None)):  # None: the full size
            results.append(_save_result(out, embedder, score_task(cfg, embedder, task, loaded, dim, cache,
                                                                   show_progress)))
    for result in run_mteb_tasks(mteb_tasks, embedder, cfg.batch_size, show_progress):
        results.append(_save_result(out, embedder, result))
    return results


def refuse_duplicate_names(cfg: EvaluateConfig) -> None:
    """Each task writes NAME.json: two tasks of one name would overwrite each other's result."""
    names = [task.name for task in cfg.tasks] + list(cfg.mteb_tasks)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"evaluate: task name {twice[0]!r} is given twice (each task writes NAME.json); give "
                          f"one of them another name (TYPE:PATH:NAME, Passkey:LENGTHS:NAME or name: in a config)")


def score_task(cfg: EvaluateConfig, embedder, task: TaskSpec, loaded, dim: int | None, cache, show_progress) -> dict:
    """One task's result, on vectors cut to `dim` (None: full size)."""
    # "" keeps queries as they are (e.g. the pipeline's held-out queries, formatted already), where None
    # would let a model's saved query prompt prefix them
    override = passkey.INSTRUCTION if task.type == "Passkey" and task.instruction is None else task.instruction
    instruction = "" if override == "" else instruction_for(task.name, task.type, override)
    score = passkey.evaluate_task if task.type == "Passkey" else evaluator(task.type)
    t0 = time.perf_counter()
    scores = score(embedder, loaded, instruction, batch_size=cfg.batch_size,
                   cache=None if cache is None else cache.at_dim(dim), show_progress=show_progress)
    return {"task_name": task.name if dim is None else f"{task.name}@{dim}", "task_type": task.type,
            "model": embedder.name, "fingerprint": embedder.fingerprint, "instruction": instruction,
            **({"dim": dim} if dim else {}), "main_score": scores["main_score"], "scores": scores,
            "evaluation_time": round(time.perf_counter() - t0, 2)}


def _save_result(out: Path, embedder, result: dict) -> dict:
    (out / f"{result['task_name']}.json").write_text(json.dumps(result, indent=1))
    log.info("%s %s: %.4f", embedder.name, result["task_name"], result["main_score"])
    return result
