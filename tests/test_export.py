"""The exported folder: its saved query prompt is the default query formatting in every command and in
sentence-transformers; LoRA is merged in fp32 before the cast to the export dtype; the card names the base model."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from synthembed.encode.encode import encode_file
from synthembed.encode.server import create_app
from synthembed.evaluate.cache import text_key
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder, tiny_encoder
from synthembed.train.backbone import build_embedder
from synthembed.train.config import TrainConfig
from synthembed.train.export import export
from tests.test_serve import running

QUERIES = ["how do vaccines work", "capital of france"]

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(path, tmp_path, precision="no"):
    """A tiny backbone with a trained-looking LoRA adapter (B starts at zero) and its config."""
    cfg = TrainConfig(model=str(path), output_dir=tmp_path / "run", query_max_length=256, doc_max_length=256,
                      mixed_precision=precision, gradient_checkpointing=False)
    torch.manual_seed(0)
    embedder = build_embedder(cfg)
    with torch.no_grad():
        for name, p in embedder.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    embedder.model.eval()
    return embedder, cfg


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_saved_query_prompt_is_the_default_everywhere(kind, tmp_path):
    from sentence_transformers import SentenceTransformer

    base = tiny_decoder(tmp_path / "base") if kind == "decoder" else tiny_encoder(tmp_path / "base")
    embedder, cfg = trained(base, tmp_path)
    out = export(Accelerator(cpu=True), embedder, cfg, [])
    theirs = SentenceTransformer(str(out), device="cpu").encode(QUERIES, prompt_name="query")
    ours = HFEmbedder(out)
    assert ours.query_prompt == f"Instruct: {cfg.query_instruction}\nQuery: "  # encoders too, not only decoders
    np.testing.assert_allclose(ours.encode(QUERIES, role="query"), theirs, atol=1e-5)
    # "" keeps queries as they are (formatted already), not prefixed a second time by the saved prompt
    np.testing.assert_allclose(ours.encode(QUERIES, role="query", instruction=""), ours.encode(QUERIES), atol=1e-6)
    assert text_key("q", "query", "", True) != text_key("q", "query", None, True)
    source = tmp_path / "q.jsonl"
    source.write_text("".join(json.dumps({"text": q}) + "\n" for q in QUERIES))
    encode_file(ours, source, tmp_path / "q.npy", role="query", show_progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), theirs, atol=1e-5)
    with running(create_app(ours, "tiny")) as url:
        reply = httpx.post(f"{url}/v1/embeddings", json={"input": QUERIES, "input_type": "query"}, timeout=60).json()
    assert "data" in reply, reply
    np.testing.assert_allclose(np.array([d["embedding"] for d in reply["data"]]), theirs, atol=1e-5)
    card = (out / "README.md").read_text()
    assert f"base_model: {json.dumps(str(base.resolve()))}" in card
    assert "`Instruct: {task}\\nQuery: {query}`" in card


@pytest.mark.parametrize("adapters", [torch.float32, torch.bfloat16])
def test_lora_is_merged_in_fp32_then_cast_under_bf16_training(tmp_path, adapters):
    """Under bf16 LoRA the backbone is held in bf16; the adapters are fp32 (accelerate) or bf16 (as a bf16
    DeepSpeed engine holds them). Each exported weight equals bf16(W + scale * B @ A) computed in fp32; a merge
    in bf16 rounds B @ A, then the sum."""
    embedder, cfg = trained(tiny_decoder(tmp_path / "base"), tmp_path, precision="bf16")
    expected = {}
    for name, module in embedder.model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            module.lora_A.to(adapters), module.lora_B.to(adapters)
            delta = module.lora_B["default"].weight.float() @ module.lora_A["default"].weight.float()
            weight = module.get_base_layer().weight
            assert weight.dtype == torch.bfloat16
            merged = (weight.float() + module.scaling["default"] * delta).to(torch.bfloat16)
            expected[name.removeprefix("base_model.model.") + ".weight"] = merged.detach().clone()
    assert expected
    out = export(Accelerator(cpu=True), embedder, cfg, [])
    saved = load_file(out / "model.safetensors")
    for key, weight in expected.items():
        assert saved[key].dtype == torch.bfloat16
        torch.testing.assert_close(saved[key], weight, atol=0, rtol=0, msg=key)


def test_heldout_queries_formatted_already_get_no_saved_prompt(tmp_path):
    """The pipeline's held-out task (instruction "") reaches the embedder as "", so a trained model's saved query
    prompt does not prefix queries that carry their instruction already."""
    from synthembed.data.holdout import write_beir
    from synthembed.data.pairs import TrainPair
    from synthembed.evaluate.run import EvaluateConfig, TaskSpec, run_tasks

    embedder, cfg = trained(tiny_decoder(tmp_path / "base"), tmp_path)
    out = export(Accelerator(cpu=True), embedder, cfg, [])
    write_beir([TrainPair("Find it", q, d) for q, d in zip(QUERIES, ["Vaccines train immunity.", "Paris."])],
               tmp_path / "heldout")
    seen = []

    class Recording(HFEmbedder):
        def encode(self, texts, role="document", instruction=None, **kw):
            seen.append((role, instruction, [self.format_query(t, instruction) for t in texts]))
            return super().encode(texts, role, instruction, **kw)

    task = TaskSpec(name="HeldOut", type="Retrieval", path=tmp_path / "heldout", instruction="")
    run_tasks(EvaluateConfig(tasks=[task], cache=False, output_dir=tmp_path / "eval"), Recording(out),
              show_progress=False)
    queries = [texts for role, _, texts in seen if role == "query"]
    assert queries and all(t.startswith("Instruct: Find it\nQuery: ") for t in queries[0])
