"""Training speed and memory: synthembed's step vs sentence-transformers' (Cached)MultipleNegativesRankingLoss.

Same backbone and LoRA (r16/alpha32/dropout 0.1, all linear layers; pooling: last token at EOS for Gemma-270M,
mean for MiniLM), same data (the first rows of synthetic-frontier short-long, queries formatted as our trainer
does), same max length, batch, temperature (ST scale = 1/tau), checkpointing setting, bf16 (our trainer's own
setting: frozen backbone in bf16, autocast; ST: fp32 weights under bf16 autocast, as accelerate runs it) and AdamW.

Part 1 (`--models`): for each model and each hard-negative count, the four configurations (ours plain, ours with
the gradient cache, ST MNRL, ST CMNRL) are built in one process and stepped round-robin, the order rotating each
step, so each sees the same share of the machine; --warmup steps, then --steps measured; median step and spread.
Memory: the peak VmRSS during a step over the value before it (interleaved), and with --isolated each
configuration alone in a fresh process (ru_maxrss).
Part 2 (`--memory-models`): our step at batch 256 with the gradient cache (chunk 16) vs plain batch 16, each alone.
Part 3 (`--epoch`): `synthembed train` on the whole synthetic-frontier set (batch 16, one hard negative, 192
tokens, one epoch): wall time, median step, peak memory.
The 1-minute load average is printed beside every figure; a run that starts above 1.5 says so.

    .venv/bin/python bench/train.py [--models minilm,gemma-270m] [--negatives 0,1] [--isolated minilm,gemma-270m]
        [--memory-models gemma-270m] [--epoch] [--output bench/results/train.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import shutil
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthetic-frontier"
DATA = SHARED / "short-long.jsonl"
RESULTS = Path(__file__).resolve().parent / "results" / "train.md"
TAU, LR, WD = 0.02, 1e-4, 0.1
CONFIGS = {"ours": {"side": "ours", "chunk": None}, "mnrl": {"side": "st", "loss": "plain"},
           "ours-cache": {"side": "ours", "chunk": 16}, "cmnrl": {"side": "st", "loss": "cached", "chunk": 16}}
LABELS = {"ours": "ours (plain)", "mnrl": "ST MNRL", "ours-cache": "ours (grad cache 16)", "cmnrl": "ST CMNRL (16)"}
BASELINE = {"ours": "mnrl", "ours-cache": "cmnrl"}


def load() -> float:
    return os.getloadavg()[0]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB (Linux)


def autocast_forward(module: torch.nn.Module) -> None:
    """bf16 autocast around the forward only, as accelerate's mixed_precision="bf16" wraps a prepared model."""
    forward = module.forward

    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    module.forward = wrapped


def prepare(spec: dict):
    """The batches of a run, and a factory of step functions per configuration."""
    from synthembed.data.pairs import read_pairs
    from synthembed.train.backbone import build_embedder
    from synthembed.train.config import TrainConfig
    from synthembed.train.step import make_batch, step, tokenizer_for

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    B, L, n_steps = spec["batch"], spec["length"], spec["warmup"] + spec["steps"]
    pairs = read_pairs(DATA)[0]
    batches = [[pairs[(i * B + j) % len(pairs)] for j in range(B)] for i in range(n_steps)]
    cfg = TrainConfig(model=spec["model"], query_max_length=L, doc_max_length=L, batch_size=B,
                      gradient_checkpointing=spec["ckpt"])
    ours = build_embedder(cfg) if any(c["side"] == "ours" for c in spec["configs"]) else None
    template = ours.query_template if ours else "Instruct: {instruction}\nQuery: {text}"
    data = [make_batch(b, template, spec["negatives"]) for b in batches]

    def runner(config: dict):
        if config["side"] == "ours":
            if not getattr(ours, "autocast", False):
                autocast_forward(ours.model)
                ours.autocast = True
            tokenize = tokenizer_for(ours, L, L, cfg.pad_multiple(ours.device.type))
            model = ours.model

            def run(batch):
                return step(ours.forward, tokenize, batch, TAU, config.get("chunk"))
        else:
            model = build_st(spec)
            loss_fn = st_loss(model, config["loss"], config.get("chunk"))
            per_query = 1 + spec["negatives"]

            def run(batch):  # docs: per query [positive, negatives...]
                columns = [batch.queries] + [batch.docs[k::per_query] for k in range(per_query)]
                value = loss_fn([model.preprocess(c) for c in columns], None)
                value.backward()
                return float(value.detach())
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WD)

        def train_step(batch):
            value = run(batch)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return value
        return train_step

    return data, runner


