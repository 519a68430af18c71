"""What the refine commands share: input rows (generate output or labeled JSONL, errors with file, line and
field), the document pool, cached embeddings of queries and pool, exact top-k search, output rows in the labeled
layout the trainer reads, and the data card."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthembed.data.pairs import TrainPair, pair_from_generated, pair_from_labeled
from synthembed.evaluate.cache import EmbeddingCache, embed
from synthembed.evaluate.search import top_k
from synthembed.formats.examples import examples_file
from synthembed.formats.jsonl import DataError, read_jsonl
from synthembed.model.protocol import Embedder


@dataclass
class Row:
    """One input row: where it came from, as it was, and as a training pair."""

    file: Path
    line: int
    raw: dict
    pair: TrainPair
    positives: list[str]  # every positive of the row (labeled rows may have several; pair.positive is the first)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def view(self) -> str | None:
        """The instruction documents are embedded with for this row (symmetric tasks), else None."""
        return self.pair.instruction if self.pair.instruct_documents else None


def read_rows(inputs: list[Path]) -> list[Row]:
    """Rows of generate output directories / examples files or labeled JSONL; a bad row raises DataError."""
    rows = []
    for path in inputs:
        file = examples_file(path)
        for line, raw in read_jsonl(file):
            try:
                if "family" in raw:
                    pair = pair_from_generated(raw)
                    positives = [pair.positive]
                else:
                    pair = pair_from_labeled(raw, file.stem)
                    positives = list(raw["pos"])
            except (KeyError, ValueError, TypeError) as err:
                reason = f"field {err.args[0]!r} is missing" if isinstance(err, KeyError) else str(err)
                raise DataError(f"{file}:{line}: {reason}") from None
            rows.append(Row(file, line, raw, pair, positives))
    if not rows:
        raise DataError(f"{', '.join(map(str, inputs))}: no rows")
    return rows


class Pool:
    """Every distinct document text of the rows (positives and negatives), plus any extra texts, in first-seen
    order; candidates come from here."""

    def __init__(self, rows: list[Row], extra: list[str] = ()):
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        for row in rows:
            for text in [*row.positives, *row.pair.negatives]:
                self._add(text)
        for text in extra:
            self._add(text)

    def _add(self, text: str) -> None:
        if text not in self.index:
            self.index[text] = len(self.texts)
            self.texts.append(text)

    def __len__(self) -> int:
        return len(self.texts)


def read_pool_texts(path: Path, column: str = "text") -> list[str]:
    """Extra pool documents: a JSONL file with a text column."""
    texts = []
    for line, raw in read_jsonl(path, (column,)):
        if not isinstance(raw[column], str) or not raw[column].strip():
            raise DataError(f"{path}:{line}: field '{column}' is empty or not text")
        texts.append(raw[column])
    return texts


class Vectors:
    """Query and pool embeddings of one embedder, through the on-disk cache when one is given. Pool documents
    are embedded once per view: plainly, or (for symmetric rows) formatted like queries with their instruction,
    as the trainer and the evaluator embed them."""

    def __init__(self, embedder: Embedder, pool: Pool, cache: Path | None, batch_size: int = 32,
                 show_progress: bool = False):
        self.embedder, self.pool, self.batch_size, self.show_progress = embedder, pool, batch_size, show_progress
        self.cache = EmbeddingCache(cache, embedder.fingerprint) if cache is not None else None
        self._views: dict[str | None, np.ndarray] = {}

    def _embed(self, texts: list[str], role: str, instruction: str | None) -> np.ndarray:
        return embed(self.embedder, texts, role, instruction, batch_size=self.batch_size,
                     show_progress=self.show_progress, cache=self.cache)

    def documents(self, view: str | None) -> np.ndarray:
        """(len(pool), dim) pool vectors for one view."""
        if view not in self._views:
            role = "document" if view is None else "query"
            self._views[view] = self._embed(self.pool.texts, role, view)
        return self._views[view]

    def queries(self, rows: list[Row]) -> np.ndarray:
        """(len(rows), dim): each query with its own instruction (one encode call per instruction)."""
        out: np.ndarray | None = None
        for instruction, members in _group(rows, lambda r: r.pair.instruction).items():
            vectors = self._embed([rows[i].pair.query for i in members], "query", instruction or None)
            if out is None:
                out = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
            out[members] = vectors
        return out


@dataclass
class Hits:
    """One row's candidates, best first, without its positives and its query text."""

    scores: np.ndarray  # (n,) cosine
    indices: np.ndarray  # (n,) pool indices
    positive_score: float  # cosine of the query and its (first) positive
    positive_rank: int | None  # 0-based place of the positive among the other documents; None: not in the depth


