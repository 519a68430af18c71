"""Matryoshka training: the loss against a hand-written cross-entropy per dim, the setting's checks, and the
gradient cache giving the gradients of the plain Matryoshka loss (two processes: tests/test_train_gradients.py)."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from synthembed.data.pairs import TrainPair
from synthembed.train.config import TrainConfig
from synthembed.train.loss import info_nce, matryoshka_info_nce, resolve_matryoshka
from synthembed.train.step import batch_loss, make_batch
from tests.test_train_gradients import DUPLICATED, assert_same, embedder_for, grads_of

TEMPLATE = "Instruct: {instruction}\nQuery: {text}"


def reference_loss(q: np.ndarray, d: np.ndarray, positive, owner, in_batch, keys, tau: float,
                   dims: list[tuple[int, float]]) -> float:
    """sum_d w_d * mean_i -log softmax over query i's allowed documents, cut to d dims, written out in numpy."""
    total = 0.0
    for dim, weight in dims:
        qd = q[:, :dim] / np.linalg.norm(q[:, :dim], axis=1, keepdims=True)
        dd = d[:, :dim] / np.linalg.norm(d[:, :dim], axis=1, keepdims=True)
        terms = []
        for i, pos in enumerate(positive):
            allowed = [j for j in range(len(d)) if (in_batch[i] or owner[j] == i)
                       and (j == pos or keys[j] != keys[pos])]
            logits = np.array([qd[i] @ dd[j] / tau for j in allowed])
            terms.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - qd[i] @ dd[pos] / tau)
        total += weight * np.mean(terms)
    return total


def test_matryoshka_loss_equals_a_hand_written_cross_entropy_per_dim():
    pairs = [TrainPair("Classify the topic", "the match went to extra time", "sports", ["politics"]),
             TrainPair("Classify the topic", "she scored twice", "sports", ["music"], in_batch_negatives=False),
             TrainPair("Find it", "capital of france", "Paris is the capital.", ["Lyon is a city.", "sports"]),
             TrainPair("Find it", "who wrote hamlet", "Shakespeare wrote it.", [])]
    batch = make_batch(pairs, TEMPLATE, hard_negatives=2)
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(4, 12)), rng.normal(size=(len(batch.docs), 12))
    dims = [(3, 1.0), (6, 0.5), (12, 2.0)]
    got = batch_loss(torch.tensor(q, dtype=torch.float32), torch.tensor(d, dtype=torch.float32), batch, 0.1, dims)
    expected = reference_loss(q, d, batch.positive.tolist(), batch.doc_owner.tolist(), batch.in_batch.tolist(),
                              batch.doc_keys.tolist(), 0.1, dims)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # each dim's term is the plain loss on the cut vectors: a dim that changes nothing would not pass
    assert got.item() != pytest.approx(3.5 * batch_loss(torch.tensor(q), torch.tensor(d), batch, 0.1).item(), rel=1e-3)


def test_full_size_alone_is_the_plain_loss():
    torch.manual_seed(0)
    q, d = torch.randn(3, 16), torch.randn(5, 16)
    positive, owner = torch.tensor([0, 2, 4]), torch.tensor([0, 0, 1, 1, 2])
    dims = resolve_matryoshka(["full"], None, 16)
    assert dims == [(16, 1.0)]
    torch.testing.assert_close(matryoshka_info_nce(q, d, positive, owner, dims, tau=0.05),
                               info_nce(q, d, positive, owner, 0.05))


def test_dims_resolve_full_and_default_weights_and_refuse_sizes_above_the_model():
    assert resolve_matryoshka([8, 32, "full"], None, 64) == [(8, 1.0), (32, 1.0), (64, 1.0)]
    assert resolve_matryoshka([8, 64], [2.0, 1.0], 64) == [(8, 2.0), (64, 1.0)]
    assert resolve_matryoshka(None, None, 64) is None
    with pytest.raises(ValueError, match=r"train.matryoshka_dims: 128 is above the model's hidden size 64"):
        resolve_matryoshka([32, 128], None, 64)
    with pytest.raises(ValueError, match="train.matryoshka_dims.*strictly ascending"):
        resolve_matryoshka([32, 64, "full"], None, 64)  # full is 64 here: twice the same size


@pytest.mark.parametrize("settings, message", [
    ({"matryoshka_dims": [128, 64]}, "strictly ascending"),
    ({"matryoshka_dims": [64, "full", 128]}, "strictly ascending"),
    ({"matryoshka_dims": [0, 64]}, "positive"),
    ({"matryoshka_dims": []}, "at least one dim"),
    ({"matryoshka_dims": [64, "half"]}, "matryoshka_dims"),
    ({"matryoshka_dims": [64, 128], "matryoshka_weights": [1.0]}, "one weight per dim"),
    ({"matryoshka_weights": [1.0]}, "one weight per dim"),
    ({"matryoshka_dims": [64, 128], "matryoshka_weights": [1.0, 0.0]}, "greater than 0"),
    ({"matryoshka_dims": [64, 128], "matryoshka_weights": [-1.0, 1.0]}, "greater than 0"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValidationError, match=message) as err:
        TrainConfig(**settings)
    assert "matryoshka" in str(err.value)


DIMS = [(8, 1.0), (32, 0.5), (64, 1.0)]


def test_gradient_cache_equals_the_plain_matryoshka_loss(decoder, one_thread):
    embedder = embedder_for(decoder)
    batch = make_batch(DUPLICATED, embedder.query_template, hard_negatives=2)
    plain_loss, plain = grads_of(embedder, batch, matryoshka=DIMS)
    full_only, _ = grads_of(embedder, batch)
    assert plain_loss != pytest.approx(full_only, rel=1e-3)  # the small dims really take part
    for chunk in (1, 3):
        loss, cached = grads_of(embedder, batch, chunk_size=chunk, matryoshka=DIMS)
        assert loss == pytest.approx(plain_loss, rel=1e-5)
        assert_same(cached, plain)
