"""Embeddings cached on disk, so re-evaluating a model encodes nothing and a grown corpus encodes only new texts.

Layout: <root>/<sha of the fingerprint>/ holds one chunk per encode call that had new texts:
`<id>.npy` (n, dim) float32 and `<id>.keys` (n lines, the key of each row). The .keys files together are the
index; a chunk's .keys is written after its .npy, each atomically, so a crash leaves no half-read chunk and
concurrent writers never touch the same file. Key = sha256(role, instruction, normalize, text).
Matryoshka dims are views of one cache (`at_dim`): full vectors are stored once and cut on the way out, so
scoring a model at several sizes encodes each text once.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthembed.formats.matryoshka import truncate
from synthembed.model.protocol import Embedder, Role

log = logging.getLogger(__name__)


def text_key(text: str, role: str, instruction: str | None, normalize: bool) -> str:
    # None (the model's default query prompt) and "" (the text as it is) embed differently
    marker = "\x00as-is" if instruction == "" else instruction or ""
    blob = "\x1f".join((role, marker, "1" if normalize else "0", text))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors of one embedder (by fingerprint) under `root` (None: in memory only, for this run);
    `encode` returns cached rows and encodes the rest."""

    def __init__(self, root: Path | str | None, fingerprint: str):
        self.fingerprint = fingerprint
        self.dir = None if root is None else Path(root) / hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:24]
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            marker = self.dir / "fingerprint.txt"
            if not marker.exists():
                marker.write_text(fingerprint + "\n", encoding="utf-8")
        self._where: dict[str, tuple[str, int]] = {}  # key -> (chunk id, row)
        self._chunks: dict[str, np.ndarray] = {}  # chunk id -> memory-mapped (n, dim)
        self._seen: set[str] = set()
        self.cut_dim: int | None = None  # vectors cut to their first `cut_dim` dimensions (Matryoshka); None: full
        self.refresh()

    def at_dim(self, dim: int | None) -> EmbeddingCache:
        """This cache, sharing its index and files, returning vectors cut to `dim` (re-normalised when the
        call normalises); None: full vectors."""
        view = copy.copy(self)  # shallow: the index dicts are shared, so what one view encodes the others reuse
        view.cut_dim = dim
        return view

    def refresh(self) -> None:
        """Pick up chunks written since (by this or another process)."""
        for keys_file in [] if self.dir is None else sorted(self.dir.glob("*.keys")):
            chunk = keys_file.stem
            if chunk in self._seen:
                continue
            self._seen.add(chunk)
            for row, key in enumerate(keys_file.read_text(encoding="utf-8").split()):
                self._where.setdefault(key, (chunk, row))

    def __len__(self) -> int:
        return len(self._where)

    def _vector_rows(self, chunk: str) -> np.ndarray:
        if chunk not in self._chunks:
            self._chunks[chunk] = np.load(self.dir / f"{chunk}.npy", mmap_mode="r")
        return self._chunks[chunk]

    def encode(self, embedder: Embedder, texts: Sequence[str], role: Role = "document",
               instruction: str | None = None, batch_size: int = 32, normalize: bool = True,
               show_progress: bool = False) -> np.ndarray:
        """Same result as embedder.encode(...) -> (len(texts), dim) float32, encoding only uncached texts; cut
        to self.cut_dim when set."""
        if embedder.fingerprint != self.fingerprint:
            raise ValueError(f"cache holds vectors of {self.fingerprint!r}, not of {embedder.fingerprint!r}")
        keys = [text_key(t, role, instruction, normalize) for t in texts]
        todo: dict[str, str] = {}  # key -> text, unique, in first-seen order
        for key, text in zip(keys, texts):
            if key not in self._where and key not in todo:
                todo[key] = text
        if todo:
            log.info("cache %s: encoding %d new of %d texts", self.dir or "in memory", len(todo), len(texts))
            vectors = np.asarray(embedder.encode(list(todo.values()), role=role, instruction=instruction,
                                                 batch_size=batch_size, normalize=normalize,
                                                 show_progress=show_progress), dtype=np.float32)
            self._write(list(todo), vectors)
        vectors = self._gather(keys)
        return vectors if self.cut_dim is None or not len(keys) else truncate(vectors, self.cut_dim, normalize)

    def _write(self, keys: list[str], vectors: np.ndarray) -> None:
        chunk = uuid.uuid4().hex
        if self.dir is not None:
            self._save(chunk, keys, vectors)
        self._chunks[chunk] = vectors
        self._seen.add(chunk)
        for row, key in enumerate(keys):
            self._where.setdefault(key, (chunk, row))

    def _save(self, chunk: str, keys: list[str], vectors: np.ndarray) -> None:
        tmp = self.dir / f".{chunk}.npy.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, vectors)
        os.replace(tmp, self.dir / f"{chunk}.npy")
        tmp = self.dir / f".{chunk}.keys.tmp"
        tmp.write_text("\n".join(keys) + "\n", encoding="utf-8")
        os.replace(tmp, self.dir / f"{chunk}.keys")

    def _gather(self, keys: list[str]) -> np.ndarray:
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        by_chunk: dict[str, list[tuple[int, int]]] = {}  # chunk -> [(output row, chunk row)]
        for out_row, key in enumerate(keys):
            chunk, row = self._where[key]
            by_chunk.setdefault(chunk, []).append((out_row, row))
        dim = self._vector_rows(next(iter(by_chunk))).shape[1]
        out = np.empty((len(keys), dim), dtype=np.float32)
        for chunk, pairs in by_chunk.items():
            out_rows, rows = (np.array(x) for x in zip(*pairs))
            out[out_rows] = self._vector_rows(chunk)[rows]
        return out


def embed(embedder: Embedder, texts: Sequence[str], role: Role = "document", instruction: str | None = None,
          *, batch_size: int = 32, normalize: bool = True, show_progress: bool = False,
          cache: EmbeddingCache | Path | str | None = None) -> np.ndarray:
    """Encode through the cache when one is given (an EmbeddingCache or a root directory), else directly.

    -> (len(texts), dim) float32.
    """
    if cache is not None and not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache, embedder.fingerprint)
    if cache is not None:
        return cache.encode(embedder, texts, role, instruction, batch_size, normalize, show_progress)
    vectors = embedder.encode(list(texts), role=role, instruction=instruction, batch_size=batch_size,
                              normalize=normalize, show_progress=show_progress)
    return np.asarray(vectors, dtype=np.float32)
