"""DeepSpeed ZeRO-3 for real: two CPU processes launched with `accelerate launch` and configs/accelerate/zero3.yaml,
with the gradient cache, end with the single-process weights (one optimizer step per batch), and the export
gathers the partitioned weights into a whole model on rank 0."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.testing.tiny import tiny_decoder
from tests.test_train_gradients import PAIRS

pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'synthembed[deepspeed]'")

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"batch_size": 4, "max_steps": 2, "chunk_size": 2, "mixed_precision": "no", "lora.dropout": 0.0,
            "warmup_steps": 0, "lr": 1e-3, "query_max_length": 32, "doc_max_length": 32, "threads": 1}


def train_args(model, data, out) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), "-q",
            *[a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]]


@pytest.mark.slow  # ~40 s: two processes start DeepSpeed
@pytest.mark.timeout(400)
def test_zero3_two_cpu_processes_with_the_gradient_cache_equal_one_process(tmp_path):
    model = tiny_decoder(tmp_path / "dec")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": p.query, "pos": [p.positive], "neg": p.negatives or ["none"],
                                        "prompt": p.instruction}) + "\n" for p in PAIRS))
    single = CliRunner().invoke(app, train_args(model, data, tmp_path / "one"))
    assert single.exit_code == 0, single.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    cmd = [launcher, "launch", "--config_file", str(ROOT / "configs/accelerate/zero3.yaml"), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", port, "-m", "synthembed.cli",
           *train_args(model, data, tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=360,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "two" / "model" / "training_history.json").read_text())
    assert [r["step"] for r in history] == [1, 2]
    for part in ("adapter/adapter_model.safetensors", "model.safetensors"):  # the adapter and the merged model
        one, two = load_file(tmp_path / "one" / "model" / part), load_file(tmp_path / "two" / "model" / part)
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=f"{part}: {key}")
