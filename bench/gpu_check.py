"""One GPU check, ready to run on a machine with CUDA (at most ~8 minutes on one modern GPU); writes
bench/results/gpu.md. Each part is a real run of the commands users launch:

  (a) encode throughput, ours vs sentence-transformers (bench/encode.py's interleaved runs, median of 5), for
      gemma-270m and a 1B-class decoder built from a config with random weights (speed and memory need no trained
      weights);
  (b) 20 `synthembed train` steps on gemma-270m, plain and with the gradient cache (chunk 32), at batch 256, with
      the median step and peak GPU memory;
  (c) DDP over every GPU present under NCCL, launched with torchrun (one GPU: world size 1, still NCCL);
  (d) STSBenchmark (test) with MiniLM on the GPU (bf16) equal to the CPU (fp32) score within 0.1;
  (e) `serve` on the GPU answering the openai client with the embedder's own vectors.

    .venv/bin/python bench/gpu_check.py                # on a GPU machine
    .venv/bin/python bench/gpu_check.py --dry-run      # on a CPU: every step resolves, at tiny sizes
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
STSB = ROOT.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
WORDS = ("retrieval embedding model query passage vector search ranking answer question paris france water "
         "boils vaccines immune system light travels").split()


class Check:
    def __init__(self, dry: bool, work: Path):
        self.dry, self.work = dry, work
        self.device = "cpu" if dry else "cuda"
        self.sections: list[str] = []

    def add(self, title: str, lines: list[str]) -> None:
        block = f"## {title}\n\n" + "\n".join(lines) + "\n"
        print(block, flush=True)
        self.sections.append(block)


def text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(n))


def pairs_file(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"query": text(i, 8 + i % 5), "pos": [text(i + 1, 60 + i % 40)],
                                "neg": [text(i + 2, 60)], "prompt": "Retrieve passages that answer the query"}) + "\n")
    return path


ONE_B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 18, "num_attention_heads": 8,
         "num_key_value_heads": 4, "head_dim": 256}  # ~1.1B non-embedding parameters on Gemma-3's layout
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}


def decoder_from_config(out: Path, base: Path, shape: dict) -> Path:
    """`base`'s architecture and tokenizer at another size, with random weights (speed needs no training)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(base)
    text_config = getattr(config, "text_config", config)
    text_config.update(shape)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def models(check: Check) -> dict[str, Path]:
    if check.dry:
        from synthembed.testing.tiny import tiny_decoder

        tiny = tiny_decoder(check.work / "dec")
        return {"tiny-decoder": tiny, "tiny-from-config": decoder_from_config(check.work / "d2", tiny, TINY)}
    from synthembed.formats.offline import resolve

    gemma = resolve("gemma-270m")
    return {"gemma-270m": gemma, "decoder-1B (random)": decoder_from_config(check.work / "1b", gemma, ONE_B)}


def encode_part(check: Check, paths: dict[str, Path]) -> None:
    from encode import agreement, configurations, load_texts, measure, table

    n, length, batch = (16, 64, 8) if check.dry else (1024, 256, 64)
    rows = ["| model | encoder | texts/s | seconds, median (min-max) | vs ST same dtype | vs ST fp32 | load |",
            "|---|---|---:|---:|---:|---:|---:|"]
    notes = []
    for name, path in paths.items():
        runs = configurations(path, load_texts(n), length, batch, check.device)
        notes.append(f"- {name}: {n} texts, max_length {length}, batch {batch}; smallest cosine ours vs ST (fp32) "
                     f"{agreement(runs):.5f}")
        rows += table(name, n, measure(runs, warmup=2, repeats=5))
        del runs
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    check.add("(a) encode throughput", rows + [""] + notes)


def train_part(check: Check, model: Path) -> None:
    from synthembed.train.config import TrainConfig
    from synthembed.train.trainer import train

    batch, steps, chunk = (8, 2, 4) if check.dry else (256, 20, 32)
    data = pairs_file(check.work / "pairs.jsonl", batch * steps)
    rows = ["| run | batch | median step (s) | examples/s | peak memory (GiB) | final loss |",
            "|---|---:|---:|---:|---:|---:|"]
    for label, chunk_size in (("plain", None), (f"gradient cache (chunk {chunk})", chunk)):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        cfg = TrainConfig(model=str(model), data=[{"path": data}], batch_size=batch, chunk_size=chunk_size,
                          max_steps=steps, warmup_steps=0, query_max_length=64, doc_max_length=128,
                          output_dir=check.work / f"train-{chunk_size}")
        out = train(cfg, show_progress=False)
        history = json.loads((out / "training_history.json").read_text())
        step = float(np.median([r["seconds"] for r in history[2:] or history]))
        peak = max(r["peak_memory_gb"] for r in history)
        rows.append(f"| {label} | {batch} | {step:.3f} | {batch / step:.1f} | {peak:.2f} | {history[-1]['loss']:.4f} |")
    check.add("(b) training steps", rows)


