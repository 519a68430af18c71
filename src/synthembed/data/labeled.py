"""Labeled training rows ({query, pos[], neg[], prompt}) from the train splits of common evaluation layouts:
BEIR retrieval, STS pairs and classification tables, in the shapes the field trains on (BGE / E5 style)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from synthembed.formats.beir import load_beir
from synthembed.formats.datasets import LabeledTexts, STSData
from synthembed.formats.instructions import type_instruction

STS_INSTRUCTION = type_instruction("STS")


def from_beir(root: Path, split: str, instruction: str) -> list[dict]:
    """One row per relevant (query, document); in-batch negatives only."""
    data = load_beir(root, split)
    rows = []
    for qid, judged in data.qrels.items():
        for doc_id, relevance in judged.items():
            if relevance > 0:
                title, text = data.corpus[doc_id]
                rows.append({"query": data.queries[qid], "pos": [f"{title} {text}".strip()], "neg": [],
                             "prompt": instruction})
    return rows


def from_sts(data: STSData, min_score: float, seed: int = 0) -> list[dict]:
    """Pairs scored at least `min_score` become (s1, s2); the hard negative is the lowest-scored partner of s1
    when it has one below the threshold, else a random sentence of the set."""
    rng = random.Random(seed)
    partners: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for s1, s2, score in zip(data.sentences1, data.sentences2, data.scores, strict=True):
        partners[s1].append((score, s2))
    pool = data.sentences1 + data.sentences2
    rows = []
    for s1, s2, score in zip(data.sentences1, data.sentences2, data.scores, strict=True):
        if score >= min_score:
            low = min(partners[s1])
            negative = low[1] if low[0] < min_score else rng.choice(pool)
            rows.append({"query": s1, "pos": [s2], "neg": [negative], "prompt": STS_INSTRUCTION})
    return rows


def from_classification(data: LabeledTexts, instruction: str, negatives: int = 3, seed: int = 0) -> list[dict]:
    """Each text with another text of its class as positive and texts of other classes as negatives; no in-batch
    negatives (another row of the same class would be a false negative)."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(data.texts, data.labels, strict=True):
        by_label[label].append(text)
    labels = list(by_label)
    rows = []
    for text, label in zip(data.texts, data.labels, strict=True):
        same = [t for t in by_label[label] if t != text]
        if not same:
            continue
        others = rng.sample([lab for lab in labels if lab != label], min(negatives, len(labels) - 1))
        rows.append({"query": text, "pos": [rng.choice(same)], "neg": [rng.choice(by_label[o]) for o in others],
                     "prompt": instruction, "type": "symmetric_class"})
    return rows

