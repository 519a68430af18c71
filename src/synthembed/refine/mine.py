"""Hard-negative mining: for each query, the pool documents the embedder ranks highest, skipping likely false
negatives (positive-aware, as NV-Retriever's "TopK-PercPos": a candidate scoring above `max_ratio` times the
positive's score, or within `margin` of it, is dropped), N per query, in the labeled layout the trainer reads."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from synthembed.model.protocol import Embedder
from synthembed.refine.source import (Hits, Pool, Row, Vectors, labeled_row, read_pool_texts, read_rows, retrieve,
                                      write_card, write_rows)

log = logging.getLogger(__name__)


@dataclass
class MineConfig:
    negatives: int = 4  # per query
    depth: int = 30  # candidates retrieved per query before the false-negative rule
    max_ratio: float = 0.95  # drop candidates scoring above this fraction of the positive's score
    margin: float = 0.0  # and those scoring above the positive's score minus this
    keep_existing: bool = False  # keep each row's own negatives before the mined ones
    search: str = "auto"  # faiss when installed, else torch (both exact)

    def __post_init__(self):
        if self.negatives < 1 or self.depth < self.negatives:
            raise ValueError(f"--negatives must be >= 1 and --depth >= --negatives (got {self.negatives}, "
                             f"{self.depth})")
        if not 0 < self.max_ratio <= 1 or self.margin < 0:
            raise ValueError(f"--max-ratio must be in (0, 1] and --margin >= 0 (got {self.max_ratio}, "
                             f"{self.margin})")


def threshold(positive_score: float, cfg: MineConfig) -> float:
    """The highest score a negative may have."""
    return min(cfg.max_ratio * positive_score, positive_score - cfg.margin)


def pick_negatives(hits: Hits, cfg: MineConfig) -> tuple[list[int], int]:
    """(pool indices of the negatives, best first; candidates dropped as likely false negatives)."""
    allowed = hits.scores <= threshold(hits.positive_score, cfg)
    return [int(i) for i in hits.indices[allowed][:cfg.negatives]], int((~allowed).sum())


def mine(rows: list[Row], vectors: Vectors, cfg: MineConfig) -> tuple[list[dict], dict]:
    """(labeled rows with mined negatives, counts for the card)."""
    pool = vectors.pool
    out, dropped, short, neg_scores, positive_scores = [], 0, 0, [], []
    for row, hits in zip(rows, retrieve(rows, vectors, cfg.depth, cfg.search), strict=True):
        chosen, n_dropped = pick_negatives(hits, cfg)
        dropped += n_dropped
        positive_scores.append(hits.positive_score)
        short += len(chosen) < cfg.negatives
        neg_scores += [float(s) for s, i in zip(hits.scores, hits.indices) if i in chosen]
        mined = [pool.texts[i] for i in chosen]
        existing = row.pair.negatives if cfg.keep_existing else []
        out.append(labeled_row(row, row.positives, existing + [t for t in mined if t not in existing]))
    counts = {"rows": len(rows), "pool_documents": len(pool), "negatives_written": sum(len(r["neg"]) for r in out),
              "rows_with_fewer_than_n": short, "candidates_dropped_as_false_negatives": dropped,
              "mean_positive_score": _mean(positive_scores), "mean_negative_score": _mean(neg_scores)}
    return out, counts


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def run_mine(inputs: list[Path], embedder: Embedder, output: Path, cfg: MineConfig, cache: Path | None = None,
             pool_file: Path | None = None, batch_size: int = 32, show_progress: bool = False) -> dict:
    """Read, mine, write `output/examples.jsonl` and the data card; returns the card."""
    rows = read_rows(inputs)
    pool = Pool(rows, read_pool_texts(pool_file) if pool_file else [])
    vectors = Vectors(embedder, pool, cache, batch_size, show_progress)
    out, counts = mine(rows, vectors, cfg)
    write_rows(Path(output) / "examples.jsonl", out)
    card = {"command": "data mine", "inputs": [str(p) for p in inputs], "embedder": embedder.name,
            "settings": asdict(cfg), **counts}
    return write_card(Path(output), "Hard negatives mined", card)
