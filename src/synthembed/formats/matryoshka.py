"""Matryoshka embeddings: the leading dimensions a model was trained to use alone, recorded in its folder
(`matryoshka.json`, written by training, read by serve; evaluate scores the sizes given by `--dims`), and the
truncation every stage applies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthembed.formats.jsonl import DataError

FILE = "matryoshka.json"


def write_dims(model_dir: Path, dims: list[int]) -> None:
    (Path(model_dir) / FILE).write_text(json.dumps({"dims": list(dims)}) + "\n", encoding="utf-8")


def read_dims(model_dir: Path | str | None) -> list[int] | None:
    """The trained dims (ascending ints) of a model folder; None when it was not trained with Matryoshka."""
    path = Path(model_dir) / FILE if model_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        dims = json.loads(path.read_text(encoding="utf-8")).get("dims")
    except (json.JSONDecodeError, AttributeError):
        raise DataError(f"{path}: expected a JSON object like {{\"dims\": [64, 128]}}") from None
    if not isinstance(dims, list) or not dims or not all(type(d) is int and d > 0 for d in dims):
        raise DataError(f"{path}: field 'dims' must be a non-empty list of positive integers, not {dims!r}")
    return dims


def truncate(vectors: np.ndarray, dim: int, normalize: bool = True) -> np.ndarray:
    """(n, D) -> (n, dim): the leading `dim` columns, re-normalised to unit length when `normalize` (cosine
    and dot product then agree again, as sentence-transformers' `truncate_dim` with normalisation)."""
    cut = np.asarray(vectors, dtype=np.float32)[:, :dim]
    return unit_rows(cut) if normalize else cut


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
