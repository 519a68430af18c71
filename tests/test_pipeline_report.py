"""The pipeline report's held-out intervals: a percentile bootstrap over queries against the exact bootstrap
distribution, and per-query nDCG@10 whose mean is the retrieval evaluator's score."""

import itertools
import json

import numpy as np
import pytest

from synthembed.data.holdout import write_beir
from synthembed.data.pairs import TrainPair
from synthembed.evaluate.retrieval import evaluate
from synthembed.formats.beir import load_beir
from synthembed.model.embedder import HFEmbedder
from synthembed.pipeline.report import PER_QUERY, _lift, bootstrap_interval, per_query_ndcg
from synthembed.testing.tiny import tiny_decoder


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    values = [0.0, 0.2, 0.5, 0.9, 1.0]
    # every one of the 5^5 equally likely resamples, enumerated: the bootstrap distribution without sampling
    exact = [sum(pick) / 5 for pick in itertools.product(values, repeat=5)]
    low, high = np.percentile(exact, [2.5, 97.5])
    got = bootstrap_interval(values, resamples=50_000, seed=1)
    assert got == pytest.approx((low, high), abs=0.02)
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)  # seeded
    assert bootstrap_interval([0.3] * 4) == (pytest.approx(0.3), pytest.approx(0.3))


def test_per_query_ndcg_averages_to_the_evaluator_score_and_the_report_shows_intervals(tmp_path, one_thread):
    pairs = [TrainPair("Find the fact", f"fact number {i} about {topic}", f"{topic} has property {i}.",
                       [f"{topic} lacks property {i + 1}."]) for i, topic in enumerate(["cats", "rivers", "stars",
                                                                                           "bread", "trains", "snow"])]
    write_beir(pairs, tmp_path / "heldout")
    embedder = HFEmbedder(tiny_decoder(tmp_path / "tiny"))
    per_query = per_query_ndcg(embedder, tmp_path / "heldout")
    assert len(per_query) == 6
    main = evaluate(embedder, load_beir(tmp_path / "heldout"))["main_score"]
    assert sum(per_query.values()) / 6 == pytest.approx(main, abs=1e-5)

    for label, shift in (("base", 0.0), ("trained", 0.1)):
        path = tmp_path / "evaluate" / label / PER_QUERY
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({q: min(1.0, v + shift) for q, v in per_query.items()}))
    text = "\n".join(_lift(tmp_path / "evaluate"))
    assert "over 6 queries" in text and "| trained - base |" in text and "95% interval" in text
