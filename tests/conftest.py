from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
FRONTIER = DATA / "synthetic-frontier"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def frontier() -> Path:
    return need(FRONTIER)


@pytest.fixture
def task_pool(tmp_path, frontier) -> Path:
    """The frontier run's brainstormed tasks as a tasks.json, so a test can skip brainstorming."""
    pools = json.loads((frontier / "task_pools.json").read_text())
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(pools))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Two torch threads on a busy 2-core machine spin against other processes and run up to 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
