"""Clustering as MTEB 2 scores it, both protocols. Main score v_measure.

"legacy" (AbsTaskClusteringLegacy + ClusteringEvaluator; the protocol of the MTEB paper and E5): each set is
encoded and clustered alone by MiniBatchKMeans(n_clusters = number of labels, batch_size 500, n_init "auto",
random_state seed); the score is the mean V-measure over sets (a set with one label scores 1.0).

"fast" (AbsTaskClustering, the "...v2" tasks): all texts are pooled and downsampled to `max_documents`, or
to `max_fraction` of them (mteb's default 0.04; None embeds all), by `random.Random(seed).sample`, embedded
once; then `n_bootstrap` times `cluster_size` rows are drawn WITH replacement from the same generator
(`.choices`) and clustered by MiniBatchKMeans(batch_size 512, k-means++, n_init 1).
Texts are encoded as queries with the instruction.
"""

from __future__ import annotations

import random

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

from synthembed.evaluate.cache import embed
from synthembed.formats.datasets import ClusteringData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "v_measure"


def evaluate(embedder: Embedder, data: ClusteringData, instruction: str | None = None, *,
             protocol: str = "legacy", seed: int = 42, kmeans_batch_size: int | None = None,
             n_bootstrap: int = 10, cluster_size: int = 16_384, max_documents: int | None = None,
             max_fraction: float | None = 0.04, batch_size: int = 32, normalize: bool = True, cache=None,
             show_progress: bool = False, main_score: str = MAIN_SCORE) -> dict:
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    if protocol == "legacy":
        scores = []
        for group in data.sets:
            if len(set(group.labels)) <= 1:
                scores.append(1.0)  # mteb skips encoding: any clustering of one label is perfect
                continue
            vectors = embed(embedder, group.texts, "query", instruction, **opts)  # (n, dim)
            scores.append(v_measure_score(group.labels, legacy_assign(vectors, len(set(group.labels)), seed,
                                                                      kmeans_batch_size or 500)))
        out = {"v_measure": float(np.mean(scores)), "v_measure_std": float(np.std(scores)),
               "v_measures": [float(s) for s in scores]}
        return {"main_score": out[main_score], **out}
    if protocol != "fast":
        raise ValueError(f"protocol {protocol!r}: expected 'legacy' or 'fast'")
    texts = [t for group in data.sets for t in group.texts]
    labels = [x for group in data.sets for x in group.labels]
    rng = random.Random(seed)  # one stream: downsampling first, then the bootstrap draws (as mteb)
    if max_documents is not None or max_fraction is not None:  # mteb samples even when keeping all (reorders)
        keep = max_documents if max_documents is not None else int(max_fraction * len(texts))
        rows = rng.sample(range(len(texts)), k=min(len(texts), keep))
        texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
    vectors = embed(embedder, texts, "query", instruction, **opts)  # (n, dim)
    out = bootstrap_scores(vectors, np.array(labels), rng, seed=seed, n_bootstrap=n_bootstrap,
                           cluster_size=cluster_size, kmeans_batch_size=kmeans_batch_size or 512)
    return {"main_score": out[main_score], **out}


def legacy_assign(vectors: np.ndarray, n_clusters: int, seed: int, kmeans_batch_size: int = 500) -> np.ndarray:
    model = MiniBatchKMeans(n_clusters=n_clusters, batch_size=kmeans_batch_size, n_init="auto",
                            compute_labels=True, random_state=seed)
    model.fit(vectors)
    return model.labels_  # (n,)


def bootstrap_scores(vectors: np.ndarray, labels: np.ndarray, rng: random.Random, *, seed: int,
                     n_bootstrap: int, cluster_size: int, kmeans_batch_size: int) -> dict:
    """V-measure and AMI over bootstrap samples of (n, dim) vectors with (n,) labels (one label level)."""
    model = MiniBatchKMeans(n_clusters=np.unique(labels).size, batch_size=kmeans_batch_size, init="k-means++",
                            n_init=1, random_state=seed)
    v_measures, amis = [], []
    for _ in range(n_bootstrap):
        rows = rng.choices(range(len(vectors)), k=cluster_size)
        assigned = model.fit_predict(vectors[rows])
        v_measures.append(float(v_measure_score(labels[rows], assigned)))
        amis.append(float(adjusted_mutual_info_score(labels[rows], assigned)))
    return {"v_measure": float(np.mean(v_measures)), "v_measure_std": float(np.std(v_measures)),
            "ami": float(np.mean(amis)), "ami_std": float(np.std(amis)), "v_measures": v_measures}
