"""Bitext mining as MTEB 2 scores it (AbsTaskBitextMining + BitextMiningEvaluator): each source sentence's
nearest target sentence by cosine is its predicted translation; gold is the same line. Scores are sklearn's
accuracy and weighted precision/recall/F1 over the gold line indices. Main score F1.

MTEB searches one way only, source -> target (for Tatoeba `xxx-eng`: xxx sentences against the English ones).
`both_directions=True` adds the reverse search under `*_reverse` keys and their mean under `*_mean`, the way
LASER reports Tatoeba; the main score stays MTEB's. Both sides are encoded as queries with the instruction.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from synthembed.evaluate.cache import embed
from synthembed.evaluate.search import top_k
from synthembed.formats.datasets import BitextData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "f1"


def evaluate(embedder: Embedder, data: BitextData, instruction: str | None = None, *,
             both_directions: bool = False, batch_size: int = 32, normalize: bool = True, cache=None,
             show_progress: bool = False, main_score: str = MAIN_SCORE) -> dict:
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    source = embed(embedder, data.source, "query", instruction, **opts)  # (n, dim)
    target = embed(embedder, data.target, "query", instruction, **opts)  # (n, dim)
    out = mining_scores(source, target)
    if both_directions:
        reverse = mining_scores(target, source)
        for key in ("accuracy", "precision", "recall", "f1"):
            out[f"{key}_reverse"] = reverse[key]
            out[f"{key}_mean"] = (out[key] + reverse[key]) / 2
    return {"main_score": out[main_score], **out}


def mining_scores(queries: np.ndarray, candidates: np.ndarray) -> dict:
    """Row i of `queries` should find row i of `candidates`; (n, dim) x2 -> accuracy and weighted P/R/F1."""
    _, index = top_k(queries, candidates, 1)  # (n, 1)
    predicted = index[:, 0].tolist()
    gold = list(range(len(queries)))
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0, average="weighted")),
        "recall": float(recall_score(gold, predicted, zero_division=0, average="weighted")),
        "f1": float(f1_score(gold, predicted, zero_division=0, average="weighted")),
        "accuracy": float(accuracy_score(gold, predicted)),
    }
