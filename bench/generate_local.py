"""Local backend: output tokens per second and the kept fraction of a run on the embedded SmolLM2-135M-Instruct,
with the settings of configs/demo.yaml.

    .venv/bin/python bench/generate_local.py [--n 50] [--batch-size 16] [--no-constrained]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from synthembed.config import GenerateConfig, load_config
from synthembed.generate.backends.local import LocalBackend
from synthembed.generate.card import summary_table
from synthembed.generate.run import run_generate


DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"output_dir": tmp, "num_examples": args.n, "batch_size": args.batch_size}
        cfg = load_config(GenerateConfig, DEMO, overrides, section="generate")
        backend = LocalBackend(cfg.model, batch_size=args.batch_size, constrained=args.constrained)
        t0 = time.perf_counter()
        report = run_generate(cfg, backend, show_progress=True)
        wall = time.perf_counter() - t0
    console = Console()
    console.print(summary_table(report))
    console.print(f"{args.n} examples on {cfg.model} (batch {args.batch_size}, constrained={args.constrained}): "
                  f"{report.tokens_out} output tokens in {wall:.1f} s = {report.tokens_out / wall:.1f} tok/s; "
                  f"kept {report.kept}/{report.requested} = {report.kept / max(report.requested, 1):.0%} of requested, "
                  f"{report.kept / max(report.returned, 1):.0%} of returned")


if __name__ == "__main__":
    main()
