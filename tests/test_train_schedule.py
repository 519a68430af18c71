"""The learning-rate schedule: warm-up capped at a share of the run, the first step already learning, and the
trainer logging the rate each step really used."""

import json
import logging

import pytest
import torch

from synthembed.testing.tiny import tiny_decoder
from synthembed.train.config import TrainConfig
from synthembed.train.schedule import warmup_linear_schedule
from synthembed.train.trainer import train


def rates(warmup_steps: int, total: int, cap: float = 0.1, lr: float = 1.0) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = warmup_linear_schedule(optimizer, warmup_steps, total, cap)
    out = []
    for _ in range(total):
        out.append(scheduler.get_last_lr()[0])  # the rate the next optimizer step uses
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_is_capped_at_a_share_of_the_run_and_step_one_learns(caplog):
    with caplog.at_level(logging.INFO, logger="synthembed.train.schedule"):
        short = rates(warmup_steps=100, total=20)
    # 10% of 20 steps = 2 warm-up steps: 1/2, 2/2, then down by 1/18 per step to 1/18 at the last
    assert short == pytest.approx([0.5, 1.0] + [(20 - s) / 18 for s in range(2, 20)])
    assert "warm-up: 2 steps of 20 (asked 100, capped at 0.1 of the run)" in caplog.text
    # a long run keeps the asked-for warm-up: 100 of 2000 steps
    long = rates(warmup_steps=100, total=2000)
    assert long[0] == pytest.approx(0.01) and long[99] == pytest.approx(1.0) and long.index(max(long)) == 99
    assert rates(warmup_steps=0, total=4) == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_trainer_logs_the_rate_each_step_used(tmp_path, one_thread):
    model = tiny_decoder(tmp_path / "tiny")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": f"question {i}", "pos": [f"answer {i}"], "prompt": "Answer"}) + "\n"
                            for i in range(8)))
    cfg = TrainConfig(model=str(model), data=[{"path": data}], batch_size=4, max_steps=10, warmup_steps=100, lr=1e-3,
                      query_max_length=16, doc_max_length=16, mixed_precision="no", output_dir=tmp_path / "run")
    out = train(cfg, show_progress=False)
    history = json.loads((out / "training_history.json").read_text())
    # warm-up capped to 1 step of 10: step 1 at the full rate, then a linear decay that never reaches 0
    assert [r["lr"] for r in history] == pytest.approx([1e-3 * f for f in [1.0] + [(10 - s) / 9 for s in range(1, 10)]])
