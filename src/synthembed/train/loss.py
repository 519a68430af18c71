"""InfoNCE over cosine similarity, the paper's loss, as a pure function of embeddings.

Documents of a batch are one flat list: each query's positive and hard negatives, in any number per query.
Every document in the list is a negative for every query except its own positive, unless the query opts out
of in-batch negatives (then only its own documents count), or the document is masked for that query (e.g. the
same text as the query's positive: another query's copy of it is no negative).

Matryoshka (Kusupati et al., 2022; sentence-transformers' MatryoshkaLoss): the weighted sum of the same loss
on the embeddings cut to their first d dimensions, for each trained d; info_nce re-normalises the cut vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, docs: torch.Tensor, positive: torch.Tensor, doc_owner: torch.Tensor,
             tau: float = 0.02, in_batch: torch.Tensor | None = None, first_query: int = 0,
             masked: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries of -log softmax(cos(q, d) / tau)[positive].

    queries (Q, dim), docs (D, dim); positive (Q,) index of each query's positive in docs; doc_owner (D,) index
    of the query each document belongs to; in_batch (Q,) bool, False = only own documents are negatives;
    first_query: the global index of queries[0] when docs were gathered from several processes;
    masked (Q, D) bool: documents that are not negatives of the query (its own positive is never masked).
    """
    scores = F.normalize(queries, dim=-1) @ F.normalize(docs, dim=-1).T / tau  # (Q, D)
    if in_batch is not None and not bool(in_batch.all()):
        own = doc_owner.unsqueeze(0) == (first_query + torch.arange(len(queries), device=docs.device)).unsqueeze(1)  # (Q, D)
        scores = scores.masked_fill(~own & ~in_batch.unsqueeze(1), float("-inf"))
    if masked is not None:
        is_positive = torch.arange(len(docs), device=docs.device).unsqueeze(0) == positive.unsqueeze(1)  # (Q, D)
        scores = scores.masked_fill(masked & ~is_positive, float("-inf"))
    return F.cross_entropy(scores.float(), positive)


def matryoshka_info_nce(queries: torch.Tensor, docs: torch.Tensor, positive: torch.Tensor,
                        doc_owner: torch.Tensor, dims: list[tuple[int, float]], **options) -> torch.Tensor:
    """sum over (d, weight) in dims of weight * info_nce(queries[:, :d], docs[:, :d], ...); options as info_nce."""
    return sum(weight * info_nce(queries[:, :d], docs[:, :d], positive, doc_owner, **options)
               for d, weight in dims)


def resolve_matryoshka(dims: list[int | str] | None, weights: list[float] | None,
                       hidden_size: int) -> list[tuple[int, float]] | None:
    """train.matryoshka_dims ("full" = the hidden size) and their weights (default 1 each) as (dim, weight),
    checked against the model's width; None when no dims are set (the plain loss)."""
    if not dims:
        return None
    sizes = [hidden_size if d == "full" else int(d) for d in dims]
    too_big = [d for d in sizes if d > hidden_size]
    if too_big:
        raise ValueError(f"train.matryoshka_dims: {too_big[0]} is above the model's hidden size {hidden_size}; "
                         f"use dims up to {hidden_size} (or \"full\")")
    if sizes != sorted(set(sizes)):
        raise ValueError(f"train.matryoshka_dims: {dims} resolve to {sizes} for hidden size {hidden_size}: "
                         "they must be strictly ascending (\"full\" is the hidden size)")
    return list(zip(sizes, weights or [1.0] * len(sizes), strict=True))


def same_text_as_positive(doc_keys: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """(Q, D) bool: documents whose text key (e.g. a hash of the text) equals that of the query's positive."""
    return doc_keys.unsqueeze(0) == doc_keys[positive].unsqueeze(1)
