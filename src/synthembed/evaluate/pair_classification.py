"""Pair classification as MTEB 2 scores it (AbsTaskPairClassification + PairClassificationEvaluator): for each
similarity (cosine, dot, -euclidean, -manhattan, and the model's own = cosine) the average precision of the
scores against the 0/1 labels, plus the accuracy and F1 at the best threshold. Main score max_ap, the best AP
over the similarities. Both texts are encoded as queries with the instruction (E5: symmetric task).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from synthembed.evaluate.cache import embed
from synthembed.formats.datasets import PairData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "max_ap"


def evaluate(embedder: Embedder, data: PairData, instruction: str | None = None, *, batch_size: int = 32,
             normalize: bool = True, cache=None, show_progress: bool = False,
             main_score: str = MAIN_SCORE) -> dict:
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    emb1 = embed(embedder, data.texts1, "query", instruction, **opts)  # (n, dim)
    emb2 = embed(embedder, data.texts2, "query", instruction, **opts)  # (n, dim)
    out = pair_scores(emb1, emb2, np.asarray(data.labels, dtype=np.int64))
    return {"main_score": out[main_score], **out}


def pair_scores(emb1: np.ndarray, emb2: np.ndarray, labels: np.ndarray) -> dict:
    cosine = 1 - paired_cosine_distances(emb1, emb2)  # (n,)
    similarities = [  # (name, scores, whether higher means more similar), in mteb's order
        ("similarity", cosine, True),
        ("cosine", cosine, True),
        ("manhattan", paired_manhattan_distances(emb1, emb2), False),
        ("euclidean", paired_euclidean_distances(emb1, emb2), False),
        ("dot", np.array([np.dot(a, b) for a, b in zip(emb1, emb2)]), True),  # row by row, as mteb
    ]
    out: dict[str, float] = {}
    best: dict[str, list[float]] = {}
    for name, scores, higher in similarities:
        for metric, value in threshold_metrics(scores.tolist(), labels, higher).items():
            out[f"{name}_{metric}"] = value
            best.setdefault(metric, []).append(value)
    for metric in ("accuracy", "f1", "precision", "recall", "ap"):
        out[f"max_{metric}"] = max(best[metric])
    return out


def threshold_metrics(scores: list[float], labels: np.ndarray, higher: bool) -> dict:
    """Best-threshold accuracy and F1 (with its precision/recall) and AP; thresholds never split tied scores."""
    rows = sorted(zip(scores, labels), key=lambda r: r[0], reverse=higher)
    best_acc, positives, negatives_left = 0.0, 0, int(sum(labels == 0))
    best_f1 = best_p = best_r = 0.0
    total_pos = int(sum(labels))
    for i in range(len(rows) - 1):
        score, label = rows[i]
        if label == 1:
            positives += 1
        else:
            negatives_left -= 1
        if score == rows[i + 1][0]:
            continue
        best_acc = max(best_acc, (positives + negatives_left) / len(labels))
        if positives > 0:
            precision, recall = positives / (i + 1), positives / total_pos
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1, best_p, best_r = f1, precision, recall
    ap = average_precision_score(labels, np.asarray(scores) * (1 if higher else -1))
    return {"accuracy": float(best_acc), "f1": float(best_f1), "precision": float(best_p),
            "recall": float(best_r), "ap": float(ap)}
