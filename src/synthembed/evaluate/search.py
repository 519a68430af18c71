"""Exact top-k search by cosine similarity: chunked torch matmul, or faiss' flat inner-product index for big corpora.

Both are exact, so they return the same neighbours (up to the order of exactly tied scores); faiss is only
faster once the corpus is large. Scores are float32 cosines, as MTEB's `cos_sim` computes them.
"""

from __future__ import annotations

import numpy as np
import torch

from synthembed.formats.matryoshka import unit_rows as normalize

FAISS_MIN_DOCS = 200_000  # below this the torch path is as fast and needs no extra package


def top_k(queries: np.ndarray, docs: np.ndarray, k: int, *, backend: str = "auto",
          query_chunk: int = 1024, doc_chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar docs for each query, best first.

    queries (nq, dim), docs (nd, dim) -> scores (nq, k') float32 and indices (nq, k') int64, k' = min(k, nd).
    backend: "torch", "faiss" or "auto" (faiss from FAISS_MIN_DOCS docs on, when it is installed).
    Memory: the torch path holds at most query_chunk x doc_chunk scores at a time.
    """
    q, d = normalize(queries), normalize(docs)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"queries {q.shape} and docs {d.shape} must be 2-D with the same width")
    k = min(k, d.shape[0])
    if backend == "auto":
        backend = "faiss" if d.shape[0] >= FAISS_MIN_DOCS and _has_faiss() else "torch"
    if backend == "faiss":
        return _faiss_top_k(q, d, k)
    if backend != "torch":
        raise ValueError(f"backend {backend!r}: expected 'auto', 'torch' or 'faiss'")
    return _torch_top_k(q, d, k, query_chunk, doc_chunk)


def _torch_top_k(q: np.ndarray, d: np.ndarray, k: int, query_chunk: int, doc_chunk: int):
    scores_out = np.empty((q.shape[0], k), dtype=np.float32)
    index_out = np.empty((q.shape[0], k), dtype=np.int64)
    docs = torch.from_numpy(d)
    for qs in range(0, q.shape[0], query_chunk):
        qt = torch.from_numpy(q[qs:qs + query_chunk])  # (bq, dim)
        best_s = torch.empty((qt.shape[0], 0))
        best_i = torch.empty((qt.shape[0], 0), dtype=torch.int64)
        for ds in range(0, d.shape[0], doc_chunk):
            sims = qt @ docs[ds:ds + doc_chunk].T  # (bq, bd)
            s, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
            # merge this chunk's best with the running best: keeps memory at (bq, 2k)
            s, i = torch.cat([best_s, s], 1), torch.cat([best_i, i + ds], 1)
            best_s, pos = torch.topk(s, min(k, s.shape[1]), dim=1)
            best_i = torch.gather(i, 1, pos)
        scores_out[qs:qs + qt.shape[0]] = best_s.numpy()
        index_out[qs:qs + qt.shape[0]] = best_i.numpy()
    return scores_out, index_out


def _faiss_top_k(q: np.ndarray, d: np.ndarray, k: int):
    import faiss

    index = faiss.IndexFlatIP(d.shape[1])
    index.add(np.ascontiguousarray(d))
    scores, indices = index.search(np.ascontiguousarray(q), k)  # (nq, k) each
    return scores.astype(np.float32), indices.astype(np.int64)


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True
