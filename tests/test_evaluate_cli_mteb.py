"""`synthembed evaluate --mteb TASK,...`: mteb's own tasks through our encoder adapter, on mteb's mock tasks (built
in code, no hub) and a tiny random decoder; the scores must equal what mteb computes for the same model without
our adapter, and the error paths must end in one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.formats.instructions import instruction_for
from synthembed.model.embedder import HFEmbedder
from tests.conftest import error_lines

mteb = pytest.importorskip("mteb")

MOCKS = ["MockRetrievalTask", "MockSTSTask", "MockClassificationTask"]


class Direct:
    """The same embedder behind mteb's encoder protocol, written here without our adapter: queries and symmetric
    texts get the paper's instruction for the task, documents none."""

    def __init__(self, embedder: HFEmbedder):
        from mteb.models.model_implementations.random_baseline import random_encoder_baseline

        self.embedder, self.mteb_model_meta = embedder, random_encoder_baseline  # its similarity is cosine

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        texts = [text for batch in inputs for text in batch["text"]]
        if prompt_type is not None and prompt_type.value == "document":
            return self.embedder.encode(texts, "document")
        return self.embedder.encode(texts, "query", instruction_for(task_metadata.name, task_metadata.type))

    def similarity(self, a, b):
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a, b):
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(a, b)


def reference_scores(decoder: Path, task_name: str) -> dict:
    """mteb's main score and its metrics per split and subset for the task, computed through Direct."""
    from mteb.mocks import mock_tasks

    task = next(cls for cls in vars(mock_tasks).values()
                if isinstance(cls, type) and getattr(cls, "metadata", None) and cls.metadata.name == task_name)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mteb.evaluate(Direct(HFEmbedder(decoder)), task, cache=None, co2_tracker=False,
                               show_progress_bar=False)
    outcome = result.task_results[0]
    return {"main_score": outcome.get_score(),
            **{split: {row["hf_subset"]: row for row in rows} for split, rows in outcome.scores.items()}}


def test_mock_tasks_through_the_cli_score_as_mteb_does(decoder, tmp_path, one_thread, caplog):
    sts = tmp_path / "sts.tsv"
    sts.write_text("\n".join(f"g\tx\ty\t{i}\t{i % 5}.0\tsentence {i} about cats\tsentence {i} on cats"
                             for i in range(8)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["evaluate", "-m", str(decoder), "--mteb", "MockRetrievalTask,MockSTSTask",
                                      "--mteb", "MockClassificationTask", "-t", f"STS:{sts}:OwnSTS", "-o", str(out),
                                      "--dims", "32", "-q", "--set", "cache=false"])
    assert result.exit_code == 0, result.output
    assert "mteb tasks are scored at the full size only" in caplog.text
    assert (out / "OwnSTS@32.json").exists() and not list(out.glob("Mock*@32.json"))
    for name in MOCKS:
        saved = json.loads((out / f"{name}.json").read_text())
        assert saved["task_name"] == name and saved["model"] == decoder.name
        assert saved["fingerprint"] == HFEmbedder(decoder).fingerprint
        assert saved["instruction"] == instruction_for(name, saved["task_type"])
        reference = reference_scores(decoder, name)
        assert saved["main_score"] == pytest.approx(reference["main_score"], abs=1e-6), name
        for split, subsets in reference.items():
            if split != "main_score":
                for metric, value in subsets["default"].items():
                    wanted = pytest.approx(value, abs=1e-6, nan_ok=True) if isinstance(value, float) else value
                    assert saved["scores"][split]["default"][metric] == wanted, (name, split, metric)
    assert {json.loads((out / f"{n}.json").read_text())["task_type"] for n in MOCKS} == {
        "Retrieval", "STS", "Classification"}
    assert json.loads((out / "OwnSTS.json").read_text())["task_type"] == "STS"  # mixed with --task in one run
    report = (out / "report.md").read_text()
    assert all(name in report for name in [*MOCKS, "OwnSTS"])
    compared = CliRunner().invoke(app, ["evaluate", "--compare", str(out), "-o", str(tmp_path / "cmp")])
    assert compared.exit_code == 0 and "MockSTSTask" in (tmp_path / "cmp" / "report.md").read_text()


def test_unknown_mteb_task_lists_close_matches(decoder, tmp_path):
    for wrong, close in (("STSBenchmarc", "STSBenchmark"), ("MockRetrivalTask", "MockRetrievalTask")):
        result = CliRunner().invoke(app, ["evaluate", "-m", str(decoder), "--mteb", wrong, "-o", str(tmp_path)])
        lines = error_lines(result)
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert repr(wrong) in lines[0] and close in lines[0].split("close matches:")[1]
    assert not list(tmp_path.glob("*.json"))


def test_an_mteb_task_and_a_task_of_the_same_name_are_refused(decoder, tmp_path):
    """Both would write MockSTSTask.json: refused before any data is read or text encoded."""
    result = CliRunner().invoke(app, ["evaluate", "-m", str(decoder), "--mteb", "MockSTSTask", "-t",
                                      f"STS:{tmp_path / 'never-read.tsv'}:MockSTSTask", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and len(error_lines(result)) == 1, result.output
    assert "task name 'MockSTSTask' is given twice" in error_lines(result)[0]
    assert not (tmp_path / "run").exists()


def test_unreachable_mteb_data_fails_in_one_line_naming_task_and_cache(decoder, tmp_path):
    """A real mteb task offline with an empty cache: what a user without the hub sees, in a fresh process."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "synthembed.cli", "evaluate", "-m", str(decoder), "--mteb",
                           "STSBenchmark", "-o", str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: mteb task STSBenchmark:"), done.stderr
    assert "HF_DATASETS_CACHE" in lines[0] and "HF_DATASETS_OFFLINE=1" in lines[0]
    assert not (tmp_path / "out").exists()  # failed before any model was loaded or file written


def test_without_mteb_the_error_names_the_extra(decoder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mteb", None)  # what `import mteb` does when it is not installed
    result = CliRunner().invoke(app, ["evaluate", "-m", str(decoder), "--mteb", "MockSTSTask", "-o", str(tmp_path)])
    assert result.exit_code == 2 and error_lines(result) == [
        "error: --mteb needs the mteb package, a test extra: pip install 'synthembed[test]' "
        "(or pip install 'mteb>=2.26,<3')"]
