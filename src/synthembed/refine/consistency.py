"""Round-trip consistency filtering (Promptagator): keep an example only if the embedder retrieves its positive
within the top k for its query among the pool of all documents. Kept rows are written as they came (generate
rows stay generate rows); rejected ones go to rejected.jsonl with the reason, the positive's rank and the
document that beat it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from synthembed.model.protocol import Embedder
from synthembed.refine.source import (Hits, Pool, Row, Vectors, read_pool_texts, read_rows, retrieve, write_card,
                                      write_rows)


def verdict(hits: Hits, k: int) -> str | None:
    """None: keep; else the reason to reject."""
    return None if hits.positive_rank is not None and hits.positive_rank < k else f"positive_not_in_top_{k}"


def filter_consistent(rows: list[Row], vectors: Vectors, k: int, search: str = "auto") -> tuple[list[dict],
                                                                                                list[dict]]:
    """(kept rows as they were, rejected rows with reasons)."""
    if k < 1:
        raise ValueError(f"--top-k must be >= 1, got {k}")
    kept, rejected = [], []
    for row, hits in zip(rows, retrieve(rows, vectors, k, search), strict=True):
        reason = verdict(hits, k)
        if reason is None:
            kept.append(row.raw)
            continue
        rejected.append({"file": str(row.file), "line": row.line, **({"id": row.raw["id"]} if "id" in row.raw else {}),
                         "reason": reason, "query": row.pair.query, "positive": row.pair.positive,
                         "positive_score": round(hits.positive_score, 4),
                         "top_document": vectors.pool.texts[int(hits.indices[0])] if len(hits.indices) else None,
                         "top_score": round(float(hits.scores[0]), 4) if len(hits.scores) else None})
    return kept, rejected


def run_filter(inputs: list[Path], embedder: Embedder, output: Path, k: int = 3, cache: Path | None = None,
               pool_file: Path | None = None, batch_size: int = 32, search: str = "auto",
               show_progress: bool = False) -> dict:
    """Read, filter, write `output/examples.jsonl`, `output/rejected.jsonl` and the data card; returns the card."""
    rows = read_rows(inputs)
    pool = Pool(rows, read_pool_texts(pool_file) if pool_file else [])
    kept, rejected = filter_consistent(rows, Vectors(embedder, pool, cache, batch_size, show_progress), k, search)
    output = Path(output)
    write_rows(output / "examples.jsonl", kept)
    write_rows(output / "rejected.jsonl", rejected)
    by_family = Counter(r.get("family") or r.get("source") or "labeled" for r in kept)
    card = {"command": "data filter --consistency", "inputs": [str(p) for p in inputs], "embedder": embedder.name,
            "top_k": k, "rows": len(rows), "pool_documents": len(pool), "kept": len(kept),
            "rejected": len(rejected), "kept_fraction": round(len(kept) / len(rows), 4),
            "rejected_by_reason": dict(Counter(r["reason"] for r in rejected).most_common()),
            "kept_by_source": dict(by_family.most_common())}
    return write_card(output, "Round-trip consistency filter", card)
