"""generate when things go wrong, against real servers on 127.0.0.1: an unreachable server, a proxy's malformed
replies, the budget during brainstorming, failed and junk brainstorms, bad options, and SIGINT mid-run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from typer.testing import CliRunner

from synthembed.cli import app
from synthembed.generate.run import run_generate
from synthembed.testing.replay_data import TASK_POOLS
from synthembed.testing.replay_server import ReplayServer
from tests.test_generate import LANGUAGES, REPLAYED, config, read_rows


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("families", ["short-long", "sts"])  # stops while brainstorming / while asking for examples
def test_an_unreachable_server_fails_the_run_naming_the_server(tmp_path, families):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["generate", "-q", "--backend", "openai", "--model", "m", "--base-url", url,
                                      "-n", "5", "-o", str(out), "--families", families])
    text = flat(result.output)
    assert result.exit_code == 1, text
    assert f"cannot reach the server at {url}" in text
    assert re.search(r"requested\W+5\b", text)  # the table counts what was asked for, not what got planned
    assert not (out / "examples.jsonl").exists()  # no empty data set that looks like a result


@pytest.mark.parametrize("families", ["short-long", "sts"])  # brainstorm calls fail / example requests fail
def test_requests_that_fail_for_good_fail_the_command(tmp_path, families):
    with ReplayServer(every={"500": 1}) as server:
        result = CliRunner().invoke(app, ["generate", "-q", "--backend", "openai", "--model", "replay", "--base-url",
                                          server.base_url, "-n", "3", "-o", str(tmp_path / "run"),
                                          "--families", families, "--set", "max_retries=0"])
    calls = 2 if families == "short-long" else 3  # two brainstorm calls; or one request per example
    assert result.exit_code == 1 and f"{calls} requests failed" in flat(result.output), result.output


def test_a_proxy_reply_that_is_no_json_or_a_bad_retry_after_is_retried(tmp_path, task_pool):
    with ReplayServer(script={1: "not_json", 2: "bad_retry_after"}) as server:
        cfg = config(tmp_path, server, task_pool, num_examples=4, concurrency=1, families={"sts": 1.0})
        report = run_generate(cfg, show_progress=False)
        log = server.log()
    assert (report.failed, report.returned, len(log)) == (0, 4, 6)


@pytest.mark.parametrize("limit", [{"max_tokens_total": 1000},
                                   {"max_cost": 0.001, "price": {"input": 1.0, "output": 1.0}}])
def test_brainstorm_calls_stop_at_the_budget(tmp_path, limit):
    with ReplayServer() as server:
        cfg = config(tmp_path, server, None, num_examples=20, concurrency=1, **limit)
        report = run_generate(cfg, show_progress=False)
        log = server.log()
    calls = 2 * 3  # brainstorm_calls (2) for each of the three asymmetric families asked for
    assert report.stopped_by_budget and 0 < len(log) < calls
    assert sum(report.brainstorm.values()) == len(log)  # each paid call is in the ledger
    assert report.tokens_in + report.tokens_out <= 1000 + 600  # at most one call past the limit


def test_failed_or_unparsable_brainstorms_are_recorded_and_the_failed_one_retried(tmp_path):
    with ReplayServer(script={1: "empty", 2: "500"}) as server:
        cfg = config(tmp_path, server, None, num_examples=4, concurrency=1, max_retries=0,
                     families={"short-long": 1.0}, languages=["English"])
        first = run_generate(cfg, show_progress=False)
        rejected = {r["id"]: r for r in read_rows(cfg.output_dir / "rejected.jsonl")}
        card = json.loads((cfg.output_dir / "data_card.json").read_text())
        again = run_generate(cfg, show_progress=False)
        log = server.log()
    assert dict(first.brainstorm) == {"rejected": 1, "failed": 1} == card["brainstorm_calls"]
    assert (first.requested, first.returned, first.families_without_tasks) == (4, 0, ["short-long"])
    assert rejected["brainstorm-short-long-000"]["reason"] == "empty"
    assert rejected["brainstorm-short-long-001"]["reason"].startswith("request_failed: gave up")
    # The rerun asks the failed call again, never the paid empty one, then writes the examples.
    assert dict(again.brainstorm) == {"parsed": 1, "rejected": 1} and again.returned == 4
    assert len(log) == 2 + 1 + 4


def test_junk_in_brainstormed_tasks_is_rejected_with_reasons(tmp_path, replay_data):
    data = shutil.copytree(replay_data, tmp_path / "data")
    good = TASK_POOLS["short-long"][:6]
    junk = ["0", "answer", "3.", "1. Given a", "给定一个问题，检索相关的文档并给出答案。", good[0].upper()]
    numbered = "Task 7: Given a recipe name, retrieve its list of ingredients."
    (data / "task_pools.json").write_text(json.dumps({**TASK_POOLS, "short-long": good + junk + [numbered]}))
    with ReplayServer(data) as server:
        cfg = config(tmp_path, server, None, num_examples=10, families={"short-long": 1.0}, brainstorm_calls=1)
        report = run_generate(cfg, show_progress=False)
    pool = json.loads((cfg.output_dir / "tasks.json").read_text())["short-long"]
    assert {t.casefold() for t in pool} == {t.casefold() for t in good} | {numbered[8:].casefold()}
    reasons = Counter(r["reason"] for r in read_rows(cfg.output_dir / "tasks_rejected.jsonl"))
    assert reasons == {"no_letters": 2, "too_short": 2, "wrong_script": 1, "duplicate": 1}
    assert report.tasks_rejected == reasons
    assert json.loads((cfg.output_dir / "data_card.json").read_text())["tasks_rejected"] == reasons
    assert report.kept and all(r["task"] in pool for r in read_rows(cfg.output_dir / "examples.jsonl"))


@pytest.mark.parametrize("option, expected", [(["--languages", "en:-1"], "-1"),
                                              (["--languages", "en,English"], "duplicate"),
                                              (["--base-url", "127.0.0.1:{port}/v1"], "expected http(s)://")])
def test_bad_options_fail_before_the_first_request(tmp_path, option, expected):
    with ReplayServer() as server:
        option = [o.format(port=server.port) for o in option]
        args = ["--base-url", server.base_url, *option]  # the last --base-url wins
        result = CliRunner().invoke(app, ["generate", "-q", "--backend", "openai", "--model", "replay", "-n", "5",
                                          "-o", str(tmp_path / "run"), *args])
        log = server.log()
    text = flat(result.output)
    assert result.exit_code == 2 and option[0].strip("-").replace("-", "_") in text and expected in text, text
    assert log == []  # nothing brainstormed (or paid) before the error


def test_sigint_records_the_replies_in_flight_and_a_rerun_pays_for_none(tmp_path, task_pool):
    out = tmp_path / "run"
    ledger = out / "ledger.sqlite"
    n = 24
    with ReplayServer(latency_ms=800) as server:
        cmd = [sys.executable, "-m", "synthembed.cli", "generate", "-q", "--backend", "openai", "--model", "replay",
               "--base-url", server.base_url, "-n", str(n), "-o", str(out), "--task-pool", str(task_pool),
               "--families", ",".join(REPLAYED), "--languages", ",".join(LANGUAGES), "--concurrency", "4",
               "--set", "placeholders.short-long.num_words=[50]",
               "--set", "placeholders.long-short.num_words=[at least 10]"]
        env = {**os.environ, "OPENAI_API_KEY": "x"}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _requests(ledger) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        recorded_at_signal = _requests(ledger)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        first = len(server.log())
        recorded = _requests(ledger)
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
        rerun_requests = len(server.log()) - first
    assert proc.returncode == 130 and "interrupted; rerun the same command to resume" in flat(stderr)
    assert 4 <= recorded_at_signal < recorded < n  # replies that were in flight were waited for and recorded
    assert first == recorded  # every request the server answered is in the ledger: none paid for in vain
    assert rerun.returncode == 0, rerun.stderr
    assert rerun_requests == n - recorded  # the rerun asks only for what the first run never sent
    card = json.loads((out / "data_card.json").read_text())
    assert card["returned"] == n and card["failed"] == 0 and card["stopped"] is None


def _requests(ledger) -> int:
    try:
        with sqlite3.connect(ledger) as db:
            return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    except sqlite3.Error:
        return 0
