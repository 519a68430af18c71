"""Retrieval as MTEB 2 scores it: cosine top-1000 over the whole corpus, then pytrec_eval (nDCG, MAP, recall,
precision, success at each k) and MTEB's own MRR. Main score nDCG@10.

Protocol details that move the numbers, all as in mteb 2 (AbsTaskRetrieval, SearchEncoderWrapper,
retrieval_metrics): queries without any judgement are dropped; a document is read as
`(title + " " + text).strip()` (just `text.strip()` without a title); queries get the instruction, documents
never; per-query metrics are averaged over the judged queries and rounded to 5 decimals (MRR is not rounded);
MRR breaks score ties by doc id, descending, as pytrec_eval does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytrec_eval

from synthembed.evaluate.cache import embed
from synthembed.evaluate.search import top_k
from synthembed.formats.datasets import RetrievalData
from synthembed.model.protocol import Embedder

K_VALUES = (1, 3, 5, 10, 20, 100, 1000)
MAIN_SCORE = "ndcg_at_10"

Run = Mapping[str, Mapping[str, float]]  # query id -> {doc id: score}
Qrels = Mapping[str, Mapping[str, int]]  # query id -> {doc id: relevance}


def document_text(title: str, text: str) -> str:
    return (title + " " + text).strip() if title else text.strip()


def evaluate(embedder: Embedder, data: RetrievalData, instruction: str | None = None, *,
             k_values: Sequence[int] = K_VALUES, batch_size: int = 32, normalize: bool = True,
             ignore_identical_ids: bool = False, cache=None, search_backend: str = "auto",
             show_progress: bool = False, main_score: str = MAIN_SCORE) -> dict:
    """Encode queries (with the instruction) and the corpus (without), search, and score -> MTEB-like dict."""
    qrels = {qid: docs for qid, docs in data.qrels.items() if docs}
    query_ids = [qid for qid in data.queries if qid in qrels]
    if not query_ids:
        raise ValueError("no query has a relevance judgement")
    doc_ids = list(data.corpus)
    opts = dict(batch_size=batch_size, normalize=normalize, show_progress=show_progress, cache=cache)
    queries = embed(embedder, [data.queries[q] for q in query_ids], "query", instruction, **opts)  # (nq, dim)
    docs = embed(embedder, [document_text(*data.corpus[d]) for d in doc_ids], "document", None, **opts)  # (nd, dim)
    scores, index = top_k(queries, docs, max(k_values), backend=search_backend)  # (nq, k) each
    run = {qid: {doc_ids[j]: float(s) for s, j in zip(scores[row], index[row])}
           for row, qid in enumerate(query_ids)}
    if ignore_identical_ids:  # e.g. ArguAna, Quora: a query is also in the corpus under its own id
        for qid, docs_scores in run.items():
            docs_scores.pop(qid, None)
    metrics = ranking_scores(run, qrels, k_values)
    return {"main_score": metrics[main_score], **metrics}


def ranking_scores(run: Run, qrels: Qrels, k_values: Sequence[int] = K_VALUES) -> dict:
    """nDCG/MAP/recall/precision/hit rate at each k (pytrec_eval, mean over judged queries, 5 decimals) and MRR."""
    ks = ",".join(str(k) for k in k_values)
    measures = {f"map_cut.{ks}", f"ndcg_cut.{ks}", f"recall.{ks}", f"P.{ks}", f"success.{ks}"}
    per_query = pytrec_eval.RelevanceEvaluator(dict(qrels), measures).evaluate(
        {q: dict(d) for q, d in run.items()})  # query id -> {measure_k: value}
    n = len(per_query)
    if n == 0:
        raise ValueError("no query of the run has relevance judgements")
    out: dict[str, float] = {}
    for name, measure in (("ndcg", "ndcg_cut"), ("map", "map_cut"), ("recall", "recall"),
                          ("precision", "P"), ("hit_rate", "success")):
        for k in k_values:
            out[f"{name}_at_{k}"] = round(sum(s[f"{measure}_{k}"] for s in per_query.values()) / n, 5)
    out["accuracy"] = out.get("recall_at_1", float("nan"))
    for k, value in mrr(run, qrels, k_values).items():
        out[f"mrr_at_{k}"] = value
    return out


def mrr(run: Run, qrels: Qrels, k_values: Sequence[int] = K_VALUES) -> dict[int, float]:
    """Mean reciprocal rank of the first relevant doc within the top k, per k (MTEB's definition)."""
    k_max = max(k_values)
    sums = dict.fromkeys(k_values, 0.0)
    for qid, doc_scores in run.items():
        relevant = {d for d, rel in qrels[qid].items() if rel > 0}
        # ties broken by doc id, descending, like pytrec_eval (mteb issue 5092)
        ranked = sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k_max]
        first = next((rank for rank, (doc, _) in enumerate(ranked, 1) if doc in relevant), None)
        for k in k_values:
            sums[k] += 1.0 / first if first is not None and first <= k else 0.0
    return {k: total / len(run) for k, total in sums.items()}

