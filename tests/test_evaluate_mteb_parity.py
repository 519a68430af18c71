"""Our evaluators against mteb 2 itself: the same data and vectors through mteb's own task classes
(its mock tasks with our data) and through synthembed.evaluate must give the same scores, for every task type.
Needs the `mteb` package (a reference, not a dependency); skipped without it."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")
from datasets import Dataset, DatasetDict  # noqa: E402  (mteb brings datasets)
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.mocks.mock_tasks import bitext_mining, classification as mock_cls, clustering as mock_clu  # noqa: E402
from mteb.mocks.mock_tasks import pair_classification as mock_pair, reranking as mock_rr  # noqa: E402
from mteb.mocks.mock_tasks import retrieval as mock_ret, sts as mock_sts  # noqa: E402
from mteb.models.model_implementations.random_baseline import random_encoder_baseline  # noqa: E402
from mteb.similarity_functions import cos_sim, pairwise_cos_sim  # noqa: E402

from synthembed.evaluate import bitext, classification, clustering, pair_classification, reranking, retrieval, sts
from synthembed.formats.datasets import (BitextData, ClassificationData, ClusteringData, LabeledTexts, PairData,
                                         RerankingData, RetrievalData, STSData)


class TextHash:
    """Our Embedder protocol: a deterministic random vector per text (role and instruction ignored)."""

    name = fingerprint = "text-hash"
    max_length = 64

    def encode(self, texts, role="document", instruction=None, batch_size=32, normalize=True, show_progress=False):
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=12)
                for t in texts]
        return np.stack(rows).astype(np.float32)


class ToMteb:
    """The same vectors behind mteb's EncoderProtocol."""

    mteb_model_meta = random_encoder_baseline  # cosine similarity

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        return TextHash().encode([text for batch in inputs for text in batch["text"]])

    def similarity(self, a, b):
        return cos_sim(a, b)

    def similarity_pairwise(self, a, b):
        return pairwise_cos_sim(a, b)


def mteb_scores(task_class, dataset, **attributes) -> dict:
    """mteb's scores, with "main_name" added: the mock task's main score, which we then ask for too."""

    class Task(task_class):
        def load_data(self, **kwargs):
            self.dataset, self.data_loaded = dataset, True

    task = Task()
    for name, value in attributes.items():
        setattr(task, name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = next(iter(task.evaluate(ToMteb(), "test", encode_kwargs={"batch_size": 32}).values()))
    return {**scores, "main_name": task.metadata.main_score}


def assert_same(ours: dict, theirs: dict, keys=None):
    keys = keys or [k for k, v in ours.items() if isinstance(v, float) and k in theirs]
    assert keys and ours["main_score"] == pytest.approx(theirs["main_score"], rel=1e-9, abs=1e-12)
    for key in keys:
        # mteb computes the "model's own" similarity in float32 torch; we reuse the float64 cosine
        own = key in ("pearson", "spearman") or key.startswith("similarity_")
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6 if own else 1e-9, abs=1e-12), key


RNG = np.random.default_rng(0)
WORDS = [f"w{i}" for i in range(40)]


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=4)) + f" {seed}-{i}" for i in range(n)]


def test_retrieval_matches_mteb():
    corpus = [{"id": f"d{i}", "text": f"doc {i} ", "title": "t" if i % 2 else ""} for i in range(300)]
    queries = [{"id": f"q{i}", "text": f"query {i}"} for i in range(40)]
    qrels = {f"q{i}": {f"d{j}": int(RNG.integers(0, 3)) for j in RNG.choice(300, 3, replace=False)}
             for i in range(35)}
    split = RetrievalSplitData(queries=Dataset.from_list(queries), corpus=Dataset.from_list(corpus),
                               relevant_docs=qrels, top_ranked=None)
    theirs = mteb_scores(mock_ret.MockRetrievalTask, {"default": {"test": split}})
    data = RetrievalData({d["id"]: (d["title"], d["text"]) for d in corpus}, {q["id"]: q["text"] for q in queries},
                         qrels)
    ours = retrieval.evaluate(TextHash(), data, None, main_score=theirs["main_name"])
    assert_same(ours, theirs)


def test_sts_matches_mteb():
    s1, s2 = sentences(60, 1), sentences(60, 2)
    gold = np.round(RNG.uniform(0, 5, 60), 1).tolist()
    theirs = mteb_scores(mock_sts.MockSTSTask, DatasetDict(
        {"test": Dataset.from_dict({"sentence1": s1, "sentence2": s2, "score": gold})}))
    assert_same(sts.evaluate(TextHash(), STSData(s1, s2, gold), None, main_score=theirs["main_name"]), theirs)


