"""Configs, deterministic planning, and the data commands (merge, contamination)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.config import ConfigError, GenerateConfig, load_config, parse_overrides
from synthembed.data.contamination import contamination_report
from synthembed.data.merge import merge_examples
from synthembed.formats.jsonl import DataError
from synthembed.generate.plan import dedupe_tasks, family_counts, plan_items
from tests.conftest import DATA, need

POOL = {"short-long": ["Retrieve recipes for a dish.", "Find legal texts for a question."],
        "long-short": ["Classify reviews by sentiment."], "short-short": ["Match a word with its definition."],
        "long-long": ["Match a paper with its rebuttal."]}


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generate:\n  num_examples: 10\n  families: {sts: 1}\n")
    cfg = load_config(GenerateConfig, path, parse_overrides(["num_examples=12", "price.input=1", "price.output=2"]),
                      section="generate")
    assert cfg.num_examples == 12 and cfg.families == {"sts": 1} and cfg.price.output == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("families: {retrieval: 1}", "field 'families': unknown family ['retrieval']; allowed: ['short-long'"),
        ("shard: 3/2", "field 'shard': shard must be 'i/N'"),
        ("num_exampels: 3", "field 'num_exampels': unknown setting (did you mean 'num_examples'?); allowed: output_dir"),
        ("languages: [Klingon]", "field 'languages'"),
        ("backend: vllm", "field 'backend': Input should be 'local' or 'openai'"),
        ("backend: openai\nmodel: my-model\nmax_cost: 5", "max_cost needs a price for model 'my-model'"),
    ],
)
def test_bad_config_names_file_field_and_allowed_values(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(GenerateConfig, path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_cli_reports_bad_flags_in_one_line():
    result = CliRunner().invoke(app, ["generate", "--families", "short-long,bogus", "-q"])
    assert result.exit_code == 2
    assert "unknown family ['bogus']" in result.output


def test_family_counts_split_exactly():
    assert family_counts({"short-long": 1, "sts": 1, "bitext": 1}, 10) == {"short-long": 4, "sts": 3, "bitext": 3}
    assert sum(family_counts({f: 1.0 for f in POOL}, 997).values()) == 997


def test_plan_is_seeded_and_a_larger_run_extends_a_smaller_one():
    small = plan_items(GenerateConfig(num_examples=12, seed=3), POOL)
    again = plan_items(GenerateConfig(num_examples=12, seed=3), POOL)
    large = {i.id: i for i in plan_items(GenerateConfig(num_examples=60, seed=3), POOL)}
    other = plan_items(GenerateConfig(num_examples=12, seed=4), POOL)
    assert [i.request for i in small] == [i.request for i in again]
    assert all(large[i.id].request == i.request for i in small)
    assert [i.request for i in small] != [i.request for i in other]


def test_language_weights_are_respected():
    cfg = GenerateConfig(num_examples=600, families={"sts": 1}, language_weights={"en": 3, "de": 1})
    langs = [i.language for i in plan_items(cfg, {})]
    assert set(langs) == {"English", "German"} and 0.65 < langs.count("English") / 600 < 0.85


def test_bitext_pairs_english_with_another_language_both_ways():
    items = plan_items(GenerateConfig(num_examples=200, families={"bitext": 1}), {})
    pairs = {(i.params["source_language"], i.params["target_language"]) for i in items}
    assert all("English" in p and p[0] != p[1] for p in pairs)
    assert any(p[0] == "English" for p in pairs) and any(p[1] == "English" for p in pairs)


def test_task_dedupe_is_case_space_and_near_duplicate_insensitive():
    tasks = ["Retrieve recipes for a given dish.", "retrieve  recipes for a given DISH.",
             "Retrieve recipes for a given dish", "Classify emails as spam or not."]
    assert dedupe_tasks(tasks) == ["Retrieve recipes for a given dish.", "Classify emails as spam or not."]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sts(i, s1, s2="a b c", s3="d e f"):
    return {"id": f"sts-{i:06d}", "family": "sts", "language": "English", "S1": s1, "S2": s2, "S3": s3}


def test_merge_reports_bad_lines_with_file_line_and_field(tmp_path):
    good = _write(tmp_path / "a.jsonl", [_sts(1, "one")])
    bad = _write(tmp_path / "b.jsonl", [_sts(2, "two"), {**_sts(3, "three"), "S2": ""}])
    with pytest.raises(DataError, match=r"b\.jsonl:2: field 'S2' is missing or empty"):
        merge_examples([good, bad], tmp_path / "out")
    assert not (tmp_path / "out" / "examples.jsonl").exists()


def test_merge_drops_same_text_under_another_id(tmp_path):
    a = _write(tmp_path / "a.jsonl", [_sts(1, "Hello there"), _sts(2, "Other")])
    b = _write(tmp_path / "b.jsonl", [_sts(3, "hello   THERE")])
    summary = merge_examples([a, b], tmp_path / "out")
    assert "2 examples" in summary and "1 same text" in summary


def test_contamination_flags_overlap_with_an_evaluation_set(tmp_path):
    scifact = need(DATA / "scifact")
    abstract = json.loads((scifact / "corpus.jsonl").open().readline())["text"]
    sts_pair = (need(DATA / "stsbenchmark") / "sts-test.csv").open().readline().split("\t")[5]
    rows = [_sts(1, "Our own words about a cat on a mat near the window today."),
            _sts(2, "Quoting: " + " ".join(abstract.split()[5:25]) + " and more."),
            _sts(3, "It said: " + sts_pair)]
    result = contamination_report(_write(tmp_path / "ex.jsonl", rows),
                                  [scifact, DATA / "stsbenchmark"], out=tmp_path / "r.json")
    assert result["checked"] == 3
    assert [f["id"] for f in result["examples"]] == ["sts-000002", "sts-000003"]
    assert json.loads((tmp_path / "r.json").read_text())["flagged"] == 2


def test_pipeline_plan_counts_held_out_examples_and_max_steps():
    from synthembed.pipeline.plan import plan
    from synthembed.pipeline.run import PipelineConfig

    cfg = PipelineConfig.model_validate({"holdout": 40, "generate": {"num_examples": 144},
                                         "train": {"batch_size": 8, "max_steps": 80}})
    train = dict(plan(cfg))["train"]
    assert "80 steps (max_steps: ~6.2 epochs)" in train and "~104 examples" in train  # 13 steps per epoch
    cfg = PipelineConfig.model_validate({"holdout": 0.25, "generate": {"num_examples": 144},
                                         "train": {"batch_size": 8, "epochs": 2}})
    assert "2 epoch(s): ~28 steps over ~108 examples" in dict(plan(cfg))["train"]


def test_token_padding_is_8_on_gpus_and_none_on_cpus_unless_set():
    from synthembed.train.config import TrainConfig

    assert (TrainConfig().pad_multiple("cuda"), TrainConfig().pad_multiple("cpu")) == (8, 1)
    assert TrainConfig(pad_to_multiple_of=64).pad_multiple("cpu") == 64
