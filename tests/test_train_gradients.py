"""The gradient cache and cross-process negatives give the gradients of the plain loss on the whole batch."""

import dataclasses
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from synthembed.data.pairs import TrainPair
from synthembed.train.backbone import build_embedder
from synthembed.train.config import Lora, TrainConfig
from synthembed.train.step import Batch, make_batch, step, tokenizer_for

PAIRS = [
    TrainPair("Find the answer", "what is the boiling point of water", "Water boils at 100 C at sea level.",
              ["Ice melts at 0 C."]),
    TrainPair("Find the answer", "who wrote hamlet", "Hamlet is a tragedy by Shakespeare.", []),
    TrainPair("Classify the review", "Great phone, the battery lasts two days", "positive", ["negative"],
              in_batch_negatives=False),
    TrainPair("Retrieve similar text.", "A man plays a guitar.", "Someone is playing a guitar.",
              ["A man plays a drum.", "A dog sleeps."]),
    TrainPair("Find the answer", "capital of france", "Paris is the capital of France.", ["Lyon is in France."]),
    TrainPair("Find the answer", "speed of light", "Light travels at about 300,000 km/s.", []),
    TrainPair("Classify the review", "Broke after one day", "negative", ["positive"], in_batch_negatives=False),
    TrainPair("Retrieve similar text.", "The cat sat on the mat.", "A cat is sitting on a mat.", ["Cats purr."]),
]
# pair 5 (second process) shares its positive text with pair 1 (first process): masked across processes
DUPLICATED = [*PAIRS[:5], dataclasses.replace(PAIRS[5], positive=PAIRS[1].positive), *PAIRS[6:]]


def embedder_for(path, dropout=0.0, checkpointing=False):
    torch.manual_seed(0)
    cfg = TrainConfig(model=str(path), lora=Lora(r=4, alpha=8, dropout=dropout),
                      gradient_checkpointing=checkpointing, mixed_precision="no")  # exact fp32 math
    embedder = build_embedder(cfg)
    with torch.no_grad():  # LoRA starts with B = 0, which would make every A gradient zero
        for name, p in embedder.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    embedder.model.train()
    return embedder


def grads_of(embedder, batch: Batch, chunk_size=None, tau=0.05, matryoshka=None) -> tuple[float, dict]:
    embedder.model.zero_grad(set_to_none=True)
    loss = step(embedder.forward, tokenizer_for(embedder, 48, 48), batch, tau, chunk_size, matryoshka=matryoshka)
    return loss, {n: p.grad.clone() for n, p in embedder.model.named_parameters() if p.requires_grad}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(g.abs().sum() > 0 for g in a.values())


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_cache_equals_plain_loss(decoder, checkpointing, one_thread):
    embedder = embedder_for(decoder, checkpointing=checkpointing)
    batch = make_batch(PAIRS, embedder.query_template, hard_negatives=2)
    plain_loss, plain = grads_of(embedder, batch)
    for chunk in (1, 3):
        loss, cached = grads_of(embedder, batch, chunk_size=chunk)
        assert loss == pytest.approx(plain_loss, rel=1e-5)
        assert_same(cached, plain)


def test_gradient_cache_replays_dropout_masks(decoder, one_thread):
    """With dropout, the reference is the plain loss over embeddings computed chunk by chunk, with the graph, from
    the same RNG state: equal gradients mean every re-run chunk drew the masks of its cached forward."""
    embedder = embedder_for(decoder, dropout=0.3)
    batch = make_batch(PAIRS, embedder.query_template)
    tokenize = tokenizer_for(embedder, 48, 48)
    torch.manual_seed(123)
    loss, cached = grads_of(embedder, batch, chunk_size=3)
    embedder.model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    q = torch.cat([embedder.forward(tokenize(batch.queries[i: i + 3], "query")) for i in range(0, 8, 3)])
    d = torch.cat([embedder.forward(tokenize(batch.docs[i: i + 3], "doc")) for i in range(0, len(batch.docs), 3)])
    from synthembed.train.step import batch_loss

    reference = batch_loss(q, d, batch, 0.05)
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-5)
    assert_same(cached, {n: p.grad for n, p in embedder.model.named_parameters() if p.requires_grad})


def _worker(rank: int, world: int, port: int, path: str, out: str, matryoshka) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        embedder = embedder_for(path, checkpointing=True)
        local = DUPLICATED[rank * 4 : (rank + 1) * 4]
        batch = make_batch(local, embedder.query_template, hard_negatives=2)
        results = {}
        for chunk in (None, 2):
            loss, grads = grads_of(embedder, batch, chunk_size=chunk, matryoshka=matryoshka)
            for g in grads.values():  # what DDP does after backward: average over processes
                dist.all_reduce(g)
                g /= world
            total = torch.tensor([loss])
            dist.all_reduce(total)
            results[chunk] = (float(total) / world, grads)
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("matryoshka", [None, [(8, 1.0), (32, 0.5), (64, 1.0)]], ids=["plain", "matryoshka"])
def test_two_processes_equal_one_process_with_the_whole_batch(decoder, tmp_path, one_thread, matryoshka):
    """Gathered vectors, cut after the gather under Matryoshka: the loss and gradients of the whole batch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(decoder), str(tmp_path), matryoshka), nprocs=2, join=True)
    embedder = embedder_for(decoder, checkpointing=True)
    batch = make_batch(DUPLICATED, embedder.query_template, hard_negatives=2)
    loss, whole = grads_of(embedder, batch, matryoshka=matryoshka)
    unmasked, _ = grads_of(embedder, dataclasses.replace(batch, doc_keys=None), matryoshka=matryoshka)
    assert unmasked != pytest.approx(loss, rel=1e-4)  # the duplicate really is masked in the reference
    for rank in (0, 1):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        for chunk, (dist_loss, grads) in results.items():
            assert dist_loss == pytest.approx(loss, rel=1e-5), chunk
            assert_same(grads, whole)
