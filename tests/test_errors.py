"""Bad input files and configs end in one clear error naming the file (and line and field), printed literally."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.config import SECTIONS, ConfigError, GenerateConfig, load_config, parse_overrides
from synthembed.data.pairs import read_pairs
from synthembed.formats.beir import load_beir
from synthembed.formats.jsonl import DataError
from synthembed.pipeline.run import PipelineConfig
from synthembed.train.config import TrainConfig


def _beir(root, docs):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a question"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


@pytest.mark.parametrize("bad, message", [
    ({"_id": "d2", "title": "A title", "text": None}, "corpus.jsonl:2: field 'text' must be a string, got null"),
    ({"_id": "d2", "title": 7, "text": "body"}, "corpus.jsonl:2: field 'title' must be a string, got 7"),
])
def test_a_corpus_row_with_null_text_names_file_line_and_field(tmp_path, bad, message):
    root = _beir(tmp_path / "beir", [{"_id": "d1", "text": "a document"}, bad])
    with pytest.raises(DataError, match=message):
        load_beir(root)


def _config(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("cls, section", [(GenerateConfig, "generate"), (TrainConfig, "train"), (PipelineConfig, None)])
def test_a_config_whose_top_level_is_a_list_names_the_file(tmp_path, cls, section):
    path = _config(tmp_path, "- generate\n- train\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings at the top level, got a list") as err:
        load_config(cls, path, section=section)
    assert str(err.value).startswith(str(path))


def test_a_misspelled_section_is_named_with_the_allowed_ones(tmp_path):
    path = _config(tmp_path, "trian:\n  batch_size: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path, section="train")
    assert str(err.value).startswith(f"{path}: unknown top-level section 'trian' (did you mean 'train'?); "
                                     "allowed: output_dir, generate, holdout, train, evaluate")
    with pytest.raises(ConfigError, match=r"field 'trian': unknown setting \(did you mean 'train'\?\); allowed: "):
        load_config(PipelineConfig, path)  # the pipeline reads the whole file
    nested = _config(tmp_path, "train:\n  lora: {alpah: 8}\n")
    with pytest.raises(ConfigError, match=r"field 'lora.alpah': unknown setting \(did you mean 'alpha'\?\); allowed: r,"):
        load_config(TrainConfig, nested, section="train")


def test_sections_are_the_pipeline_configs_fields():
    assert SECTIONS == tuple(PipelineConfig.model_fields)


@pytest.mark.parametrize("cls, text", [
    (TrainConfig, "batch_size: true"), (TrainConfig, "lora: {r: false}"), (TrainConfig, "max_steps: true"),
    (GenerateConfig, "num_examples: true"), (GenerateConfig, "families: {sts: true}"),
    (GenerateConfig, "price: {input: true, output: 1}"),
])
def test_a_boolean_where_a_number_belongs_is_refused(tmp_path, cls, text):
    section = "train" if cls is TrainConfig else "generate"
    with pytest.raises(ConfigError, match="expected a number, got a boolean"):
        load_config(cls, _config(tmp_path, f"{section}:\n  {text}\n"), section=section)


def test_booleans_and_numbers_still_load_where_they_belong(tmp_path):
    cfg = load_config(TrainConfig, None, parse_overrides(["batch_size=8", "gradient_checkpointing=false",
                                                         "mixed_precision=no", "epochs=2"]))
    assert (cfg.batch_size, cfg.gradient_checkpointing, cfg.mixed_precision, cfg.epochs) == (8, False, "no", 2.0)
    with pytest.raises(ConfigError, match="field 'batch_size': expected a number"):
        load_config(TrainConfig, None, parse_overrides(["batch_size=true"]))


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def test_errors_print_user_text_literally_one_line_each(tmp_path):
    odd = tmp_path / "[bold]runs" / "cfg:abc:.yaml"  # rich would eat [bold] and print :abc: as an emoji
    result = CliRunner().invoke(app, ["generate", "-c", str(odd), "-q"])
    assert result.exit_code == 2 and _error_lines(result) == [f"error: {odd}: config file not found"]
    deep = tmp_path / ("d" * 150) / "config.yaml"  # far wider than the 80 columns of a pipe
    result = CliRunner().invoke(app, ["generate", "-c", str(deep), "-q"])
    assert _error_lines(result) == [f"error: {deep}: config file not found"]


def test_several_config_errors_print_one_line_each(tmp_path):
    path = _config(tmp_path, "generate:\n  num_examples: 0\n  shard: 3/2\n")
    result = CliRunner().invoke(app, ["generate", "-c", str(path), "-q"])
    lines = _error_lines(result)
    assert result.exit_code == 2 and len(lines) == 2
    assert "field 'num_examples'" in lines[0] and "field 'shard'" in lines[1]


def test_an_empty_training_file_is_named_before_any_model_loads(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no training pairs \(no rows\)"):
        read_pairs(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "pos": []}) + "\n" + json.dumps({"pos": ["p"]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: no training pairs \(all 2 rows are bad\)"):
        read_pairs(bad, skip_bad=True)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"query": "q", "pos": ["p"]}) + "\n")
    result = CliRunner().invoke(app, ["train", "-m", str(tmp_path / "no-such-model"), "-d", str(good), "-d",
                                      str(empty), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2 and _error_lines(result) == [f"error: {empty}: no training pairs (no rows)"]