def retrieve(rows: list[Row], vectors: Vectors, depth: int, search: str = "auto") -> list[Hits]:
    """The `depth` best pool documents for each row's query, by exact cosine search (faiss or torch)."""
    queries = vectors.queries(rows)
    hits: list[Hits | None] = [None] * len(rows)
    for view, members in _group(rows, lambda r: r.view).items():
        docs = vectors.documents(view)
        excluded = max(len(rows[i].positives) for i in members) + 1  # own positives and the query text
        scores, indices = top_k(queries[members], docs, depth + excluded, backend=_backend(search))
        for at, i in enumerate(members):
            positive_score = float(docs[vectors.pool.index[rows[i].pair.positive]] @ queries[i])
            hits[i] = _hits(rows[i], vectors.pool, scores[at], indices[at], depth, positive_score)
    return hits


def _hits(row: Row, pool: Pool, scores: np.ndarray, indices: np.ndarray, depth: int, positive_score: float) -> Hits:
    positive = pool.index[row.pair.positive]
    others = {pool.index[t] for t in row.positives} | ({pool.index[row.pair.query]} if row.pair.query in pool.index
                                                       else set())
    others.discard(positive)
    ranked = [(s, i) for s, i in zip(scores, indices) if i not in others]  # the positive's competitors, best first
    rank = next((r for r, (_, i) in enumerate(ranked) if i == positive), None)
    candidates = [(s, i) for s, i in ranked if i != positive][:depth]
    return Hits(np.array([s for s, _ in candidates], dtype=np.float32),
                np.array([i for _, i in candidates], dtype=np.int64), positive_score,
                rank if rank is not None and rank < depth else None)


def _backend(search: str) -> str:
    if search != "auto":
        return search
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch"
    return "faiss"


def _group(rows: list[Row], key) -> dict:
    groups: dict = {}
    for i, row in enumerate(rows):
        groups.setdefault(key(row), []).append(i)
    return groups


def labeled_row(row: Row, positives: list[str], negatives: list[str], **extra) -> dict:
    """A row in the labeled layout ({query, pos[], neg[], prompt}) that reads back as the same kind of pair."""
    pair = row.pair
    out = {"query": pair.query, "pos": positives, "neg": negatives, "prompt": pair.instruction,
           "instruct_documents": pair.instruct_documents, "source": pair.source}
    if not pair.in_batch_negatives:
        out["type"] = "symmetric_class"
    if "id" in row.raw:
        out = {"id": row.raw["id"], **out}
    return {**out, **extra}


def write_rows(path: Path, rows: list[dict]) -> Path:
    return _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_atomic(path: Path, text: str) -> Path:
    """Written aside, then swapped in: a run killed midway leaves the previous file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_card(out: Path, title: str, data: dict) -> dict:
    """data_card.json and data_card.md: the counts of one refine run."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "data_card.json", json.dumps(data, indent=1, ensure_ascii=False))
    lines = [f"# {title}", "", "| | |", "|---|---:|"]
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows = "\n".join(f"| {k} | {v} |" for k, v in value.items()) or "| (none) | |"
            tables.append(f"## {key}\n\n| | |\n|---|---:|\n{rows}\n")
        else:
            lines.append(f"| {key} | {', '.join(map(str, value)) if isinstance(value, list) else value} |")
    _write_atomic(out / "data_card.md", "\n".join(lines) + "\n\n" + "\n".join(tables))
    return data
