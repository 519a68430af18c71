"""`make bench`: every benchmark in one go, each printing its figures beside a baseline measured in the same run;
their outputs are collected into bench/results/summary.md with the machine they ran on.

    .venv/bin/python bench/run_all.py [--only encode,train] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# name -> (what it compares, script arguments, quick arguments)
BENCHES = {
    "generate_engine": ("generation engine vs distilabel 1.5.3 (same loopback server)", [], ["--n", "500"]),
    "generate_local": ("embedded local generator: tokens/s and kept fraction", [], ["--n", "16"]),
    "encode": ("encoding vs sentence-transformers (MiniLM, Gemma-270M)", [], ["--minilm-n", "128", "--gemma-n", "32"]),
    "serve": ("/v1/embeddings with dynamic batching vs without", [], ["--requests", "64", "--rounds", "1"]),
    "train": ("training step vs sentence-transformers (Cached)MNRL; gradient-cache memory", [],
              ["--models", "minilm", "--steps", "minilm=3"]),
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    RESULTS.mkdir(exist_ok=True)
    sections = [f"# Benchmarks\n\nMachine: {machine()}. Run: {time.strftime('%Y-%m-%d %H:%M')}.\n"]
    for name in names:
        what, full, quick = BENCHES[name]
        started = time.perf_counter()
        print(f"== {name}: {what}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)],
                              capture_output=True, text=True)
        output = done.stdout.strip() or done.stderr.strip()[-2000:]
        print(output, flush=True)
        status = "" if done.returncode == 0 else f" (failed, exit {done.returncode})"
        sections.append(f"## {name}: {what}{status}\n\n{output}\n\n({time.perf_counter() - started:.0f} s)\n")
    (RESULTS / "summary.md").write_text("\n".join(sections))
    print(f"wrote {RESULTS / 'summary.md'}")


if __name__ == "__main__":
    main()
