"""Any Embedder as an mteb 2 encoder, so every mteb task runs through `mteb.evaluate(MtebEncoder(embedder), tasks)`.

mteb hands over DataLoaders of batches whose "text" already joins a document's title and body (and appends an
InstructionRetrieval query's own instruction). Queries get the paper's instruction for the task; documents are
embedded as they are; tasks with no query/document sides (STS, classification, clustering ...) arrive with
prompt_type None and are embedded as instructed queries, as the paper does for symmetric tasks.

mteb is a test-only extra (`pip install 'synthembed[test]'`): it is imported when `MtebEncoder` is first looked up,
never by importing this module.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

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