def test_classification_matches_mteb():
    train, test = sentences(200, 3), sentences(60, 4)
    y_train, y_test = RNG.integers(0, 5, 200).tolist(), RNG.integers(0, 5, 60).tolist()
    theirs = mteb_scores(mock_cls.MockClassificationTask, DatasetDict({
        "train": Dataset.from_dict({"text": train, "label": y_train}),
        "test": Dataset.from_dict({"text": test, "label": y_test})}))
    data = ClassificationData(LabeledTexts(train, [str(y) for y in y_train]),
                              LabeledTexts(test, [str(y) for y in y_test]))
    assert_same(classification.evaluate(TextHash(), data, None, main_score=theirs["main_name"]), theirs)


def test_legacy_clustering_matches_mteb():
    sets = [sentences(30, 5), sentences(24, 6)]
    labels = [RNG.integers(0, 3, 30).tolist(), RNG.integers(0, 4, 24).tolist()]
    theirs = mteb_scores(mock_clu.MockClusteringTask, DatasetDict(
        {"test": Dataset.from_dict({"sentences": sets, "labels": labels})}))
    data = ClusteringData([LabeledTexts(t, [str(x) for x in y]) for t, y in zip(sets, labels)])
    assert_same(clustering.evaluate(TextHash(), data, None, main_score=theirs["main_name"]), theirs)


def test_fast_clustering_matches_mteb():
    texts, labels = sentences(60, 7), RNG.integers(0, 3, 60).tolist()
    theirs = mteb_scores(mock_clu.LegacyMockClusteringFastTask, DatasetDict(
        {"test": Dataset.from_dict({"sentences": texts, "labels": labels})}),
        max_document_to_embed=40, n_clusters=3, max_documents_per_cluster=30)
    ours = clustering.evaluate(TextHash(), ClusteringData([LabeledTexts(texts, [str(x) for x in labels])]), None,
                               protocol="fast", max_documents=40, max_fraction=None, n_bootstrap=3, cluster_size=30,
                               main_score=theirs["main_name"])
    assert_same(ours, theirs, ["v_measure", "ami"])


def test_pair_classification_matches_mteb():
    t1, t2 = sentences(80, 8), sentences(80, 9)
    labels = RNG.integers(0, 2, 80).tolist()
    theirs = mteb_scores(mock_pair.MockPairClassificationTask, DatasetDict(
        {"test": Dataset.from_dict({"sentence1": t1, "sentence2": t2, "labels": labels})}))
    ours = pair_classification.evaluate(TextHash(), PairData(t1, t2, labels), None, main_score=theirs["main_name"])
    assert_same(ours, theirs)
    assert ours["max_ap"] == pytest.approx(theirs["max_ap"], rel=1e-9)  # the main score of real tasks


def test_bitext_matches_mteb():
    source = sentences(50, 10)
    target = [s if i % 2 else f"other {i}" for i, s in enumerate(source)]  # half the pairs are findable
    theirs = mteb_scores(bitext_mining.MockBitextMiningTask, DatasetDict(
        {"test": Dataset.from_dict({"sentence1": source, "sentence2": target})}))
    ours = bitext.evaluate(TextHash(), BitextData(source, target), None, main_score=theirs["main_name"])
    assert_same(ours, theirs, ["f1", "accuracy", "precision", "recall"])
    assert ours["accuracy"] >= 0.5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # mteb deprecates the old reranking layout we convert
def test_reranking_matches_mteb(monkeypatch):
    from mteb.abstasks.text import reranking as mteb_reranking

    queries = sentences(12, 11)
    positives = [sentences(int(RNG.integers(0, 3)), 100 + i) for i in range(12)]
    negatives = [sentences(int(RNG.integers(1, 6)), 200 + i) for i in range(12)]
    negatives[3] = []  # dropped, as mteb drops rows without a negative
    old_format = DatasetDict({"test": Dataset.from_dict({"query": queries, "positive": positives,
                                                         "negative": negatives})})

    class Task(mteb_reranking.AbsTaskReranking):
        metadata = mock_rr.MockRerankingTask.metadata

        def load_data(self, **kwargs):
            self.transform_old_dataset_format(old_format)

    monkeypatch.setattr(mteb_reranking, "OLD_FORMAT_RERANKING_TASKS", [Task.metadata.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Task().evaluate(ToMteb(), "test", encode_kwargs={"batch_size": 32})["default"]
    ours = reranking.evaluate(TextHash(), RerankingData(queries, positives, negatives), None,
                              main_score=Task.metadata.main_score)
    assert_same(ours, theirs)
