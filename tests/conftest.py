from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from synthembed.testing.replay_data import write_replay_data
from synthembed.testing.tiny import tiny_decoder

# The read-only spec and data sets beside the checkout; SYNTHEMBED_SHARED points elsewhere (a path that does not
# exist shows what a fresh clone runs: only the tests that truly need these files skip).
SHARED = Path(os.environ.get("SYNTHEMBED_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
DATA = SHARED / "data"
FRONTIER = DATA / "synthetic-frontier"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def replay_data(tmp_path_factory) -> Path:
    """The replay server's built-in reply set as files (synthetic-frontier layout), written by the tests."""
    return write_replay_data(tmp_path_factory.mktemp("replay-data"))


@pytest.fixture
def task_pool(tmp_path, replay_data) -> Path:
    """The built-in brainstormed tasks as a tasks.json, so a test can skip brainstorming."""
    path = tmp_path / "tasks.json"
    path.write_text((replay_data / "task_pools.json").read_text())
    return path


@pytest.fixture
def shared_frontier() -> Path:
    """The real synthetic-frontier data set (../shared), for the tests that check real LLM output."""
    return need(FRONTIER)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    """A tiny random Llama decoder and its tokenizer (testing.tiny), built once per test module."""
    return tiny_decoder(tmp_path_factory.mktemp("dec"))


@pytest.fixture(scope="module")
def one_thread():
    """Two torch threads on a busy 2-core machine spin against other processes and run up to 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def error_lines(result) -> list[str]:
    """The `error: ...` lines a CLI run printed (typer's CliRunner result)."""
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
