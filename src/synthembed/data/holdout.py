"""A held-out split of generated data, written as a retrieval task in the BEIR layout: each held-out query (with
its instruction already applied) searches the positives and hard negatives of all held-out examples. Documents of
symmetric examples (STS, bitext) carry the instruction too, as in training."""

from __future__ import annotations

import random
from pathlib import Path

from synthembed.data.pairs import TrainPair, read_pairs
from synthembed.formats.instructions import QUERY_TEMPLATE, format_query
from synthembed.formats.jsonl import write_jsonl


def split_holdout(examples: Path, out: Path, holdout: float, seed: int = 0, min_holdout: int = 2) -> dict:
    """Write out/train.jsonl (labeled layout) and out/heldout/ (BEIR); return the counts.
    `holdout` < 1 is a fraction, >= 1 a number of examples."""
    pairs, _ = read_pairs(examples, "generated", skip_bad=True)
    random.Random(seed).shuffle(pairs)
    n = int(holdout) if holdout >= 1 else round(holdout * len(pairs))
    n = min(max(n, min_holdout), len(pairs) // 2)
    held, train = pairs[:n], pairs[n:]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", ({"query": p.query, "pos": [p.positive], "neg": p.negatives,
                                       "prompt": p.instruction, "source": p.source,
                                       "instruct_documents": p.instruct_documents} for p in train))
    write_beir(held, out / "heldout")
    return {"train": len(train), "heldout": len(held)}


def write_beir(pairs: list[TrainPair], out: Path) -> None:
    """Documents are de-duplicated (labels such as "positive" recur across classification examples)."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    doc_ids: dict[str, str] = {}
    for p in pairs:
        for text in (p.positive, *p.negatives):
            doc_ids.setdefault(_document(p, text), f"d{len(doc_ids)}")
    write_jsonl(out / "corpus.jsonl", ({"_id": i, "title": "", "text": t} for t, i in doc_ids.items()))
    write_jsonl(out / "queries.jsonl", ({"_id": f"q{k}", "text": format_query(p.query, p.instruction, QUERY_TEMPLATE)}
                                        for k, p in enumerate(pairs)))
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{k}\t{doc_ids[_document(p, p.positive)]}\t1"
                                             for k, p in enumerate(pairs)]
    (out / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")


def _document(pair: TrainPair, text: str) -> str:
    return format_query(text, pair.instruction, QUERY_TEMPLATE) if pair.instruct_documents else text

