"""Any Embedder as an mteb 2 encoder, so every mteb task runs through `mteb.evaluate(MtebEncoder(embedder), tasks)`.

mteb hands over DataLoaders of batches whose "text" already joins a document's title and body (and appends an
InstructionRetrieval query's own instruction). Queries get the paper's instruction for the task; documents are
embedded as they are; tasks with no query/document sides (STS, classification, clustering ...) arrive with
prompt_type None and are embedded as instructed queries, as the paper does for symmetric tasks.

`synthembed evaluate --mteb TASK,...` runs mteb's own tasks this way (`load_mteb_tasks`, then `run_mteb_tasks`) and
writes each result in the shape of our own evaluators' (evaluate/run.py).

mteb is a test-only extra (`pip install 'synthembed[test]'`): it is imported when `MtebEncoder` or one of those
functions is first used, never by importing this module.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from synthembed.config import ConfigError
from synthembed.formats.datasets import DataError
from synthembed.formats.instructions import instruction_for
from synthembed.model.protocol import Embedder


def model_meta(embedder: Embedder, dim: int | None = None):
    """What mteb records about the model (an mteb ModelMeta); the fingerprint is the revision, so results of
    changed vectors never pass for cached ones."""
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    name = embedder.name if "/" in embedder.name else f"synthembed/{embedder.name}"
    return ModelMeta.create_empty(overwrites=dict(
        name=name, revision=embedder.fingerprint, max_tokens=embedder.max_length, embed_dim=dim,
        similarity_fn_name=ScoringFunction.COSINE, use_instructions=True, framework=["PyTorch"],
        modalities=["text"], open_weights=True))


def __getattr__(name: str):
    if name == "MtebEncoder":
        return _encoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _encoder_class() -> type:
    """MtebEncoder, defined on first use: its base class comes from mteb."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.types import PromptType

    class MtebEncoder(AbsEncoder):
        def __init__(self, embedder: Embedder,
                     instructions: dict[str, str] | Callable[[Any], str | None] | None = None,
                     batch_size: int = 32, show_progress: bool = False):
            """`instructions`: task name -> instruction overrides ("" for none), or a function of the
            TaskMetadata; tasks not named fall back to the paper's table (instruction_for)."""
            self.embedder = embedder
            self.model = embedder
            self.instructions = instructions
            self.batch_size = batch_size
            self.show_progress = show_progress
            self.mteb_model_meta = model_meta(embedder, getattr(embedder, "dim", None))

        def instruction(self, task_metadata) -> str | None:
            if callable(self.instructions):
                return self.instructions(task_metadata)
            override = (self.instructions or {}).get(task_metadata.name)
            return instruction_for(task_metadata.name, str(task_metadata.type), override)

        def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
                   prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            batch_size = int(kwargs.get("batch_size") or self.batch_size)
            if prompt_type == PromptType.document:
                return self.embedder.encode(texts, "document", batch_size=batch_size,
                                            show_progress=self.show_progress)
            return self.embedder.encode(texts, "query", self.instruction(task_metadata), batch_size=batch_size,
                                        show_progress=self.show_progress)

    return MtebEncoder


# -- `synthembed evaluate --mteb TASK,...` -------------------------------------------------------------------------
def import_mteb():
    try:
        import mteb
    except ImportError:
        raise ConfigError("--mteb needs the mteb package, a test extra: pip install 'synthembed[test]' "
                          "(or pip install 'mteb>=2.26,<3')") from None
    return mteb


def mock_tasks() -> dict[str, type]:
    """mteb's text mock tasks by name (MockRetrievalTask, MockSTSTask ...): tiny, built in code, no hub needed,
    so `--mteb MockRetrievalTask` is an offline smoke test."""
    from mteb import AbsTask
    from mteb.mocks import mock_tasks as mocks

    return {cls.metadata.name: cls for cls in vars(mocks).values()
            if isinstance(cls, type) and issubclass(cls, AbsTask) and cls.metadata.modalities == ["text"]}


def get_mteb_task(name: str):
    """An mteb task (its registry, then its mock tasks); an unknown name is a ConfigError listing close ones."""
    mteb = import_mteb()
    mocks = mock_tasks()
    if name in mocks:
        return mocks[name]()
    try:
        return mteb.get_task(name)
    except KeyError:
        pass
    from mteb.get_tasks import TASK_LIST

    known = {cls.metadata.name.lower(): cls.metadata.name for cls in TASK_LIST} | {n.lower(): n for n in mocks}
    close = [known[n] for n in difflib.get_close_matches(name.lower(), list(known), n=5, cutoff=0.6)]
    hint = f"close matches: {', '.join(close)}" if close else "no close match (mteb.get_tasks() lists them all)"
    raise ConfigError(f"--mteb {name!r}: not an mteb task; {hint}")


def load_mteb_tasks(names: list[str]) -> list:
    """The named tasks with their data loaded, so a task whose data cannot be reached fails before any encoding."""
    tasks = [get_mteb_task(name) for name in names]
    for task in tasks:
        if not task.data_loaded:
            load_task_data(task)
    return tasks


def load_task_data(task) -> None:
    try:
        task.load_data()
    except OSError as err:  # datasets and huggingface_hub raise ConnectionError, FileNotFoundError, HTTP errors
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"mteb task {task.metadata.name}: its data ({task.metadata.dataset.get('path')} on the "
                        f"Hugging Face hub) cannot be loaded: {reason}. Download it once where the hub is reachable "
                        f"(it is kept in the HF_DATASETS_CACHE / HF_HOME cache), then run offline with "
                        f"HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1") from err


def run_mteb_tasks(tasks: list, embedder: Embedder, batch_size: int = 32, show_progress: bool = False) -> list[dict]:
    """Each loaded task through mteb.evaluate with our encoder; one result per task in the shape of
    `evaluate.run` (main_score: mteb's own, the mean over the task's splits and subsets)."""
    mteb = import_mteb()
    encoder = _encoder_class()(embedder, batch_size=batch_size, show_progress=show_progress)
    results = []
    for task in tasks:
        t0 = time.perf_counter()
        # cache=None: results go to our output dir, not ~/.cache/mteb; no CO2 tracking (codecarbon is optional)
        outcome = mteb.evaluate(encoder, task, cache=None, co2_tracker=False, show_progress_bar=show_progress,
                                encode_kwargs={"batch_size": batch_size}).task_results[0]
        results.append(result_row(task, outcome, embedder, encoder.instruction(task.metadata),
                                  time.perf_counter() - t0))
    return results


def result_row(task, outcome, embedder: Embedder, instruction: str | None, seconds: float) -> dict:
    """An mteb TaskResult as our per-task JSON; scores holds mteb's metrics per split and subset."""
    main = float(outcome.get_score())
    by_split = {split: {row["hf_subset"]: row for row in rows} for split, rows in outcome.scores.items()}
    return {"task_name": task.metadata.name, "task_type": str(task.metadata.type), "model": embedder.name,
            "fingerprint": embedder.fingerprint, "instruction": instruction, "main_score": main,
            "scores": {"main_score": main, "main_metric": task.metadata.main_score, **by_split},
            "evaluation_time": round(seconds, 2), "mteb_version": import_mteb().__version__}
