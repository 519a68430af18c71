"""Matryoshka models after training: the exported folder records the dims (card and matryoshka.json), the server
lists them and cuts as sentence-transformers' truncate_dim does, and evaluate scores every dim from one encoding."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from accelerate import Accelerator

from synthembed.encode.server import create_app
from synthembed.evaluate.report import write_report
from synthembed.evaluate.run import EvaluateConfig, TaskSpec, run_tasks
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder
from synthembed.train.export import export
from tests.test_export import trained
from tests.test_serve import running

TEXTS = ["how do vaccines work", "capital of france", "a cat sits on the mat", "stocks fell sharply"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny decoder exported after 'training' with matryoshka_dims [16, 32, full] (full = 64)."""
    tmp = tmp_path_factory.mktemp("matryoshka")
    embedder, cfg = trained(tiny_decoder(tmp / "base"), tmp)
    cfg.matryoshka_dims = [16, 32, "full"]
    return export(Accelerator(cpu=True), embedder, cfg, [])


def test_export_records_the_dims_in_a_file_and_the_card(exported):
    assert json.loads((exported / "matryoshka.json").read_text()) == {"dims": [16, 32, 64]}
    card = (exported / "README.md").read_text()
    assert "## Matryoshka dimensions" in card and "16, 32, 64" in card
    assert "truncate_dim=16" in card and "`dimensions`" in card and "--dims 16,32,64" in card


def test_server_lists_trained_dims_and_cuts_as_sentence_transformers(exported, tmp_path):
    from sentence_transformers import SentenceTransformer

    with running(create_app(HFEmbedder(exported), "m")) as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["matryoshka_dimensions"] == [16, 32, 64]
        assert httpx.get(url + "/v1/models/m").json()["matryoshka_dimensions"] == [16, 32, 64]
        assert httpx.get(url + "/health").json()["matryoshka_dimensions"] == [16, 32, 64]
        got = {d: httpx.post(url + "/v1/embeddings", json={"input": TEXTS, "model": "m", "dimensions": d}).json()
               for d in (16, 17)}
    served = np.array([row["embedding"] for row in got[16]["data"]], dtype=np.float32)
    theirs = SentenceTransformer(str(exported), device="cpu", truncate_dim=16).encode(TEXTS, normalize_embeddings=True)
    assert served.shape == (4, 16)
    np.testing.assert_allclose(served, theirs, atol=1e-5)
    assert len(got[17]["data"][0]["embedding"]) == 17  # any size is still accepted, as on OpenAI
    with running(create_app(HFEmbedder(tiny_decoder(tmp_path / "plain")), "p")) as url:  # no Matryoshka training
        assert "matryoshka_dimensions" not in httpx.get(url + "/health").json()
        assert "matryoshka_dimensions" not in httpx.get(url + "/v1/models").json()["data"][0]


def write_tasks(root) -> list[TaskSpec]:
    sts = root / "sts.tsv"
    sts.write_text("\n".join(f"g\tx\ty\t{i}\t{i % 5}.0\tsentence {i} about cats\tline {i} on dogs" for i in range(10)))
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i} {t}"}) + "\n"
                                               for i, t in enumerate(TEXTS * 2)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n"
                                                for i, t in enumerate(TEXTS)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                             "".join(f"q{i}\td{i}\t1\n" for i in range(len(TEXTS))))
    return [TaskSpec(name="MySTS", type="STS", path=sts), TaskSpec(name="MyRetrieval", type="Retrieval", path=beir)]


class CutByHand:
    """An embedder whose vectors are another's first `dim` dimensions, re-normalised in numpy: the reference."""

    def __init__(self, inner: HFEmbedder, dim: int):
        self.inner, self.dim = inner, dim
        self.name, self.max_length = inner.name, inner.max_length
        self.fingerprint = f"{inner.fingerprint}-cut{dim}"

    def encode(self, texts, **options):
        full = self.inner.encode(texts, **options)[:, : self.dim]
        return full / np.linalg.norm(full, axis=1, keepdims=True)