class RssSampler:
    """Peak resident memory (current VmRSS, sampled every 2 ms) while a block runs, minus the value before it."""

    def __enter__(self):
        import threading

        self.before = self.peak = self._now()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.increase = max(self.peak, self._now()) - self.before

    @staticmethod
    def _now() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def worker(spec: dict) -> dict:
    """Configurations built once, then stepped round-robin (the order rotating each step)."""
    data, runner = prepare(spec)
    runs = [runner(c) for c in spec["configs"]]
    base = rss_mib()
    out = [{"times": [], "losses": [], "increase": 0.0} for _ in runs]
    for i, batch in enumerate(data):
        for k in range(len(runs)):
            j = (k + i) % len(runs)
            with RssSampler() as mem:
                t = time.perf_counter()
                out[j]["losses"].append(runs[j](batch))
                seconds = time.perf_counter() - t
            if i >= spec["warmup"]:
                out[j]["times"].append(seconds)
                out[j]["increase"] = max(out[j]["increase"], mem.increase)
    return {"configs": out, "rss_base": base, "rss_peak": rss_mib(), "load": load()}


def build_st(spec: dict):
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from synthembed.formats.offline import resolve
    from synthembed.train.export import append_eos

    path, L = resolve(spec["model"]), spec["length"]
    if spec["model"] == "gemma-270m":  # decoder: last token, with EOS appended after truncation as ours does
        transformer = Transformer(str(path), max_seq_length=L)
        st = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(),
                                                                pooling_mode="lasttoken")], device="cpu")
        append_eos(st.tokenizer)
    else:
        st = SentenceTransformer(str(path), device="cpu")  # Transformer, mean Pooling, Normalize
        st.max_seq_length = L
    backbone = st[0].auto_model
    if spec["ckpt"]:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        backbone.config.use_cache = False
    get_peft_model(backbone, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear",
                                        task_type="FEATURE_EXTRACTION"))  # injects the LoRA layers in place
    autocast_forward(backbone)
    return st


def st_loss(st, loss: str, chunk: int | None):
    from sentence_transformers.sentence_transformer import losses

    if loss == "cached":
        return losses.CachedMultipleNegativesRankingLoss(st, scale=1 / TAU, mini_batch_size=chunk)
    return losses.MultipleNegativesRankingLoss(st, scale=1 / TAU)


