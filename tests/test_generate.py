"""The generation engine end to end, against a real HTTP server on 127.0.0.1 replaying the built-in reply set."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from synthembed.config import GenerateConfig
from synthembed.generate.run import run_generate
from synthembed.data.merge import merge_examples
from synthembed.tasks.families import FAMILIES
from synthembed.testing.replay_data import LANGUAGES as REPLAYED_LANGUAGES
from synthembed.testing.replay_server import ReplayServer

# Ask only for what the replayed set holds, so that every reply fits its request: no long-long rows, retrieval
# documents of 50 words, classification inputs of "at least 10" words, and the languages it is written in.
REPLAYED = {"short-long": 1.0, "long-short": 1.0, "short-short": 1.0, "sts": 1.0, "bitext": 1.0}
PLACEHOLDERS = {"short-long": {"num_words": [50]}, "long-short": {"num_words": ["at least 10"]}}
LANGUAGES = list(REPLAYED_LANGUAGES)


def config(tmp_path, server, task_pool, **kw) -> GenerateConfig:
    settings = dict(output_dir=tmp_path / "run", backend="openai", model="replay", base_url=server.base_url,
                    num_examples=30, families=REPLAYED, task_pool=task_pool, concurrency=8,
                    placeholders=PLACEHOLDERS, languages=LANGUAGES, timeout_s=5,
                    max_retries=4)
    return GenerateConfig(**{**settings, **kw})


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_valid_replayed_output_is_kept(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data) as server:
        cfg = config(tmp_path, server, task_pool, num_examples=60)
        report = run_generate(cfg, show_progress=False)
        log = server.log()
    # The server may replay one recorded row for two prompts; the second copy is rejected as a duplicate.
    distinct = len({json.dumps(reply, sort_keys=True) for reply in _replies(cfg)})
    assert (report.requested, report.returned, report.failed, len(log)) == (60, 60, 0, 60)
    assert report.kept == distinct and set(report.rejected) <= {"duplicate"}
    rows = read_rows(cfg.output_dir / "examples.jsonl")
    assert len(rows) == report.kept and len({r["id"] for r in rows}) == report.kept
    for row in rows:
        assert all(isinstance(row[k], str) and row[k] for k in FAMILIES[row["family"]].keys)
        assert row["model"] == "replay" and len(row["key"]) == 32
    card = json.loads((cfg.output_dir / "data_card.json").read_text())
    assert card["kept"] == report.kept and sum(card["by_family"].values()) == report.kept
    assert report.tokens_in > 0 and report.tokens_out > 0


def test_faults_are_retried_or_rejected_with_a_reason(tmp_path, replay_data, task_pool):
    script = {1: "429", 2: "500", 3: "hang", 4: "truncated", 5: "prose", 6: "wrong_keys", 7: "empty",
              8: "no_usage", 9: "wrong_language"}
    with ReplayServer(replay_data, script=script, retry_after=1, hang_s=4) as server:
        cfg = config(tmp_path, server, task_pool, num_examples=20, timeout_s=1.5,
                     families={"short-long": 1.0}, languages=["English"])
        report = run_generate(cfg, show_progress=False)
        log = server.log()
    # 429, 500 and the hang are retried and then answered; four replies are malformed, one is in German.
    assert report.failed == 0 and report.returned == 20
    faults = {reason: n for reason, n in report.rejected.items() if reason != "duplicate"}
    assert faults == {"truncated_json": 1, "missing_key": 1, "empty": 1, "wrong_language": 1}
    assert report.kept + report.rejected["duplicate"] == 16
    retried = {entry["sha"] for entry in log if entry["fault"] in {"429", "500", "hang"}}
    # Each of the three is asked once more and nothing else twice (two items may share a prompt, so count requests).
    assert len(retried) == 3 and len(log) == 20 + 3
    assert all(sum(e["sha"] == sha for e in log) >= 2 for sha in retried)
    first_429 = next(e for e in log if e["fault"] == "429")
    retry = next(e for e in log if e["sha"] == first_429["sha"] and e["n"] != first_429["n"])
    assert retry["t"] - first_429["t"] >= 0.95  # Retry-After: 1 honoured
    rejected = read_rows(cfg.output_dir / "rejected.jsonl")
    assert sorted(r["reason"] for r in rejected if r["reason"] != "duplicate") == [
        "empty", "missing_key", "truncated_json", "wrong_language"]
    assert all(r["response"] is not None for r in rejected)  # what was returned is kept, with its reason


def test_rerun_pays_for_nothing_twice(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data) as server:
        cfg = config(tmp_path, server, task_pool)
        first = run_generate(cfg, show_progress=False)
        n = len(server.log())
        again = run_generate(cfg, show_progress=False)
        assert len(server.log()) == n
    assert again.kept == first.kept and again.tokens_in == first.tokens_in


def test_json_mode_falls_back_when_the_server_refuses_it(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data, script={1: "no_json_mode"}) as server:
        report = run_generate(config(tmp_path, server, task_pool, num_examples=5, concurrency=1), show_progress=False)
    assert report.kept == 5


def test_budget_stops_the_run_cleanly(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data) as server:
        cfg = config(tmp_path, server, task_pool, num_examples=200, concurrency=4, max_tokens_total=6000)
        report = run_generate(cfg, show_progress=False)
    assert report.stopped_by_budget and 0 < report.kept < 200
    largest = 1500  # no single replayed request is bigger than this (prompt + reply, in estimated tokens)
    assert report.tokens_in + report.tokens_out <= 6000 + largest
    assert len(read_rows(cfg.output_dir / "examples.jsonl")) == report.kept


def test_cost_is_priced_and_capped(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data) as server:
        cfg = config(tmp_path, server, task_pool, num_examples=100, concurrency=2, max_cost=0.01,
                     price={"input": 2.0, "output": 8.0})
        report = run_generate(cfg, show_progress=False)
    expected = (report.tokens_in * 2.0 + report.tokens_out * 8.0) / 1e6
    assert report.cost == pytest.approx(expected) and report.stopped_by_budget
    assert report.cost <= 0.01 + 0.02  # at most a request or two past the cap (reserved by the running mean)


def test_shards_are_disjoint_and_merge_to_the_whole(tmp_path, replay_data, task_pool):
    with ReplayServer(replay_data) as server:
        whole = config(tmp_path / "whole", server, task_pool)
        run_generate(whole, show_progress=False)
        parts = []
        for i in range(3):
            cfg = config(tmp_path / f"part{i}", server, task_pool, shard=f"{i}/3")
            run_generate(cfg, show_progress=False)
            parts.append(cfg.output_dir)
    ids = [{r["id"] for r in read_rows(p / "examples.jsonl")} for p in parts]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    summary = merge_examples(parts + [parts[0]], tmp_path / "merged")
    merged = read_rows(tmp_path / "merged" / "examples.jsonl")
    assert {r["id"] for r in merged} == {r["id"] for r in read_rows(whole.output_dir / "examples.jsonl")}
    assert len(merged) == len({r["id"] for r in merged}) and "same text" in summary


def test_kill_9_mid_run_then_resume_gives_each_example_once(tmp_path, replay_data, task_pool):
    out = tmp_path / "run"
    with ReplayServer(replay_data, latency_ms=150) as server:
        cmd = [sys.executable, "-m", "synthembed.cli", "generate", "-q", "--backend", "openai", "--model", "replay",
               "--base-url", server.base_url, "-n", "80", "-o", str(out), "--task-pool", str(task_pool),
               "--families", ",".join(REPLAYED), "--languages", ",".join(LANGUAGES), "--concurrency", "6",
               "--set", "placeholders.short-long.num_words=[50]",
               "--set", "placeholders.long-short.num_words=[at least 10]"]
        proc = subprocess.Popen(cmd, env={**os.environ, "OPENAI_API_KEY": "x"})
        ledger = out / "ledger.sqlite"
        deadline = time.monotonic() + 60
        while _count(ledger) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
        answered = _answered_prompts(ledger)
        assert 20 <= len(answered) < 80
        assert subprocess.run(cmd, env={**os.environ, "OPENAI_API_KEY": "x"}).returncode == 0
        log = server.log()
    repeated = [e for e in log if e["t"] > killed_at and e["sha"] in answered]
    assert repeated == []  # nothing recorded before the kill was asked for again
    rows = read_rows(out / "examples.jsonl")
    card = json.loads((out / "data_card.json").read_text())
    assert card["returned"] == 80 and card["failed"] == 0  # every item answered, none lost
    assert len(rows) == len({r["id"] for r in rows}) == card["kept"] == 80 - card["rejected"].get("duplicate", 0)


def _replies(cfg) -> list[dict]:
    with sqlite3.connect(cfg.output_dir / "ledger.sqlite") as db:
        return [json.loads(text) for (text,) in db.execute("SELECT response FROM requests")]


def _count(ledger) -> int:
    try:
        with sqlite3.connect(ledger) as db:
            return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return 0


def _answered_prompts(ledger) -> set[str]:
    import hashlib

    with sqlite3.connect(ledger) as db:
        return {hashlib.sha256(p.encode()).hexdigest() for (p,) in db.execute("SELECT prompt FROM requests")}
