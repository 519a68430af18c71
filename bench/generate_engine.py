"""Engine overhead: synthembed generate against distilabel 1.5.3, same loopback server, prompts and counts.

The replay server (a subprocess) answers with real LLM outputs at 0 ms and at 200 ms latency; both clients keep
64 requests in flight. Figures: valid replies kept per second, client CPU milliseconds per example, and the
share of the server's (all valid) replies that each client accepted. distilabel runs in its own virtual environment,
bench/.venv-distilabel (made from bench/requirements-distilabel.txt when missing).

    .venv/bin/python bench/generate_engine.py [--n 2000] [--latencies 0,200]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthembed.config import GenerateConfig
from synthembed.generate.plan import plan_items
from synthembed.generate.run import run_generate
from synthembed.generate.validate import check
from synthembed.testing.replay_server import ReplayServer

HERE = Path(__file__).resolve().parent
FRONTIER = HERE.parents[1] / "shared" / "data" / "synthetic-frontier"
VENV = HERE / ".venv-distilabel"
# What the replayed data set can answer validly (see tests/test_generate.py).
FAMILIES = {"short-long": 1.0, "long-short": 1.0, "short-short": 1.0, "sts": 1.0, "bitext": 1.0}
PLACEHOLDERS = {"short-long": {"num_words": [50]}, "long-short": {"num_words": ["at least 10"]}}
LANGUAGES = ["English", "German", "French", "Spanish", "Chinese", "Japanese", "Russian"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def distilabel_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements-distilabel.txt")],
                       check=True)
    return python


def run_ours(cfg: GenerateConfig) -> dict:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    report = run_generate(cfg, show_progress=False)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    # The server replays a finite set, so some prompts get a reply seen before: a valid reply that the engine
    # then drops as a duplicate. Both count as valid replies handled; the distinct ones are reported too.
    valid = report.kept + report.rejected["duplicate"]
    return {"requested": report.requested, "returned": report.returned, "kept": valid, "distinct": report.kept,
            "wall_s": wall, "cpu_s": cpu}


def run_distilabel(cfg: GenerateConfig, pool: dict, work: Path) -> dict:
    prompts = work / "prompts.jsonl"
    with prompts.open("w") as f:
        for item in plan_items(cfg, pool):
            r = item.request
            f.write(json.dumps({"id": item.id, "prompt": r.prompt, "json_object": r.json_object,
                                "max_tokens": r.max_tokens, "temperature": r.temperature, "top_p": r.top_p,
                                "seed": r.seed}) + "\n")
    cmd = [str(distilabel_python()), str(HERE / "distilabel_baseline.py"), "--prompts", str(prompts),
           "--base-url", cfg.base_url, "--model", cfg.model, "--concurrency", str(cfg.concurrency),
           "--out", str(work / "distilabel.jsonl")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "kept": figures["parsed"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latencies", default="0,200")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    pool = json.loads((FRONTIER / "task_pools.json").read_text())
    check("sts", {"S1": "Warm-up of the language detector.", "S2": "a", "S3": "b"}, {"language": "English"})
    rows = []
    for latency in (int(x) for x in args.latencies.split(",")):
        with tempfile.TemporaryDirectory() as tmp, ReplayServer(FRONTIER, latency_ms=latency) as server:
            work = Path(tmp)
            (work / "tasks.json").write_text(json.dumps(pool))
            cfg = GenerateConfig(output_dir=work / "ours", backend="openai", model="replay",
                                 base_url=server.base_url, num_examples=args.n, families=FAMILIES,
                                 task_pool=work / "tasks.json", concurrency=args.concurrency,
                                 placeholders=PLACEHOLDERS, languages=LANGUAGES)
            ours = run_ours(cfg)
            theirs = run_distilabel(cfg, pool, work)
        for name, r in (("synthembed", ours), ("distilabel 1.5.3", theirs)):
            rows.append({"latency_ms": latency, "client": name, **r,
                         "kept_per_s": r["kept"] / r["wall_s"], "cpu_ms_per_example": 1000 * r["cpu_s"] / r["kept"]})
        rows[-2]["ratio"] = rows[-2]["kept_per_s"] / rows[-1]["kept_per_s"]
    print(f"\nEngine overhead, {args.n} requests, concurrency {args.concurrency}, replay server on 127.0.0.1\n")
    print("| latency | client | returned | kept | kept % | wall s | kept/s | CPU ms/example | throughput ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "1.00x (baseline)"
        print(f"| {r['latency_ms']} ms | {r['client']} | {r['returned']} | {r['kept']} | "
              f"{100 * r['kept'] / r['returned']:.1f} | {r['wall_s']:.2f} | {r['kept_per_s']:.1f} | "
              f"{r['cpu_ms_per_example']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
