"""Passkey retrieval (data, scoring, the RoPE-base copy) and the mteb 2 adapter, on tiny offline models."""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pytest

from synthembed.evaluate import passkey
from synthembed.model.embedder import HFEmbedder
from synthembed.model.rope import with_rope_theta
from synthembed.testing.tiny import tiny_decoder, tiny_encoder


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory):
    return tiny_decoder(tmp_path_factory.mktemp("dec"))


@pytest.fixture(scope="module")
def embedder(decoder_path):
    return HFEmbedder(decoder_path, max_length=1024)


def bpe_tokenizer():
    """A small word-level BPE tokenizer (merges learnt on the filler), so lengths are checked where tokens span
    several characters, unlike the tiny models' character tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator([passkey.FILLER * 3, "What is Remember passkey 0123456789'"],
                           trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")


@pytest.mark.parametrize("length", [256, 512, 1024])
@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_passkey_lengths_and_one_passkey_per_document(embedder, length, kind):
    tokenizer = embedder.tokenizer if kind == "char" else bpe_tokenizer()
    data = passkey.make_passkey_data(tokenizer, length, n=12, seed=3)
    assert len(data.documents) == len(data.queries) == len(set(data.names)) == len(set(data.passkeys)) == 12
    for i, doc in enumerate(data.documents):
        n_tokens = len(tokenizer(doc, add_special_tokens=False)["input_ids"])
        assert abs(n_tokens - length) <= 3, (kind, length, n_tokens)
        assert doc.count("passkey is") == 1 and doc.count("Remember it.") == 1
        assert passkey.passkey_sentence(data.names[i], data.passkeys[i]) in doc
        assert data.names[i] in data.queries[i]
    # the same seed gives the same data; the depth varies across documents
    again = passkey.make_passkey_data(tokenizer, length, n=12, seed=3)
    assert again.documents == data.documents
    assert len({doc.index("passkey is") for doc in data.documents}) > 3


def test_data_is_solvable_by_keyword_matching(embedder):
    data = passkey.make_passkey_data(embedder.tokenizer, 2048, n=20, seed=0)
    for i, query in enumerate(data.queries):
        name = re.match(r"What is (.+)'s passkey\?", query).group(1)
        hits = [j for j, doc in enumerate(data.documents) if f"{name}'s passkey is" in doc]
        assert hits == [i]
        key = re.search(re.escape(name) + r"'s passkey is (\d+)\.", data.documents[i]).group(1)
        assert key == data.passkeys[i]


def test_too_short_length_is_refused(embedder):
    with pytest.raises(ValueError):
        passkey.make_passkey_data(embedder.tokenizer, 20, n=2)


def test_evaluate_on_tiny_decoder(embedder):
    out = passkey.evaluate(embedder, lengths=(128, 256), n=6, batch_size=6)
    assert set(out) == {"main_score", "accuracy_at_128", "accuracy_at_256"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["main_score"] == pytest.approx((out["accuracy_at_128"] + out["accuracy_at_256"]) / 2)


def test_evaluate_with_perfect_embedder_scores_one(embedder):
    """An embedder that only sees the person's name gets every passkey: the scoring loop is right."""

    class NameHash:
        name = fingerprint = "names"
        max_length = 10**6
        tokenizer = embedder.tokenizer
        people = sorted({f"{f} {l}" for f in passkey.FIRST for l in passkey.LAST})

        def encode(self, texts, role="document", instruction=None, batch_size=32, normalize=True,
                   show_progress=False):
            return np.stack([[float(p in t) for p in self.people] for t in texts]).astype(np.float32)

    out = passkey.evaluate(NameHash(), lengths=(256, 512), n=10)
    assert out == {"main_score": 1.0, "accuracy_at_256": 1.0, "accuracy_at_512": 1.0}


def test_with_rope_theta(decoder_path, tmp_path):
    new = with_rope_theta(decoder_path, 1e5, tmp_path / "theta")
    config = json.loads((new / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 1e5
    assert json.loads((decoder_path / "config.json").read_text())["rope_parameters"]["rope_theta"] == 1e4
    assert (new / "model.safetensors").is_symlink()
    emb = HFEmbedder(new, max_length=300)
    assert emb.config.rope_parameters["rope_theta"] == 1e5
    assert emb.fingerprint != HFEmbedder(decoder_path, max_length=300).fingerprint
    assert emb.encode(["The grass is green."]).shape == (1, 64)
    # an old-style config (top-level rope_theta) is rewritten too
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"model_type": "mistral", "rope_theta": 1e4}))
    assert json.loads((with_rope_theta(legacy, 1e6, tmp_path / "legacy-theta") / "config.json").read_text())["rope_theta"] == 1e6


def test_training_takes_the_rope_base(decoder_path, tmp_path):
    from synthembed.train.backbone import build_embedder
    from synthembed.train.config import TrainConfig

    cfg = TrainConfig(model=str(decoder_path), output_dir=tmp_path / "run", rope_theta=1e5, lora=None,
                      mixed_precision="no")
    assert build_embedder(cfg).model.config.rope_parameters["rope_theta"] == 1e5


# -- mteb --------------------------------------------------------------------------------------------------------
mteb = pytest.importorskip("mteb")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


class Recorder:
    """Wraps an embedder to record the roles and instructions mteb's tasks ask for."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.name, self.fingerprint, self.max_length, self.dim = inner.name, inner.fingerprint, 64, inner.dim

    def encode(self, texts, role="document", instruction=None, **kwargs):
        self.calls.append((role, instruction, len(texts)))
        return self.inner.encode(texts, role, instruction, **kwargs)


@pytest.mark.parametrize("model", ["decoder", "encoder"])
def test_mteb_adapter_runs_mock_retrieval_task(offline, tmp_path, decoder_path, model):
    from mteb.mocks.mock_tasks.retrieval import MockRetrievalTask

    from synthembed.evaluate.mteb_adapter import MtebEncoder

    path = decoder_path if model == "decoder" else tiny_encoder(tmp_path / "enc")
    rec = Recorder(HFEmbedder(path, max_length=64))
    encoder = MtebEncoder(rec, instructions={"MockRetrievalTask": "Find the passage"})
    assert encoder.mteb_model_meta.name.startswith("synthembed/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mteb.evaluate(encoder, MockRetrievalTask(), cache=None, co2_tracker=False,
                               show_progress_bar=False)
    scores = result.task_results[0].get_score()
    assert 0.0 <= scores <= 1.0
    assert ("query", "Find the passage", 2) in rec.calls and ("document", None, 2) in rec.calls
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_mteb_adapter_uses_paper_instruction_for_symmetric_tasks(offline, embedder):
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    from synthembed.evaluate.mteb_adapter import MtebEncoder
    from synthembed.formats.instructions import instruction_for

    rec = Recorder(embedder)
    task = MockSTSTask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mteb.evaluate(MtebEncoder(rec), task, cache=None, co2_tracker=False, show_progress_bar=False)
    assert np.isfinite(result.task_results[0].get_score())
    wanted = instruction_for(task.metadata.name, task.metadata.type)
    assert wanted and {(role, instr) for role, instr, _ in rec.calls} == {("query", wanted)}
