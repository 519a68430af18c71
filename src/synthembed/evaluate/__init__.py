"""Evaluation of an Embedder the way MTEB 2 scores it: one module per task type, each with
`evaluate(embedder, data, instruction, **options) -> {"main_score": ..., <metric>: ...}` (fractions 0..1),
exact search in `search`, an on-disk embedding cache in `cache`. The data sets' loaders (`formats.datasets`,
BEIR directories in `formats.beir`) and the paper's per-task instructions (`formats.instructions`) are shared
with training and live in `formats`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

# MTEB task type -> module holding its evaluate()
EVALUATORS = {
    "Retrieval": "retrieval",
    "STS": "sts",
    "BitextMining": "bitext",
    "Classification": "classification",
    "Clustering": "clustering",
    "PairClassification": "pair_classification",
    "Reranking": "reranking",
}


def evaluator(task_type: str) -> Callable[..., dict]:
    """The evaluate() function for an MTEB task type (case-insensitive)."""
    for name, module in EVALUATORS.items():
        if name.lower() == task_type.lower():
            return importlib.import_module(f"synthembed.evaluate.{module}").evaluate
    raise ValueError(f"task type {task_type!r}: expected one of {list(EVALUATORS)}")
