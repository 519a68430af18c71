"""Semantic textual similarity as MTEB 2 scores it (AbsTaskSTS + AnySTSEvaluator): the Spearman correlation
between the gold scores and the cosine similarity of the two sentences' embeddings. Main score cosine_spearman.

Gold scores are first mapped to 0..1 with the task's (min_score, max_score), which changes no correlation but
keeps the numbers MTEB's. Both sentences are encoded the same way, as queries with the instruction (E5 gives
symmetric tasks the instruction on both sides).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

from synthembed.evaluate.cache import embed
from synthembed.formats.datasets import STSData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "cosine_spearman"


def evaluate(embedder: Embedder, data: STSData, instruction: str | None = None, *, min_score: float = 0.0,
             max_score: float = 5.0, batch_size: int = 32, normalize: bool = True, cache=None,
             show_progress: bool = False, main_score: str = MAIN_SCORE) -> dict:
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    emb1 = embed(embedder, data.sentences1, "query", instruction, **opts)  # (n, dim)
    emb2 = embed(embedder, data.sentences2, "query", instruction, **opts)  # (n, dim)
    gold = [(s - min_score) / (max_score - min_score) for s in data.scores]
    out = sts_scores(emb1, emb2, gold)
    return {"main_score": out[main_score], **out}


def sts_scores(emb1: np.ndarray, emb2: np.ndarray, gold: list[float]) -> dict:
    """Pearson and Spearman of gold against cosine, -manhattan and -euclidean; (n, dim) x2 and (n,) -> dict."""
    cosine = 1 - paired_cosine_distances(emb1, emb2)  # (n,)
    manhattan = -paired_manhattan_distances(emb1, emb2)
    euclidean = -paired_euclidean_distances(emb1, emb2)
    out: dict[str, float] = {}
    for name, predicted in (("cosine", cosine), ("manhattan", manhattan), ("euclidean", euclidean)):
        out[f"{name}_pearson"] = float(pearsonr(gold, predicted)[0])
        out[f"{name}_spearman"] = float(spearmanr(gold, predicted)[0])
    # MTEB also reports the model's own similarity; ours is cosine
    out["pearson"], out["spearman"] = out["cosine_pearson"], out["cosine_spearman"]
    return out
