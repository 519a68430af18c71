"""Mixing training sources by weight and cutting an epoch into batches, deterministically from (seed, epoch):
a resumed run, and every process of a distributed one, sees the same batches. Each epoch also reorders every
row's hard negatives (seeded by seed, epoch and row), so `negatives[:n]` is a fresh draw from the row's list."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from synthembed.data.pairs import TrainPair


def mix(sources: Sequence[list[TrainPair]], weights: Sequence[float], rng: random.Random) -> list[TrainPair]:
    """Each source contributes weight x its size per epoch: 1 = once, 2 = twice, 0.5 = a random half."""
    mixed: list[TrainPair] = []
    for pairs, weight in zip(sources, weights, strict=True):
        whole, part = divmod(weight * len(pairs), len(pairs) or 1)
        mixed += list(pairs) * int(whole) + rng.sample(list(pairs), round(part))
    return mixed


def epoch_batches(sources: Sequence[list[TrainPair]], weights: Sequence[float], batch_size: int, seed: int,
                  epoch: int, by_source: bool = False, drop_last: bool = True) -> list[list[TrainPair]]:
    """The batches of one epoch. `by_source`: every batch holds one source (a family or a file) only, so in-batch
    negatives come from the same kind of task; the rows left over when a source does not fill its last batch are
    batched together, so a source smaller than a batch still trains. Batch order is shuffled across sources."""
    rng = random.Random(f"{seed}:{epoch}")
    sources = [[shuffle_negatives(p, f"{seed}:{epoch}:{s}:{row}") for row, p in enumerate(pairs)]
               for s, pairs in enumerate(sources)]
    pairs = mix(sources, weights, rng)
    groups: dict[str, list[TrainPair]] = {}
    for pair in pairs:
        groups.setdefault(pair.source if by_source else "", []).append(pair)
    batches, leftovers = [], []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        whole = len(group) - len(group) % batch_size
        batches += _cut(group[:whole], batch_size)
        leftovers += group[whole:]
    batches += _cut(leftovers, batch_size)
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    rng.shuffle(batches)
    return batches


def _cut(pairs: list[TrainPair], batch_size: int) -> list[list[TrainPair]]:
    return [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]


def shuffle_negatives(pair: TrainPair, seed: str) -> TrainPair:
    """The pair with its negatives in a random order drawn from `seed` (unchanged if it has fewer than two)."""
    if len(pair.negatives) < 2:
        return pair
    negatives = list(pair.negatives)
    random.Random(seed).shuffle(negatives)
    return dataclasses.replace(pair, negatives=negatives)
