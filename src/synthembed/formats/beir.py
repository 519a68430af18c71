"""BEIR retrieval directories: corpus.jsonl, queries.jsonl and qrels/<split>.tsv, checked against each other.

Errors name file:line:field: a missing qrels file (with the splits that exist), qrels naming a query or doc
that is not in queries.jsonl / corpus.jsonl, an empty query, a doc with neither title nor text, duplicate ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthembed.formats.datasets import RetrievalData, require_text
from synthembed.formats.jsonl import DataError, read_jsonl


def load_beir(root: Path, split: str = "test") -> RetrievalData:
    """corpus.jsonl {_id, title?, text}, queries.jsonl {_id, text}, qrels/<split>.tsv (query-id, corpus-id, score)."""
    root = Path(root)
    corpus: dict[str, tuple[str, str]] = {}
    for lineno, row in read_jsonl(_need(root / "corpus.jsonl"), ("_id", "text")):
        doc_id, title = str(row["_id"]), row.get("title") or ""
        for field, value in (("text", row["text"]), ("title", title)):
            if not isinstance(value, str):
                raise DataError(f"{root / 'corpus.jsonl'}:{lineno}: field '{field}' must be a string, got "
                                f"{json.dumps(value)} for doc {doc_id!r}")
        if not (title + row["text"]).strip():
            raise DataError(f"{root / 'corpus.jsonl'}:{lineno}: field 'text' is empty (and no title) "
                            f"for doc {doc_id!r}")
        if doc_id in corpus:
            raise DataError(f"{root / 'corpus.jsonl'}:{lineno}: field '_id': duplicate doc id {doc_id!r}")
        corpus[doc_id] = (title, row["text"])
    queries: dict[str, str] = {}
    for lineno, row in read_jsonl(_need(root / "queries.jsonl"), ("_id", "text")):
        queries[str(row["_id"])] = require_text(root / "queries.jsonl", lineno, row, "text")
    qrels_dir = root / "qrels"
    qrels_file = qrels_dir / f"{split}.tsv"
    if not qrels_file.is_file():
        have = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        raise DataError(f"{qrels_file}: no such file; a BEIR directory needs qrels/<split>.tsv "
                        f"(splits found: {have or 'none'})")
    return RetrievalData(corpus, queries, _read_qrels(qrels_file, queries, corpus))


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: no such file (a BEIR directory holds corpus.jsonl, queries.jsonl, qrels/)")
    return path


def _read_qrels(path: Path, queries: dict, corpus: dict) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip() or (lineno == 1 and parts[0] == "query-id"):
                continue
            if len(parts) == 4:  # TREC layout: query, iteration, doc, relevance
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                                f"got {len(parts)}")
            qid, did, score = parts
            if qid not in queries:
                raise DataError(f"{path}:{lineno}: field 'query-id': unknown query id {qid!r} (not in queries.jsonl)")
            if did not in corpus:
                raise DataError(f"{path}:{lineno}: field 'corpus-id': unknown doc id {did!r} (not in corpus.jsonl)")
            try:
                qrels.setdefault(qid, {})[did] = int(float(score))
            except ValueError:
                raise DataError(f"{path}:{lineno}: field 'score': {score!r} is not a number") from None
    if not qrels:
        raise DataError(f"{path}: no relevance judgements")
    return qrels