def ddp_part(check: Check, model: Path) -> None:
    world = 1 if check.dry else max(torch.cuda.device_count(), 1)
    data = pairs_file(check.work / "ddp.jsonl", 64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = check.work / "ddp"
    # launched exactly as the README says; on a CPU (dry run) accelerate picks gloo instead of NCCL
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world), "--master-port", port,
           "-m", "synthembed.cli", "train", "--model", str(model), "--data", str(data), "--output", str(out), "-q",
           "--set", f"batch_size={8 * world}", "--set", "max_steps=3", "--set", "warmup_steps=0",
           "--set", "query_max_length=32", "--set", "doc_max_length=64"]
    probe = ("import torch; from accelerate import PartialState; s = PartialState(cpu=not torch.cuda.is_available()); "
             "print('backend', s.backend, 'world', s.num_processes, 'device', s.device)")
    backend = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world),
                              "--master-port", port, "--no-python", sys.executable, "-c", probe],
                             capture_output=True, text=True, timeout=120)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t
    history = json.loads((out / "model" / "training_history.json").read_text()) if done.returncode == 0 else []
    seen = sorted({line for line in backend.stdout.splitlines() if line.startswith("backend")})
    check.add("(c) DDP under torchrun", [
        f"- `torchrun --nproc-per-node {world} -m synthembed.cli train ...`: exit {done.returncode}, "
        f"{len(history)} steps in {seconds:.0f} s, losses {[round(r['loss'], 4) for r in history]}",
        f"- the process group accelerate makes under torchrun: {seen or backend.stderr[-300:]}",
        *([f"- stderr: {done.stderr[-1500:]}"] if done.returncode else [])])


def sts_part(check: Check) -> None:
    from synthembed.evaluate.run import EvaluateConfig, TaskSpec, run_tasks

    path = STSB
    if check.dry or not path.is_file():
        path = check.work / "sts.jsonl"
        with path.open("w") as f:
            for i in range(40):
                f.write(json.dumps({"sentence1": text(i, 10), "sentence2": text(i + i % 3, 10), "score": i % 6}) + "\n")
    model = "minilm"
    scores = {}
    for device in ("cpu", check.device if not check.dry else "cpu"):
        cfg = EvaluateConfig(model=model, device=device, cache=False, output_dir=check.work / f"sts-{device}",
                             tasks=[TaskSpec(name="STSBenchmark", type="STS", path=path)])
        t = time.perf_counter()
        scores[device] = (100 * run_tasks(cfg, show_progress=False)[0]["main_score"], time.perf_counter() - t)
    (cpu, cpu_s), (gpu, gpu_s) = scores["cpu"], scores[check.device]
    verdict = "PASS" if abs(cpu - gpu) <= 0.1 else "FAIL"
    check.add("(d) STSBenchmark, GPU vs CPU", [
        f"- {model} on {path.name}: CPU fp32 {cpu:.2f} ({cpu_s:.0f} s), {check.device} auto dtype {gpu:.2f} "
        f"({gpu_s:.0f} s): difference {abs(cpu - gpu):.3f} -> {verdict} (within 0.1)"])


def serve_part(check: Check, model: Path) -> None:
    import openai
    import uvicorn

    from synthembed.encode.server import create_app
    from synthembed.model.load import load_embedder

    embedder = load_embedder(model, device=check.device)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(embedder, "check"), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="unused")
        texts = [text(i, 12) for i in range(8)]
        t = time.perf_counter()
        reply = client.embeddings.create(model="check", input=texts)
        seconds = time.perf_counter() - t
        got = np.array([d.embedding for d in reply.data])
        gap = float(np.abs(got - embedder.encode(texts)).max())
    finally:
        server.should_exit = True
        thread.join(10)
    check.add("(e) serve answering the openai client", [
        f"- {model.name} on {embedder.device} ({str(embedder.dtype).removeprefix('torch.')}): {len(got)} vectors of "
        f"{got.shape[1]} in {seconds:.2f} s; max |served - encode| {gap:.2e} -> {'PASS' if gap < 1e-2 else 'FAIL'}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="on a CPU, tiny sizes: every step resolves")
    ap.add_argument("--output", type=Path, default=BENCH / "results" / "gpu.md")
    ap.add_argument("--parts", default="abcde")
    args = ap.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        ap.error("no CUDA device here: run with --dry-run to check the steps on a CPU")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        check = Check(args.dry_run, Path(work))
        os.environ.setdefault("OMP_NUM_THREADS", "1" if args.dry_run else os.environ.get("OMP_NUM_THREADS", "8"))
        paths = models(check)
        first = next(iter(paths.values()))
        parts = {"a": lambda: encode_part(check, paths), "b": lambda: train_part(check, first),
                 "c": lambda: ddp_part(check, first), "d": lambda: sts_part(check),
                 "e": lambda: serve_part(check, first)}
        for key in args.parts:
            parts[key]()
    where = "dry run on the CPU (tiny sizes)" if args.dry_run else torch.cuda.get_device_name()
    head = (f"# GPU check\n\n{where}; torch {torch.__version__}, {torch.cuda.device_count()} GPU(s); "
            f"{time.perf_counter() - start:.0f} s in all; 1-minute load {os.getloadavg()[0]:.2f}\n")
    if not args.dry_run:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(head + "\n" + "\n".join(check.sections))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