def launch(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{spec}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(batch: int, times: list[float]) -> tuple[float, str]:
    """examples/s from the median step, and the step times' median [min-max]."""
    med = statistics.median(times)
    return batch / med, f"{med:.2f} [{min(times):.2f}-{max(times):.2f}]"


def part1(args, common: dict, lines: list[str]) -> None:
    keys = args.configs.split(",")
    lines += ["## 1. Step throughput and memory, interleaved\n",
              f"{args.warmup} warm-up and {args.steps} measured steps per configuration, stepped round-robin in one "
              "process. Step RSS increase: peak VmRSS during a step over the value before it. Isolated: the "
              "configuration alone in a fresh process (ru_maxrss).\n",
              "| model | hard neg. | config | step s, median [min-max] | examples/s | vs ST | step RSS increase MiB "
              "| isolated peak MiB | load (1 min) |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for model in filter(None, args.models.split(",")):
        for negatives in map(int, args.negatives.split(",")):
            spec = {**common, "model": model, "negatives": negatives, "configs": [CONFIGS[k] for k in keys]}
            print(f"{model}, {negatives} hard negatives: interleaved (load {load():.2f})", file=sys.stderr, flush=True)
            res = dict(zip(keys, launch(spec)["configs"], strict=True))
            alone = {}
            if model in args.isolated.split(","):
                for k in keys:
                    alone[k] = launch({**spec, "warmup": 1, "steps": 1, "configs": [CONFIGS[k]]})  # peak memory only
            rate = {k: summary(args.batch_size, r["times"])[0] for k, r in res.items()}
            for k, r in res.items():
                ratio = f"{rate[k] / rate[BASELINE[k]]:.2f}x" if BASELINE.get(k) in rate else "—"
                iso = f"{alone[k]['rss_peak']:.0f}" if k in alone else "—"
                lines.append(f"| {model} | {negatives} | {LABELS[k]} | {summary(args.batch_size, r['times'])[1]} | "
                             f"{rate[k]:.2f} | {ratio} | {r['increase']:.0f} | {iso} | {load():.2f} |")
                print(lines[-1], file=sys.stderr, flush=True)


def part2(args, common: dict, lines: list[str]) -> None:
    lines += ["", f"## 2. Memory: batch {args.memory_batch} with the gradient cache (chunk 16) vs plain batch "
              f"{args.batch_size}\n", "Each alone in a fresh process, one hard negative, 1 warm-up + 2 measured steps "
              "(AdamW included). Target: peak at most 1.2x plain batch 16.\n",
              "| model | config | step s, median [min-max] | examples/s | peak RSS MiB | peak vs plain | load (1 min) |",
              "|---|---|---|---:|---:|---:|---:|"]
    for model in filter(None, args.memory_models.split(",")):
        spec = {**common, "model": model, "negatives": 1, "warmup": 1, "steps": 2}
        print(f"{model}: memory (load {load():.2f})", file=sys.stderr, flush=True)
        plain = launch({**spec, "batch": args.batch_size, "configs": [CONFIGS["ours"]]})
        cached = launch({**spec, "batch": args.memory_batch, "configs": [CONFIGS["ours-cache"]]})
        for label, r, b in ((f"plain, batch {args.batch_size}", plain, args.batch_size),
                            (f"grad cache 16, batch {args.memory_batch}", cached, args.memory_batch)):
            rate, spread = summary(b, r["configs"][0]["times"])
            lines.append(f"| {model} | {label} | {spread} | {rate:.2f} | {r['rss_peak']:.0f} | "
                         f"{r['rss_peak'] / plain['rss_peak']:.2f}x | {r['load']:.2f} |")


def part3(args, lines: list[str]) -> None:
    """One epoch of the whole synthetic set through the CLI, as a user runs it."""
    start_load = load()
    out = Path(args.epoch_dir)
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resumed one
    # the trained model stays in --epoch-dir, where the quality table's synthetic row can score it
    files = [a for f in sorted(SHARED.glob("*.jsonl")) for a in ("-d", str(f))]
    settings = {"batch_size": 16, "hard_negatives": 1, "query_max_length": 192, "doc_max_length": 192,
                "epochs": 1, "gradient_checkpointing": "false", "by_source": "false"}  # as measured: mixed batches
    cmd = [str(Path(sys.executable).parent / "synthembed"), "train", "-m", "gemma-270m", *files, "-o", str(out),
           "-q", *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["seconds"] for r in log]
    lines += ["", "## 3. One epoch of the whole synthetic set (`synthembed train`)\n",
              f"`synthembed train -m gemma-270m -d <each synthetic-frontier file> ...`: {len(log)} steps of 16 with one hard negative, "
              "192 tokens, no checkpointing; wall time includes loading, export and the sentence-transformers folder.\n",
              "| wall min | steps | step s, median [min-max] | peak memory GB | load at start / end | baseline |",
              "|---:|---:|---|---:|---|---|",
              f"| {wall / 60:.1f} | {len(log)} | {statistics.median(steps):.2f} [{min(steps):.2f}-{max(steps):.2f}] | "
              f"{max(r['peak_memory_gb'] for r in log):.1f} | {start_load:.2f} / {load():.2f} | sentence-transformers "
              "MNRL, same epoch at 192 tokens on this machine: 21 min, 4.7 GB (measured earlier, not rerun here) |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="minilm,gemma-270m")
    ap.add_argument("--negatives", default="0,1", help="hard negatives per query, each a separate run")
    ap.add_argument("--configs", default="ours,mnrl,ours-cache,cmnrl")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--checkpointing", action="store_true", help="both sides with gradient checkpointing")
    ap.add_argument("--isolated", default="minilm,gemma-270m", help="part 1 models also run one config per process")
    ap.add_argument("--memory-models", default="gemma-270m", help="part 2 models (empty: skip)")
    ap.add_argument("--memory-batch", type=int, default=256)
    ap.add_argument("--epoch", action="store_true", help="part 3: one epoch of the whole synthetic set")
    ap.add_argument("--epoch-dir", type=Path, default=Path(__file__).resolve().parent / "out" / "train-epoch")
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    start, start_load = time.perf_counter(), load()
    common = {"length": args.max_length, "threads": args.threads, "ckpt": args.checkpointing,
              "batch": args.batch_size, "warmup": args.warmup, "steps": args.steps}
    lines = ["# Training: synthembed vs sentence-transformers\n", f"`.venv/bin/python {' '.join(sys.argv)}`\n",
             f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores; batch {args.batch_size}, "
             f"max length {args.max_length}, gradient checkpointing {'on' if args.checkpointing else 'off'}, bf16, "
             f"LoRA r16/alpha32/dropout 0.1 (all linear), tau 0.02, AdamW. Load average at start: {start_load:.2f}"
             + (" (ABOVE 1.5: the machine was not quiet; figures are not reliable)" if start_load > 1.5 else "") + "\n"]
    part1(args, common, lines)
    if args.memory_models:
        part2(args, common, lines)
    if args.epoch:
        part3(args, lines)
    lines.append(f"\nbench time {time.perf_counter() - start:.0f} s; load at end {load():.2f}")
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
