"""Reranking as MTEB 2 scores it: each query's candidates (positives and negatives) are ranked by cosine and
scored as retrieval (pytrec_eval MAP/nDCG/..., MTEB's MRR). Main score map_at_1000 (MAP over all candidates).

As mteb's AbsTaskReranking conversion: rows without a positive or without a negative are dropped; candidates get
the ids `apositive_{qid}_{i:05d}` / `negative_{qid}_{i:05d}` (the ids break score ties, positives first), query
ids `{split}_query{row}`. Queries get the instruction, candidates never; each distinct candidate text is encoded once.
"""

from __future__ import annotations

from collections.abc import Sequence

from synthembed.evaluate.cache import embed
from synthembed.evaluate.retrieval import K_VALUES, ranking_scores
from synthembed.evaluate.search import normalize as unit_rows
from synthembed.formats.datasets import RerankingData
from synthembed.model.protocol import Embedder

MAIN_SCORE = "map_at_1000"


def evaluate(embedder: Embedder, data: RerankingData, instruction: str | None = None, *,
             k_values: Sequence[int] = K_VALUES, split: str = "test", batch_size: int = 32,
             normalize: bool = True, cache=None, show_progress: bool = False,
             main_score: str = MAIN_SCORE) -> dict:
    rows = [i for i in range(len(data.queries)) if data.positives[i] and data.negatives[i]]
    if not rows:
        raise ValueError("no query has both a positive and a negative candidate")
    query_ids = [f"{split}_query{n}" for n in range(len(rows))]  # numbered after dropping, as mteb
    candidates: list[list[tuple[str, str]]] = []  # per query: (doc id, text)
    qrels: dict[str, dict[str, int]] = {}
    for qid, i in zip(query_ids, rows):
        docs = [(f"apositive_{qid}_{n:05d}", t) for n, t in enumerate(data.positives[i])]
        docs += [(f"negative_{qid}_{n:05d}", t) for n, t in enumerate(data.negatives[i])]
        candidates.append(docs)
        qrels[qid] = {doc_id: int(doc_id.startswith("apositive")) for doc_id, _ in docs}
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    queries = unit_rows(embed(embedder, [data.queries[i] for i in rows], "query", instruction, **opts))  # (nq, dim)
    texts = list(dict.fromkeys(t for docs in candidates for _, t in docs))
    position = {t: n for n, t in enumerate(texts)}
    docs = unit_rows(embed(embedder, texts, "document", None, **opts))  # (n_unique, dim)
    run = {}
    for row, (qid, cands) in enumerate(zip(query_ids, candidates)):
        scores = docs[[position[t] for _, t in cands]] @ queries[row]  # (n_cands,) cosine
        run[qid] = {doc_id: float(s) for (doc_id, _), s in zip(cands, scores)}
    metrics = ranking_scores(run, qrels, k_values)
    return {"main_score": metrics[main_score], **metrics}
