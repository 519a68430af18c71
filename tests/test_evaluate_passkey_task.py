"""Passkey as a task type of `synthembed evaluate` and `--rope-theta`, on a tiny random decoder: the task runs
through the CLI and writes its JSON, the RoPE base really reaches the model, and bad specs fail clearly."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.config import ConfigError, load_config
from synthembed.evaluate import passkey
from synthembed.evaluate.run import EvaluateConfig, parse_task
from synthembed.model.embedder import HFEmbedder
from synthembed.model.load import load_embedder
from synthembed.model.rope import with_rope_theta
from synthembed.testing.tiny import tiny_encoder
from tests.conftest import error_lines


def evaluate(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args, "-q", "--set", "cache=false"])


def hand_accuracy(embedder, length: int, n: int) -> float:
    """Top-1 accuracy computed here from the generated data, as the independent reference."""
    data = passkey.make_passkey_data(embedder.tokenizer, length, n)
    docs = embedder.encode(data.documents, "document")
    queries = embedder.encode(data.queries, "query", passkey.INSTRUCTION)
    hits = [int(np.argmax([q @ d for d in docs])) == i for i, q in enumerate(queries)]
    return sum(hits) / n


def test_passkey_task_runs_through_the_cli(decoder, tmp_path, one_thread):
    out = tmp_path / "run"
    result = evaluate("-m", str(decoder), "-t", "Passkey:64,96:PK", "-o", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "PK.json").read_text())
    assert saved["task_type"] == "Passkey" and saved["instruction"] == passkey.INSTRUCTION
    assert set(saved["scores"]) == {"main_score", "accuracy_at_64", "accuracy_at_96"}
    embedder = HFEmbedder(decoder)
    for length in (64, 96):
        assert saved["scores"][f"accuracy_at_{length}"] == pytest.approx(hand_accuracy(embedder, length, 20))
    assert saved["main_score"] == pytest.approx((saved["scores"]["accuracy_at_64"] +
                                                 saved["scores"]["accuracy_at_96"]) / 2)
    assert "PK" in (out / "report.md").read_text()


@pytest.mark.parametrize("spec, saved_as", [("{name: Keys, type: Passkey, lengths: [80], n: 5}", "Keys"),
                                            ("{type: Passkey, lengths: [80], n: 5}", "Passkey")])
def test_passkey_from_a_config_with_lengths_and_n(decoder, tmp_path, spec, saved_as):
    config = tmp_path / "eval.yaml"
    config.write_text(f"evaluate:\n  model: {decoder}\n  output_dir: {tmp_path / 'run'}\n  cache: false\n"
                      f"  tasks:\n    - {spec}\n")
    result = CliRunner().invoke(app, ["evaluate", "-c", str(config), "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / f"{saved_as}.json").read_text())
    assert saved["main_score"] == pytest.approx(hand_accuracy(HFEmbedder(decoder), 80, 5))


def test_passkey_longer_than_max_length_is_refused_before_encoding(decoder, tmp_path):
    """The tiny decoder reads 512 tokens, EOS among them: a 512-token document would be cut silently."""
    out = tmp_path / "run"
    result = evaluate("-m", str(decoder), "-t", "Passkey:64,512", "-o", str(out))
    lines = error_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "length 512 (513 tokens with the special ones)" in lines[0] and "max_length 512" in lines[0]
    assert "evaluate.max_length" in lines[0] and "--set max_length=513" in lines[0]
    assert not list(out.glob("*.json"))
    assert evaluate("-m", str(decoder), "-t", "Passkey:511", "-o", str(out), "--set", "batch_size=20").exit_code == 0


def test_two_unnamed_passkey_tasks_are_refused_before_encoding(decoder, tmp_path):
    result = evaluate("-m", str(decoder), "-t", "Passkey:64", "-t", "Passkey:96", "-o", str(tmp_path / "run"))
    assert result.exit_code == 2 and error_lines(result) == [
        "error: evaluate: task name 'Passkey' is given twice (each task writes NAME.json); give one of them "
        "another name (TYPE:PATH:NAME, Passkey:LENGTHS:NAME or name: in a config)"]
    assert not (tmp_path / "run").exists()


def test_rope_theta_reaches_the_model_config_and_vectors(decoder, tmp_path):
    plain, changed = load_embedder(decoder), load_embedder(decoder, rope_theta=1e5)
    assert plain.config.rope_parameters["rope_theta"] == 1e4
    assert changed.config.rope_parameters["rope_theta"] == 1e5
    text = ["Alice Abbott's passkey is 12345. Remember it. The grass is green."]
    assert not np.allclose(plain.encode(text), changed.encode(text), atol=1e-4)
    out = tmp_path / "run"
    result = evaluate("-m", str(decoder), "-t", "Passkey:64", "--rope-theta", "1e5", "-o", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "Passkey.json").read_text())
    assert saved["model"] == f"{decoder.name}-rope-theta100000"
    assert saved["fingerprint"] == changed.fingerprint != plain.fingerprint
    assert saved["main_score"] == pytest.approx(hand_accuracy(changed, 64, 20))


def test_rope_theta_is_refused_for_a_model_without_rope(tmp_path):
    encoder = tiny_encoder(tmp_path / "bert")
    result = evaluate("-m", str(encoder), "-t", "Passkey:64", "--rope-theta", "1e5", "-o", str(tmp_path / "o"))
    lines = error_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "bert has no RoPE base" in lines[0] and str(encoder) in lines[0]


def test_rope_theta_on_per_layer_type_parameters(tmp_path):
    """Gemma 3 keeps one RoPE base per attention type: the global layers get the new base, the sliding-window
    layers keep theirs."""
    from transformers import AutoConfig, Gemma3TextConfig

    src = tmp_path / "gemma"
    Gemma3TextConfig(num_hidden_layers=6).save_pretrained(src)
    config = AutoConfig.from_pretrained(with_rope_theta(src, 4e6, tmp_path / "out"))
    assert config.rope_parameters["full_attention"]["rope_theta"] == 4e6
    assert config.rope_parameters["sliding_attention"]["rope_theta"] == 1e4


def gemma3_config(path: Path, **rope_keys) -> Path:
    """A Gemma 3 text config.json as the hub has them (5 sliding-window layers, then a global one), with only
    the given RoPE keys."""
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(num_hidden_layers=6).to_dict()
    config.pop("rope_parameters")
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**config, **rope_keys}))
    return path


@pytest.mark.parametrize("rope_keys, local", [
    ({"rope_theta": 1e6, "rope_local_base_freq": 2e4}, 2e4),  # old style: top-level keys
    ({}, 1e4),  # no key: transformers fills Gemma 3's class defaults
])
def test_rope_theta_on_gemma3_configs_without_rope_parameters(tmp_path, rope_keys, local):
    from transformers import AutoConfig

    src = gemma3_config(tmp_path / "gemma", **rope_keys)
    config = AutoConfig.from_pretrained(with_rope_theta(src, 4e6, tmp_path / "out"))
    assert config.rope_parameters["full_attention"]["rope_theta"] == 4e6
    assert config.rope_parameters["sliding_attention"]["rope_theta"] == local


def test_rope_theta_on_a_llama_config_without_rope_key(decoder, tmp_path):
    """A config.json without rope_theta/rope_parameters still has RoPE (transformers' default base, 1e4)."""
    src = tmp_path / "bare"
    shutil.copytree(decoder, src)
    config = json.loads((src / "config.json").read_text())
    config.pop("rope_parameters", None), config.pop("rope_theta", None)
    (src / "config.json").write_text(json.dumps(config))
    plain, changed = load_embedder(src), load_embedder(src, rope_theta=1e5)
    assert plain.config.rope_parameters["rope_theta"] == 1e4
    assert changed.config.rope_parameters["rope_theta"] == 1e5
    assert not np.allclose(plain.encode(["The grass is green."]), changed.encode(["The grass is green."]), atol=1e-4)


def test_rope_variant_folder_is_reused_per_source_and_theta(decoder, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEMBED_CACHE", str(tmp_path / "cache"))
    first, again, other = (with_rope_theta(decoder, t) for t in (1e5, 1e5, 2e5))
    assert first == again != other and first.is_relative_to(tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "rope").iterdir())) == 2


