"""One contrastive training step: a batch of pairs -> tokens -> embeddings -> InfoNCE -> gradients, either plainly
or through the gradient cache (Gao et al., 2021), which gives the same gradients with the memory of one chunk."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from synthembed.data.pairs import TrainPair
from synthembed.model.embedder import HFEmbedder, format_query
from synthembed.train.distributed import gather_rows, gather_sizes, is_distributed, rank
from synthembed.train.loss import info_nce, matryoshka_info_nce, same_text_as_positive

Tokens = dict[str, torch.Tensor]
Embed = Callable[[Tokens], torch.Tensor]  # tokens -> pooled vectors (n, dim), with graph when grad is enabled


@dataclass
class Batch:
    queries: list[str]  # instruction-formatted
    docs: list[str]  # per query: its positive, then its hard negatives
    positive: torch.Tensor  # (Q,) index of each query's positive in docs
    doc_owner: torch.Tensor  # (D,) index of the query each document belongs to
    in_batch: torch.Tensor  # (Q,) bool, False: only its own documents are negatives
    doc_keys: torch.Tensor | None = None  # (D,) int64 hash of each document's text: equal texts are no negatives


def make_batch(pairs: list[TrainPair], query_template: str, hard_negatives: int = 1) -> Batch:
    """Symmetric pairs (`instruct_documents`) format their documents like queries, with the instruction."""
    queries, docs, positive, owner = [], [], [], []
    for i, pair in enumerate(pairs):
        queries.append(format_query(pair.query, pair.instruction, query_template))
        positive.append(len(docs))
        group = [pair.positive, *pair.negatives[:hard_negatives]]
        if pair.instruct_documents:
            group = [format_query(text, pair.instruction, query_template) for text in group]
        docs += group
        owner += [i] * len(group)
    return Batch(queries, docs, torch.tensor(positive), torch.tensor(owner),
                 torch.tensor([p.in_batch_negatives for p in pairs]), torch.tensor([text_key(d) for d in docs]))


def text_key(text: str) -> int:
    """A 64-bit hash of a text, comparable across processes (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def batch_loss(q: torch.Tensor, d: torch.Tensor, batch: Batch, tau: float,
               matryoshka: list[tuple[int, float]] | None = None) -> torch.Tensor:
    """This process's queries against the documents of every process (the batch's negatives). `matryoshka`:
    (dim, weight) pairs; the full vectors are gathered once and cut per dim after the gather."""
    docs, doc_sizes = gather_rows(d)
    q_sizes = gather_sizes(len(q), q.device) if is_distributed() else [len(q)]
    r = rank()
    q_offset, d_offset = sum(q_sizes[:r]), sum(doc_sizes[:r])
    owner, _ = gather_rows((batch.doc_owner + q_offset).to(q.device))
    positive = batch.positive.to(q.device) + d_offset
    masked = None
    if batch.doc_keys is not None:  # the same text as a query's positive, on any process, is not its negative
        keys, _ = gather_rows(batch.doc_keys.to(q.device))
        masked = same_text_as_positive(keys, positive)
    options = dict(tau=tau, in_batch=batch.in_batch.to(q.device), first_query=q_offset, masked=masked)
    if matryoshka:
        return matryoshka_info_nce(q, docs, positive, owner, matryoshka, **options)
    return info_nce(q, docs, positive, owner, **options)


class RandState:
    """The RNG state at capture time, restorable, so a re-run forward draws the same dropout masks."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        devices = list(range(len(self.cuda))) if self.cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def step(embed: Embed, tokenize: Callable[[list[str], str], Tokens], batch: Batch, tau: float,
         chunk_size: int | None = None, backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
         no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
         matryoshka: list[tuple[int, float]] | None = None) -> float:
    """Compute the loss of a batch and accumulate its parameter gradients; returns the loss.
    tokenize(texts, side) with side "query" | "doc"; no_sync: the engine's context that defers gradient
    synchronisation (DDP), used for every chunk's backward but the last; matryoshka: see batch_loss."""
    if not chunk_size or chunk_size >= len(batch.queries) + len(batch.docs):
        queries, docs = tokenize(batch.queries, "query"), tokenize(batch.docs, "doc")
        if is_distributed():  # DDP allows one forward per backward: queries and documents padded together
            vectors = embed(concat(queries, docs))
            q, d = vectors[: len(batch.queries)], vectors[len(batch.queries) :]
        else:  # each side padded to its own length: short queries cost less
            q, d = embed(queries), embed(docs)
        loss = batch_loss(q, d, batch, tau, matryoshka)
        backward(loss)
        return float(loss.detach())
    chunks = [(tokenize(batch.queries[i : i + chunk_size], "query")) for i in range(0, len(batch.queries), chunk_size)]
    chunks += [(tokenize(batch.docs[i : i + chunk_size], "doc")) for i in range(0, len(batch.docs), chunk_size)]
    n_query_chunks = -(-len(batch.queries) // chunk_size)
    # 1. Embed every chunk without a graph, remembering the RNG state each forward started from.
    states, vectors = [], []
    with torch.no_grad():
        for tokens in chunks:
            states.append(RandState())
            vectors.append(embed(tokens))
    # 2. Loss on the whole batch; its gradient with respect to each embedding is the cache.
    q = torch.cat(vectors[:n_query_chunks]).requires_grad_()
    d = torch.cat(vectors[n_query_chunks:]).requires_grad_()
    loss = batch_loss(q, d, batch, tau, matryoshka)
    loss.backward()
    cache = list(torch.split(q.grad, chunk_size)) + list(torch.split(d.grad, chunk_size))
    # 3. Re-run each chunk with its graph and the same randomness; backpropagate its cached gradient.
    for i, (tokens, state, grad) in enumerate(zip(chunks, states, cache, strict=True)):
        last = i == len(chunks) - 1
        with state.restored(), (contextlib.nullcontext() if last else no_sync()):
            backward((embed(tokens) * grad).sum())
    return float(loss.detach())


def concat(a: Tokens, b: Tokens) -> Tokens:
    """Two padded batches as one, padded to the longer; pad on the side the first is padded on."""
    length = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    left = is_left_padded(a) or is_left_padded(b)
    a, b = pad_to(a, length, left), pad_to(b, length, left)
    return {k: torch.cat([a[k], b[k]]) for k in ("input_ids", "attention_mask")}


def is_left_padded(tokens: Tokens) -> bool:
    return bool((tokens["attention_mask"][:, 0] == 0).any())


def pad_to(tokens: Tokens, length: int, left: bool) -> Tokens:
    """input_ids and attention_mask padded with zeros (masked out) to `length` columns."""
    def pad(t: torch.Tensor) -> torch.Tensor:
        fill = t.new_zeros((t.shape[0], length - t.shape[1]))
        return torch.cat([fill, t] if left else [t, fill], dim=1)

    return {k: pad(tokens[k]) for k in ("input_ids", "attention_mask")}


class Tokenizer:
    """tokenize(texts, side) for the step, side "query" | "doc". Pads each batch up to a multiple of
    `pad_multiple` tokens (GPU tensor cores prefer multiples of 8; on CPUs padding measured no faster, so the
    trainer passes 1 there). Counts the real tokens it produced (for throughput figures) so nothing is
    tokenized twice."""

    def __init__(self, embedder: HFEmbedder, query_max_length: int, doc_max_length: int, pad_multiple: int = 1):
        self.embedder, self.pad_multiple = embedder, pad_multiple
        self.max_length = {"query": query_max_length, "doc": doc_max_length}
        self.tokens = 0

    def __call__(self, texts: list[str], side: str) -> Tokens:
        tokens = self.embedder.tokenize(texts, self.max_length[side])
        self.tokens += int(tokens["attention_mask"].sum())
        length = tokens["input_ids"].shape[1]
        bucket = min(-(-length // self.pad_multiple) * self.pad_multiple, max(length, self.max_length[side]))
        if bucket == length:
            return tokens
        return pad_to(tokens, bucket, left=self.embedder.tokenizer.padding_side == "left")

    def take_count(self) -> int:
        """Tokens produced since the last call."""
        count, self.tokens = self.tokens, 0
        return count


def tokenizer_for(embedder: HFEmbedder, query_max_length: int, doc_max_length: int, pad_multiple: int = 1) -> Tokenizer:
    return Tokenizer(embedder, query_max_length, doc_max_length, pad_multiple)
