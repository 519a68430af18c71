"""The training loop end to end on tiny models: kill -9 and resume equals an uninterrupted run; the exported
directory gives the in-memory model's vectors in sentence-transformers, transformers and synthembed."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder, tiny_encoder
from synthembed.train.backbone import build_embedder
from synthembed.train.config import TrainConfig
from synthembed.train.export import export
from synthembed.train.trainer import train

QUERIES = ["how do vaccines work", "capital of france"]
DOCS = ["Vaccines train the immune system to recognise a pathogen.", "Paris is the capital of France."]


def recipe(model, data, out, **extra) -> list[str]:
    settings = {"batch_size": 4, "warmup_steps": 2, "lr": 1e-3, "query_max_length": 48, "doc_max_length": 64,
                "save_every": 1, "threads": 1, **extra}
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out),
            *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")]]


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(decoder, tmp_path, replay_data):
    data = replay_data / "sts.jsonl"
    steps = 12
    uninterrupted = CliRunner().invoke(app, recipe(decoder, data, tmp_path / "a", max_steps=steps))
    assert uninterrupted.exit_code == 0, uninterrupted.output
    cmd = [sys.executable, "-m", "synthembed.cli", *recipe(decoder, data, tmp_path / "b", max_steps=steps), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = tmp_path / "b" / "checkpoint" / "history.json"
    done = 0
    while proc.poll() is None and done < 3:
        time.sleep(0.05)
        done = len(json.loads(history.read_text())) if history.is_file() else 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= done < steps, f"the run was not killed mid-way (steps done: {done})"
    resumed = CliRunner().invoke(app, recipe(decoder, data, tmp_path / "b", max_steps=steps))
    assert resumed.exit_code == 0, resumed.output
    a = load_file(tmp_path / "a" / "model" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)
    log = json.loads((tmp_path / "b" / "model" / "training_history.json").read_text())
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    assert log[-1]["loss"] < log[0]["loss"]


def test_bad_training_data_names_the_file_line_and_field(decoder, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"]}\n{"query": "q", "neg": ["n"]}\n')
    result = CliRunner().invoke(app, recipe(decoder, bad, tmp_path / "out", max_steps=1))
    assert result.exit_code == 2 and "bad.jsonl:2: field 'pos' is missing" in " ".join(result.output.split())


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_exported_model_gives_the_in_memory_vectors_everywhere(kind, tmp_path):
    from sentence_transformers import SentenceTransformer

    path = tiny_decoder(tmp_path / "base") if kind == "decoder" else tiny_encoder(tmp_path / "base")
    cfg = TrainConfig(model=str(path), output_dir=tmp_path / "run", query_max_length=256, doc_max_length=256,
                      mixed_precision="no")
    torch.manual_seed(0)
    embedder = build_embedder(cfg)
    with torch.no_grad():
        for name, p in embedder.model.named_parameters():
            if "lora_B" in name:  # a trained-looking adapter (it starts at zero)
                p.normal_(0, 0.2)
    embedder.model.eval()
    instruction = cfg.query_instruction  # every pooling takes the instruction
    queries = embedder.encode(QUERIES, "query", instruction)
    docs = embedder.encode(DOCS)
    out = export(Accelerator(cpu=True), embedder, cfg, [])

    st = SentenceTransformer(str(out), device="cpu")
    torch.testing.assert_close(torch.from_numpy(st.encode(QUERIES, prompt_name="query")), torch.from_numpy(queries),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(st.encode(DOCS)), torch.from_numpy(docs), atol=1e-5, rtol=1e-4)
    reloaded = HFEmbedder(out)
    assert reloaded.pooling == embedder.pooling
    torch.testing.assert_close(torch.from_numpy(reloaded.encode(QUERIES, "query", instruction)),
                               torch.from_numpy(queries), atol=1e-5, rtol=1e-4)
    assert (out / "adapter" / "adapter_config.json").is_file() and "sentence-transformers" in (
        out / "README.md").read_text()


@pytest.mark.slow
def test_gemma_270m_trains_and_loads_in_sentence_transformers(tmp_path, replay_data):
    from sentence_transformers import SentenceTransformer

    out = train(TrainConfig(model="gemma-270m", data=[{"path": replay_data / "short-long.jsonl"}],
                            batch_size=4, max_steps=2, warmup_steps=0, query_max_length=64, doc_max_length=64,
                            output_dir=tmp_path), show_progress=False)
    history = json.loads((out / "training_history.json").read_text())
    assert len(history) == 2 and all(0 < r["loss"] < 20 and r["tokens_per_s"] > 0 for r in history)
    vectors = SentenceTransformer(str(out), device="cpu").encode(QUERIES, prompt_name="query")
    # exported in the training dtype (bf16 under bf16 LoRA): unit norm to bf16 precision
    assert vectors.shape == (2, 640) and abs(float((vectors**2).sum(1).mean()) - 1) < 1e-2


@pytest.mark.timeout(400)
@pytest.mark.parametrize("chunk", [None, 1])
def test_torchrun_two_processes_end_with_the_single_process_weights(decoder, tmp_path, replay_data, chunk):
    """The real launcher and engine (torchrun -> accelerate -> DDP over gloo): same adapter after 3 steps."""
    data = replay_data / "sts.jsonl"
    extra = {"lora.dropout": 0.0, "mixed_precision": "no", "max_steps": 3, **({"chunk_size": chunk} if chunk else {})}
    single = CliRunner().invoke(app, recipe(decoder, data, tmp_path / "one", **extra))
    assert single.exit_code == 0, single.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port,
           "-m", "synthembed.cli", *recipe(decoder, data, tmp_path / "two", **extra), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "adapter" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "adapter" / "adapter_model.safetensors")
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=key)
    losses = [[r["loss"] for r in json.loads((tmp_path / d / "model" / "training_history.json").read_text())]
              for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
