"""The generate output (`examples.jsonl`) as generate writes it and data reads it: where the file is, and the
content hash that makes two rows the same example (the family and its texts, compared normalised)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path


def examples_file(path: Path) -> Path:
    """A run directory or an examples file -> the examples file."""
    path = Path(path)
    file = path / "examples.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file (expected a generate output directory or examples.jsonl)")
    return file


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def content_hash(family: str, output: dict, keys: Sequence[str]) -> str:
    joined = "\x1f".join([family, *(normalize(str(output.get(k, ""))) for k in keys)])
    return hashlib.sha256(joined.encode()).hexdigest()[:32]