@pytest.mark.parametrize("spec, message", [
    ("Passkey:256,abc", "expected Passkey:LENGTH[,LENGTH...][:NAME]"),
    ("Passkey:0,256", "--task 'Passkey:0,256': lengths.0: Input should be greater than 0"),
])
def test_bad_passkey_specs(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_task(spec)


def test_passkey_spec_defaults_and_config_errors(tmp_path):
    assert parse_task("Passkey").lengths == [256, 512, 1024] and parse_task("passkey:128").lengths == [128]
    with pytest.raises(ConfigError, match="a Retrieval task needs a path"):
        load_config(EvaluateConfig, None, {"tasks": [{"name": "R", "type": "Retrieval"}]})
    with pytest.raises(ConfigError, match="'tasks.0.n'"):
        load_config(EvaluateConfig, None, {"tasks": [{"name": "P", "type": "Passkey", "n": 1}]})
    with pytest.raises(ConfigError, match="'rope_theta'"):
        load_config(EvaluateConfig, None, {"rope_theta": 0})


def test_bad_passkey_specs_through_the_cli(decoder, tmp_path):
    bad = evaluate("-m", str(decoder), "-t", "Passkey:12x", "-o", str(tmp_path))
    assert bad.exit_code == 2 and len(error_lines(bad)) == 1 and "12x" in error_lines(bad)[0]
    zero = evaluate("-m", str(decoder), "-t", "Passkey:0,256", "-o", str(tmp_path))
    assert zero.exit_code == 2 and len(error_lines(zero)) == 1 == len(zero.output.strip().splitlines()), zero.output
    short = evaluate("-m", str(decoder), "-t", "Passkey:20", "-o", str(tmp_path))
    assert short.exit_code == 2 and error_lines(short) == [
        "error: length 20 is too short for the passkey sentence"]
