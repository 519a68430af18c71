"""`synthembed pipeline` end to end against a replayed LLM server (built-in replies) and a tiny model: stages,
report, skipping."""

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import yaml
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.testing.replay_server import ReplayServer
from synthembed.testing.tiny import tiny_decoder
from tests.test_generate import LANGUAGES, PLACEHOLDERS, REPLAYED

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path, server, task_pool, model, lr=1e-3) -> Path:
    cfg = {
        "output_dir": str(tmp_path / "run"),
        "holdout": 8,
        "generate": {"backend": "openai", "model": "replay", "base_url": server.base_url, "num_examples": 30,
                     "families": REPLAYED, "task_pool": str(task_pool), "placeholders": PLACEHOLDERS,
                     "languages": LANGUAGES, "concurrency": 8},
        "train": {"model": str(model), "batch_size": 4, "epochs": 1, "lr": lr, "warmup_steps": 1,
                  "query_max_length": 64, "doc_max_length": 96, "threads": 1},
        "evaluate": {"max_length": 96},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def stages(run: Path) -> dict:
    return {p.parent.relative_to(run).as_posix(): json.loads(p.read_text()) for p in run.rglob("stage.json")}


def test_pipeline_runs_every_stage_then_skips_what_is_up_to_date(tmp_path, replay_data, task_pool, one_thread):
    model = tiny_decoder(tmp_path / "tiny")
    log = tmp_path / "requests.jsonl"
    with ReplayServer(replay_data, log_path=log) as server:
        config = write_config(tmp_path, server, task_pool, model)
        first = CliRunner().invoke(app, ["pipeline", "--config", str(config), "-q"])
        assert first.exit_code == 0, first.output
        run = tmp_path / "run"
        done = stages(run)
        assert set(done) == {"generate", "data", "train", "evaluate/base", "evaluate/trained"}
        assert all(s["done"] for s in done.values())
        assert done["data"]["heldout"] == 8 and done["data"]["train"] == done["generate"]["kept"] - 8
        report = (run / "report.md").read_text()
        assert "| tiny base |" in report and "| tiny trained |" in report and "HeldOut" in report
        assert (run / "training.png").stat().st_size > 0 and (run / "evaluate" / "report.png").stat().st_size > 0
        requests = len(log.read_text().splitlines())

        again = CliRunner().invoke(app, ["pipeline", "--config", str(config), "-q"])
        assert again.exit_code == 0, again.output
        assert len(log.read_text().splitlines()) == requests  # nothing asked twice
        assert (run / "report.md").read_text().count("skipped (up to date)") == 5

        changed = write_config(tmp_path, server, task_pool, model, lr=5e-4)
        third = CliRunner().invoke(app, ["pipeline", "--config", str(changed), "-q"])
        assert third.exit_code == 0, third.output
        rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
                for line in (run / "report.md").read_text().splitlines() if line.startswith("| ") and "|" in line[2:]}
        assert rows["generate"] == rows["split"] == rows["evaluate base"] == "skipped (up to date)"
        assert rows["train"] == rows["evaluate trained"] == "ran"


def test_pipeline_stops_with_the_generators_address_when_it_is_unreachable(tmp_path, task_pool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed once the socket is
    config = write_config(tmp_path, SimpleNamespace(base_url=url), task_pool, tmp_path / "no-model-needed")
    result = CliRunner().invoke(app, ["pipeline", "--config", str(config), "-q"])
    assert result.exit_code == 1 and f"cannot reach the server at {url}" in " ".join(result.output.split())
    assert not (tmp_path / "run" / "train").exists()


def test_dry_run_prints_the_plan_of_the_papers_recipe():
    result = CliRunner().invoke(app, ["pipeline", "--config", str(ROOT / "configs" / "paper.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for expected in ("500,000 example requests", "mistralai/Mistral-7B-v0.1", "batch 2048", "GiB", "$"):
        assert expected in text, expected


def test_bad_pipeline_config_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_size: zero\n")
    result = CliRunner().invoke(app, ["pipeline", "--config", str(path), "--dry-run"])
    assert result.exit_code == 2 and "train.batch_size" in result.output


def test_an_added_option_left_unset_keeps_the_stage_keys_of_earlier_runs():
    from typing import Optional

    from synthembed.evaluate.run import EvaluateConfig
    from synthembed.pipeline.run import fingerprint, settings

    class Released(EvaluateConfig):  # a later release with one more option, off by default
        new_option: Optional[int] = None

    before = fingerprint(settings(EvaluateConfig(model="m"), {"output_dir"}))
    assert fingerprint(settings(Released(model="m"), {"output_dir"})) == before
    assert fingerprint(settings(Released(model="m", new_option=3), {"output_dir"})) != before
