"""The embedding-model interface every stage after generation talks to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

Role = Literal["query", "document"]


class Embedder(Protocol):
    name: str  # shown in reports
    fingerprint: str  # changes whenever the vectors could change (weights, pooling, max length, prompt format)
    max_length: int  # tokens, EOS included

    def encode(
        self,
        texts: Sequence[str],
        role: Role = "document",
        instruction: str | None = None,  # queries only: None, the model's default query prompt; "", none at all
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:  # (len(texts), dim) float32, L2-normalised when `normalize`
        ...