def test_evaluate_scores_each_dim_from_one_encoding_per_text(exported, tmp_path):
    tasks = write_tasks(tmp_path)
    plain = HFEmbedder(exported)
    run_tasks(EvaluateConfig(tasks=tasks, cache=False, output_dir=tmp_path / "plain"), plain, show_progress=False)
    matryoshka = HFEmbedder(exported)
    results = run_tasks(EvaluateConfig(tasks=tasks, cache=False, dims=[16, 32, 64], output_dir=tmp_path / "m"),
                        matryoshka, show_progress=False)
    assert matryoshka.tokens_encoded == plain.tokens_encoded > 0  # the extra dims encoded nothing
    assert [r["task_name"] for r in results] == ["MySTS", "MySTS@16", "MySTS@32", "MyRetrieval", "MyRetrieval@16",
                                                 "MyRetrieval@32"]  # 64 is the full size: scored once
    assert json.loads((tmp_path / "m" / "MySTS@16.json").read_text())["dim"] == 16
    by_name = {r["task_name"]: r["main_score"] for r in results}
    for dim in (16, 32):
        reference = run_tasks(EvaluateConfig(tasks=tasks, cache=False, output_dir=tmp_path / f"ref{dim}"),
                              CutByHand(plain, dim), show_progress=False)
        for r in reference:
            assert by_name[f"{r['task_name']}@{dim}"] == pytest.approx(r["main_score"], abs=1e-6)
    assert by_name["MySTS@16"] != pytest.approx(by_name["MySTS"], abs=1e-6)  # the cut changes the vectors
    with pytest.raises(ValueError, match="evaluate.dims: 128 is above the model's 64 dimensions"):
        run_tasks(EvaluateConfig(tasks=tasks, cache=False, dims=[128], output_dir=tmp_path / "x"), plain,
                  show_progress=False)


def test_report_gives_each_dim_a_row_under_the_tasks_columns(tmp_path):
    def result(task, score, dim=None):
        return {"task_name": task if dim is None else f"{task}@{dim}", "main_score": score, "model": "m",
                **({"dim": dim} if dim else {})}

    runs = {"m": [result("A", 0.5), result("A", 0.25, 16), result("B", 0.75), result("B", 0.5, 16)]}
    lines = write_report(runs, tmp_path).read_text().splitlines()
    assert "| model | A | B | average |" in lines
    assert "| m | 50.00 | 75.00 | 62.50 |" in lines
    assert "| m @16 | 25.00 | 50.00 | 37.50 |" in lines


def test_report_averages_only_rows_with_every_task(tmp_path):
    """With --mteb and --dims the @dim rows lack the mteb tasks: an average over fewer tasks would mislead."""
    runs = {"m": [{"task_name": "Mine", "main_score": 0.5, "model": "m"},
                  {"task_name": "Mine@16", "main_score": 0.25, "model": "m", "dim": 16},
                  {"task_name": "MockSTSTask", "main_score": 0.75, "model": "m"}]}
    lines = write_report(runs, tmp_path).read_text().splitlines()
    assert "| m | 50.00 | 75.00 | 62.50 |" in lines
    assert "| m @16 | 25.00 |  | — |" in lines


def test_evaluate_command_takes_dims(exported, tmp_path):
    from typer.testing import CliRunner

    from synthembed.cli import app
    from synthembed.model.load import display_name

    sts = write_tasks(tmp_path)[0].path
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["evaluate", "-m", str(exported), "-t", f"STS:{sts}:MySTS", "--dims", "16,32",
                                      "-o", str(out), "-q", "--set", "cache=false"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("MySTS*.json")} == {"MySTS.json", "MySTS@16.json", "MySTS@32.json"}
    assert "| " + display_name(exported) + " @16 |" in (out / "report.md").read_text()
    bad = CliRunner().invoke(app, ["evaluate", "-m", str(exported), "-t", f"STS:{sts}", "--dims", "16,x",
                                   "-o", str(out), "-q"])
    assert bad.exit_code == 2 and "dims" in bad.output


def test_training_run_checks_dims_against_the_model_and_exports_them(tmp_path, replay_data):
    from synthembed.train.config import DataSource, TrainConfig
    from synthembed.train.trainer import train

    base = tiny_decoder(tmp_path / "base")
    cfg = TrainConfig(model=str(base), data=[DataSource(path=replay_data / "sts.jsonl")], batch_size=4, max_steps=1,
                      query_max_length=48, doc_max_length=64, mixed_precision="no", threads=1,
                      output_dir=tmp_path / "run", matryoshka_dims=[16, "full"])
    out = train(cfg, show_progress=False)
    assert json.loads((out / "matryoshka.json").read_text()) == {"dims": [16, 64]}
    with pytest.raises(ValueError, match="train.matryoshka_dims: 128 is above the model's hidden size 64"):
        train(cfg.model_copy(update={"matryoshka_dims": [16, 128], "output_dir": tmp_path / "bad"}),
              show_progress=False)


def test_training_checks_dims_before_loading_the_weights(tmp_path, replay_data):
    """A folder with only config.json: the dims are refused from it, before the (missing) weights are read."""
    from synthembed.train.config import DataSource, TrainConfig
    from synthembed.train.trainer import train

    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((tiny_decoder(tmp_path / "base") / "config.json").read_text())
    cfg = TrainConfig(model=str(config_only), data=[DataSource(path=replay_data / "sts.jsonl")], batch_size=4,
                      max_steps=1, mixed_precision="no", output_dir=tmp_path / "run", matryoshka_dims=[16, 128])
    with pytest.raises(ValueError, match="train.matryoshka_dims: 128 is above the model's hidden size 64"):
        train(cfg, show_progress=False)
