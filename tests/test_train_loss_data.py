"""The loss against hand-computed values, and the conversion of generated/labeled rows into training pairs."""

import json
import math

import pytest
import torch

from synthembed.data.examples import DataError
from synthembed.data.mix import epoch_batches
from synthembed.data.pairs import TrainPair, read_pairs
from synthembed.train.loss import info_nce
from tests.conftest import DATA, need


def test_info_nce_equals_hand_computed_value():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    d = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, 1.0]])  # q0: pos d0, neg d1; q1: pos d2
    positive, owner = torch.tensor([0, 2]), torch.tensor([0, 0, 1])
    tau = 0.5
    c = 1 / math.sqrt(2)
    cos = [[c, 1.0, 0.0], [c, 0.0, 1.0]]
    expected = -sum(math.log(math.exp(cos[i][p] / tau) / sum(math.exp(x / tau) for x in cos[i]))
                    for i, p in enumerate([0, 2])) / 2
    assert info_nce(q, d, positive, owner, tau).item() == pytest.approx(expected, rel=1e-6)
    # q1 opts out of in-batch negatives: only its own document remains, so its term is -log 1 = 0
    own_only = info_nce(q, d, positive, owner, tau, in_batch=torch.tensor([True, False])).item()
    first = -math.log(math.exp(cos[0][0] / tau) / sum(math.exp(x / tau) for x in cos[0]))
    assert own_only == pytest.approx(first / 2, rel=1e-6)


@pytest.fixture(scope="module")
def frontier_dir():
    need(DATA / "synthetic-frontier")
    return DATA / "synthetic-frontier"


def test_every_generated_family_becomes_the_papers_pair(frontier_dir):
    rows = {f: json.loads((frontier_dir / f"{f}.jsonl").read_text().splitlines()[0])
            for f in ("short-long", "long-short", "short-short", "sts")}
    pairs = {f: read_pairs(frontier_dir / f"{f}.jsonl")[0][0] for f in rows}
    out = {f: rows[f]["output"] for f in rows}
    assert pairs["short-long"] == TrainPair(rows["short-long"]["task"], out["short-long"]["user_query"],
                                            out["short-long"]["positive_document"],
                                            [out["short-long"]["hard_negative_document"]], "short-long")
    assert (pairs["long-short"].positive, pairs["long-short"].negatives) == (
        out["long-short"]["label"], [out["long-short"]["misleading_label"]])
    assert pairs["short-short"].negatives == []  # in-batch negatives only
    assert pairs["sts"].instruction == "Retrieve semantically similar text."
    assert (pairs["sts"].query, pairs["sts"].positive, pairs["sts"].negatives) == (
        out["sts"]["S1"], out["sts"]["S2"], [out["sts"]["S3"]])


def test_labeled_rows_and_classification_rows_without_in_batch_negatives():
    need(DATA / "labeled-examples")
    nq, _ = read_pairs(DATA / "labeled-examples/retrieval/nq.jsonl")
    assert len(nq) == 10 and nq[0].instruction.startswith("Given a question") and len(nq[0].negatives) == 100
    assert nq[0].in_batch_negatives and nq[0].source == "nq"
    banking, _ = read_pairs(DATA / "labeled-examples/classification-no_in_batch_neg/Banking77Classification.jsonl")
    assert not any(p.in_batch_negatives for p in banking)


def test_bad_rows_name_file_line_and_field_or_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"query": "q", "pos": ["p"], "neg": ["n"]}, {"query": "q", "pos": []}, {"pos": ["p"]},
            {"family": "sts", "S1": "a", "S2": "b"}, {"family": "short-long", "user_query": "q",
                                                       "positive_document": "p", "hard_negative_document": " "}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"mixed.jsonl:2: field 'pos'"):
        read_pairs(path)
    pairs, skipped = read_pairs(path, skip_bad=True)
    assert (len(pairs), skipped) == (1, 4)
    path.write_text(json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError, match=r"mixed.jsonl:1: field 'query' is missing"):
        read_pairs(path)
    path.write_text(json.dumps(rows[4]) + "\n")
    with pytest.raises(DataError, match=r"mixed.jsonl:1: field 'task'|mixed.jsonl:1: field 'hard_negative_document'"):
        read_pairs(path)


def test_weighted_mixing_and_single_source_batches_are_deterministic():
    a = [TrainPair("i", f"a{i}", "p", source="a") for i in range(8)]
    b = [TrainPair("i", f"b{i}", "p", source="b") for i in range(8)]
    batches = epoch_batches([a, b], [2.0, 0.5], batch_size=4, seed=1, epoch=0, by_source=True)
    sources = [{p.source for p in batch} for batch in batches]
    assert all(len(s) == 1 for s in sources)
    assert sum(len(x) for x in batches) == 16 + 4  # a twice, b half
    assert batches == epoch_batches([a, b], [2.0, 0.5], batch_size=4, seed=1, epoch=0, by_source=True)
    assert batches != epoch_batches([a, b], [2.0, 0.5], batch_size=4, seed=1, epoch=1, by_source=True)


def test_labeled_rows_from_evaluation_train_splits(tmp_path):
    from synthembed.data.examples import write_jsonl
    from synthembed.data.labeled import from_beir, from_classification, from_sts
    from synthembed.evaluate.data import LabeledTexts, STSData

    need(DATA / "scifact")
    scifact = from_beir(DATA / "scifact", "train", "Given a claim, find documents")
    judged = sum(1 for line in (DATA / "scifact/qrels/train.tsv").read_text().splitlines()[1:] if line.strip())
    assert len(scifact) == judged and all(r["pos"][0] and r["prompt"] for r in scifact)
    sts = from_sts(STSData(["a cat", "a cat", "a dog"], ["one cat", "a car", "a puppy"], [4.6, 0.4, 4.2]), 4.0)
    assert sts[0] == {"query": "a cat", "pos": ["one cat"], "neg": ["a car"], "prompt": "Retrieve semantically similar text."}
    assert len(sts) == 2
    rows = from_classification(LabeledTexts(["t1", "t2", "t3", "u1"], ["x", "x", "x", "y"]), "Classify", negatives=3)
    assert len(rows) == 3 and all(r["pos"][0].startswith("t") and r["neg"] == ["u1"] for r in rows)
    pairs, _ = read_pairs(write_jsonl(tmp_path / "cls.jsonl", rows))
    assert not any(p.in_batch_negatives for p in pairs)
