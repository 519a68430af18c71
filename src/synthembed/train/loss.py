"""InfoNCE over cosine similarity, the paper's loss, as a pure function of embeddings.

Documents of a batch are one flat list: each query's positive and hard negatives, in any number per query.
Every document in the list is a negative for every query except its own positive, unless the query opts out
of in-batch negatives (then only its own documents count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, docs: torch.Tensor, positive: torch.Tensor, doc_owner: torch.Tensor,
             tau: float = 0.02, in_batch: torch.Tensor | None = None, first_query: int = 0) -> torch.Tensor:
    """Mean over queries of -log softmax(cos(q, d) / tau)[positive].

    queries (Q, dim), docs (D, dim); positive (Q,) index of each query's positive in docs; doc_owner (D,) index
    of the query each document belongs to; in_batch (Q,) bool, False = only own documents are negatives;
    first_query: the global index of queries[0] when docs were gathered from several processes.
    """
    scores = F.normalize(queries, dim=-1) @ F.normalize(docs, dim=-1).T / tau  # (Q, D)
    if in_batch is not None and not bool(in_batch.all()):
        own = doc_owner.unsqueeze(0) == (first_query + torch.arange(len(queries), device=docs.device)).unsqueeze(1)  # (Q, D)
        scores = scores.masked_fill(~own & ~in_batch.unsqueeze(1), float("-inf"))
    return F.cross_entropy(scores.float(), positive)
