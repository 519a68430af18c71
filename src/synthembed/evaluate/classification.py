"""Classification as MTEB 2 scores it (AbsTaskClassification + SklearnEvaluator): a logistic regression
(max_iter 100, random_state = seed) trained on embeddings of a few examples per label, tested on the test
split; repeated n_experiments times and averaged. Main score accuracy.

The training sample of each experiment follows mteb exactly: one index list 0..n-1 is shuffled in place by a
fresh `np.random.RandomState(seed)` before every experiment (so shuffles accumulate), then the first
`samples_per_label` indices of each label are taken in that order. Only the union of sampled training texts
is encoded. Texts are encoded as queries with the instruction (E5 puts the instruction on the input text).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score

from synthembed.evaluate.cache import embed
from synthembed.formats.datasets import ClassificationData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "accuracy"


def undersample(labels: list, n_experiments: int, samples_per_label: int, seed: int) -> list[list[int]]:
    """Training indices of each experiment, as mteb's `_undersample_data` picks them."""
    idxs = list(range(len(labels)))
    picks = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)  # in place, on top of the previous shuffle
        counts: dict = defaultdict(int)
        chosen = []
        for i in idxs:
            if counts[labels[i]] < samples_per_label:
                chosen.append(i)
                counts[labels[i]] += 1
        picks.append(chosen)
    return picks


def evaluate(embedder: Embedder, data: ClassificationData, instruction: str | None = None, *,
             n_experiments: int = 10, samples_per_label: int = 8, seed: int = 42, max_iter: int = 100,
             batch_size: int = 32, normalize: bool = True, cache=None, show_progress: bool = False,
             main_score: str = MAIN_SCORE) -> dict:
    names = set(data.train.labels) | set(data.test.labels)
    # label ids in sorted order (numeric when all labels are integers), as a HF ClassLabel numbers them
    numeric = all(name.lstrip("-").isdigit() for name in names)
    label_id = {name: i for i, name in enumerate(sorted(names, key=int if numeric else str))}
    y_train_all = [label_id[x] for x in data.train.labels]
    y_test = np.array([label_id[x] for x in data.test.labels])
    picks = undersample(y_train_all, n_experiments, samples_per_label, seed)
    union = sorted(set().union(*picks))
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    train_vectors = embed(embedder, [data.train.texts[i] for i in union], "query", instruction, **opts)  # (u, dim)
    test_vectors = embed(embedder, data.test.texts, "query", instruction, **opts)  # (n_test, dim)
    row_of = {orig: row for row, orig in enumerate(union)}
    experiments = []
    for chosen in picks:
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        model.fit(train_vectors[[row_of[i] for i in chosen]], [y_train_all[i] for i in chosen])
        experiments.append(classification_scores(y_test, model.predict(test_vectors)))
    out = {key: _mean([e[key] for e in experiments]) for key in experiments[0]}
    return {"main_score": out[main_score], **out, "scores_per_experiment": experiments}


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy and macro/weighted F1, precision, recall; AP too when there are two classes (as mteb).
    zero_division=0 gives the values of sklearn's default ("warn") without the warnings."""
    scores = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision_weighted": float(precision_score(y_true, y_pred, average="weighted", zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_weighted": float(recall_score(y_true, y_pred, average="weighted", zero_division=0)),
        "ap": None,
        "ap_weighted": None,
    }
    if len(np.unique(y_true)) == 2:
        scores["ap"] = float(average_precision_score(y_true, y_pred, average="macro", zero_division=0))
        scores["ap_weighted"] = float(average_precision_score(y_true, y_pred, average="weighted", zero_division=0))
    return scores


def _mean(values: list) -> float | None:
    """Mean over experiments; None where a metric does not apply (AP beyond two classes; mteb writes NaN)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
