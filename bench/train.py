"""Training throughput and memory: our training step vs sentence-transformers' (Cached)MultipleNegativesRankingLoss.

Same backbone, same LoRA (r16, alpha 32, dropout 0.1, all linear layers, peft), same pooling (last token at EOS for
Gemma-270M, mean for MiniLM), same data (the first rows of synthetic-frontier short-long: query, positive, one hard
negative; queries formatted as our trainer does), same max length, batch, temperature (ST scale = 1/tau), gradient
checkpointing setting, bf16 autocast around the backbone's forward (as accelerate does) and AdamW. ST's loss is driven
by a manual loop (loss(features, labels), backward, optimizer step), tokenized with `model.preprocess` through a
tokenizer that appends EOS after truncation (export.append_eos), so both sides pool at the same token.

Part 1: the four configurations of a model (ours plain, ours with the gradient cache, ST MNRL, ST CMNRL) are built
in one process and stepped round-robin, the order rotating each step, so each sees the same share of a shared machine;
examples/s from the median step after --warmup steps. Per-step memory: the peak VmRSS during a step over the value
before it; --isolated MODELS also runs each configuration alone in a fresh process for its ru_maxrss.
Part 2: our step at batch 256 with the gradient cache (chunk 16) vs plain batch 16, each alone in a fresh process
(ru_maxrss, total and increase over the post-load value).

    .venv/bin/python bench/train.py [--models minilm,gemma-270m] [--steps minilm=4,gemma-270m=2] [--isolated minilm]
        [--memory-models minilm] [--threads 2] [--output bench/results/train.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthetic-frontier" / "short-long.jsonl"
RESULTS = Path(__file__).resolve().parent / "results" / "train.md"
TAU, LR, WD = 0.02, 1e-4, 0.1


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB (Linux)


def autocast_forward(module: torch.nn.Module) -> None:
    """bf16 autocast around the forward only, as accelerate's mixed_precision="bf16" wraps a prepared model."""
    forward = module.forward

    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    module.forward = wrapped


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear", task_type="FEATURE_EXTRACTION")


def prepare(spec: dict):
    """The batches of a run, and a factory of step functions per configuration (sharing one model per side)."""
    from synthembed.data.pairs import read_pairs
    from synthembed.model.embedder import QUERY_TEMPLATE
    from synthembed.train.config import TrainConfig
    from synthembed.train.model import build_embedder
    from synthembed.train.step import make_batch, step, tokenizer_for

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    B, L, n_steps = spec["batch"], spec["length"], spec["warmup"] + spec["steps"]
    pairs = read_pairs(DATA)[0]
    batches = [[pairs[(i * B + j) % len(pairs)] for j in range(B)] for i in range(n_steps)]
    cfg = TrainConfig(model=spec["model"], query_max_length=L, doc_max_length=L, batch_size=B,
                      gradient_checkpointing=spec["ckpt"])
    template = QUERY_TEMPLATE if spec["model"] == "gemma-270m" else "{text}"  # as HFEmbedder picks by pooling
    data = [make_batch(b, template, 1) for b in batches]
    built: dict = {}

    def runner(side: str, loss: str | None, chunk: int | None):
        if side == "ours":
            if "ours" not in built:
                ours = build_embedder(cfg)
                assert ours.query_template == template
                autocast_forward(ours.model)
                built["ours"] = ours
            ours = built["ours"]
            tokenize = tokenizer_for(ours, L, L)

            def run(batch):
                return step(ours.forward, tokenize, batch, TAU, chunk)
            model = ours.model
        else:
            if "st" not in built:
                built["st"] = build_st(spec)
            st = built["st"]
            loss_fn = st_loss(st, loss, chunk)

            def run(batch):
                columns = [batch.queries, batch.docs[0::2], batch.docs[1::2]]  # docs: per query [positive, negative]
                features = [st.preprocess(c) for c in columns]
                value = loss_fn(features, None)
                value.backward()
                return float(value.detach())
            model = st
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WD)

        def train_step(batch):
            value = run(batch)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return value
        return train_step, sum(p.numel() for p in params)

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
    """One process, one or more configurations: built once, then stepped round-robin (the order rotating each
    step), so every configuration sees the same share of the machine. ru_maxrss is only per configuration when
    the process runs one."""
    data, runner = prepare(spec)
    configs = spec["configs"]
    runs = [runner(c["side"], c.get("loss"), c.get("chunk")) for c in configs]
    base = rss_mib()
    out = [{"times": [], "losses": [], "increase": 0.0, "trainable": n} for _, n in runs]
    for i, batch in enumerate(data):
        for k in range(len(runs)):
            j = (k + i) % len(runs)
            with RssSampler() as mem:
                t = time.perf_counter()
                out[j]["losses"].append(runs[j][0](batch))
                seconds = time.perf_counter() - t
            if i >= spec["warmup"]:
                out[j]["times"].append(seconds)
            out[j]["increase"] = max(out[j]["increase"], mem.increase)
    return {"configs": out, "rss_base": base, "rss_peak": rss_mib()}


def build_st(spec: dict):
    from peft import get_peft_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from synthembed.model.load import model_path
    from synthembed.train.export import append_eos

    path, L = model_path(spec["model"]), spec["length"]
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
    get_peft_model(backbone, lora_config())  # injects the LoRA layers into `backbone` in place
    autocast_forward(backbone)
    return st


def st_loss(st, loss: str, chunk: int | None):
    from sentence_transformers.sentence_transformer import losses

    if loss == "cached":
        return losses.CachedMultipleNegativesRankingLoss(st, scale=1 / TAU, mini_batch_size=chunk)
    return losses.MultipleNegativesRankingLoss(st, scale=1 / TAU)


def check_tokens(model: str, length: int, n: int = 32) -> str:
    """Do both sides feed the backbone the same ids (EOS included for the decoder)?"""
    from synthembed.data.pairs import read_pairs
    from synthembed.train.config import TrainConfig
    from synthembed.train.model import build_embedder
    from synthembed.train.step import make_batch

    cfg = TrainConfig(model=model, query_max_length=length, doc_max_length=length, lora=None)
    ours = build_embedder(cfg)
    st = build_st({"model": model, "length": length, "ckpt": False})
    batch = make_batch(read_pairs(DATA)[0][:n], ours.query_template, 1)
    same = total = 0
    for text in batch.queries + batch.docs:
        a = ours.tokenize([text], length)["input_ids"][0].tolist()
        b = st.preprocess([text])["input_ids"][0].tolist()
        same, total = same + (a == b), total + 1
    return f"{model}: identical token ids for {same}/{total} texts"


def launch(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{spec}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def isolated(spec: dict, config: dict) -> dict:
    """One configuration alone in a fresh process: its ru_maxrss is its own."""
    res = launch({**spec, "configs": [config]})
    return {**res["configs"][0], "rss_base": res["rss_base"], "rss_peak": res["rss_peak"]}


def eps(batch: int, times: list[float]) -> float:
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="minilm,gemma-270m")
    ap.add_argument("--steps", default="minilm=4,gemma-270m=2", help="measured steps per model")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--no-checkpointing", action="store_true", help="both sides without gradient checkpointing")
    ap.add_argument("--configs", default="ours,mnrl,ours-cache,cmnrl", help="part 1 configurations")
    ap.add_argument("--isolated", default="", help="part 1 models whose configurations also run alone, for ru_maxrss")
    ap.add_argument("--memory-models", default="minilm", help="part 2 models (empty: skip)")
    ap.add_argument("--memory-batch", type=int, default=256)
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    start = time.perf_counter()
    steps = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
    common = {"length": args.max_length, "threads": args.threads, "ckpt": not args.no_checkpointing}
    configs = {"ours (plain)": {"side": "ours", "chunk": None},
               "ST MNRL": {"side": "st", "loss": "plain"},
               f"ours (grad cache, chunk {args.chunk})": {"side": "ours", "chunk": args.chunk},
               f"ST CMNRL (mini_batch {args.chunk})": {"side": "st", "loss": "cached", "chunk": args.chunk}}
    keys = dict(zip(["ours", "mnrl", "ours-cache", "cmnrl"], configs, strict=True))
    configs = {keys[k]: configs[keys[k]] for k in args.configs.split(",")}
    labels = list(configs)
    lines = ["# Training step: synthembed vs sentence-transformers\n",
             f"`.venv/bin/python {' '.join(sys.argv)}`\n",
             f"torch {torch.__version__}, {args.threads} torch threads, {os.cpu_count()} cores (shared with other "
             f"jobs: see the interleaving note); batch {args.batch_size}, max length {args.max_length}, gradient "
             f"checkpointing {'off' if args.no_checkpointing else 'on'} (both), bf16 autocast, AdamW, "
             "LoRA r16/alpha32/dropout0.1 (all linear), tau 0.02 (ST scale 50).\n",
             "## 1. Throughput\n",
             "All four configurations of a model in one process, stepped round-robin (order rotating each step); "
             "examples/s from the median measured step after the warm-up step. Step RSS increase: peak VmRSS "
             "(sampled every 2 ms) during a step over the value before it. Isolated: the configuration alone in a "
             "fresh process; ru_maxrss total and its increase over the post-load value.\n",
             "| model | config | examples/s | ours/MNRL | ours/CMNRL | step RSS increase MiB | isolated peak RSS MiB "
             "| isolated increase MiB | loss at step 1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for model in filter(None, args.models.split(",")):
        notes.append(check_tokens(model, args.max_length))
        spec = {**common, "model": model, "batch": args.batch_size, "steps": steps.get(model, 2),
                "warmup": args.warmup}
        print(f"{model}: interleaved", file=sys.stderr, flush=True)
        res = dict(zip(labels, launch({**spec, "configs": list(configs.values())})["configs"], strict=True))
        alone = {}
        if model in args.isolated.split(","):
            for label in labels:
                alone[label] = isolated(spec, configs[label])
                print(f"  {label} alone: peak {alone[label]['rss_peak']:.0f} MiB", file=sys.stderr, flush=True)
        rate = {label: eps(args.batch_size, r["times"]) for label, r in res.items()}
        mnrl, cmnrl = rate.get("ST MNRL"), rate.get(keys["cmnrl"])
        for label, r in res.items():
            print(f"  {label}: steps {[round(t, 2) for t in r['times']]} s", file=sys.stderr, flush=True)
            ratios = ("—", "—") if label.startswith("ST") else tuple(
                f"{rate[label] / st:.2f}x" if st else "—" for st in (mnrl, cmnrl))
            a = alone.get(label)
            iso = (f"{a['rss_peak']:.0f} | {a['rss_peak'] - a['rss_base']:.0f}" if a else "— | —")
            lines.append(f"| {model} | {label} | {rate[label]:.2f} | {ratios[0]} | {ratios[1]} | {r['increase']:.0f} | "
                         f"{iso} | {r['losses'][0]:.4f} |")
        notes.append(f"{model}: {len(res[labels[0]]['times'])} measured steps per configuration after "
                     f"{args.warmup} warm-up; {res[labels[0]]['trainable'] / 1e6:.2f}M trainable parameters (ours) vs "
                     f"{res[labels[-1]]['trainable'] / 1e6:.2f}M (ST); step times (s): "
                     + "; ".join(f"{k} {[round(t, 1) for t in v['times']]}" for k, v in res.items()))
    if args.memory_models:
        lines += ["", f"## 2. Memory: our step at batch {args.memory_batch} with the gradient cache (chunk {args.chunk}) "
                  f"vs plain batch {args.batch_size}\n",
                  "Each alone in a fresh process, one step (AdamW included). Increase: ru_maxrss after the step over "
                  "ru_maxrss after loading model and optimizer. Target: increase ratio at most 1.2x.\n",
                  "| model | config | examples/s | peak RSS MiB | increase MiB | increase vs plain | peak vs plain |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for model in args.memory_models.split(","):
            spec = {**common, "model": model, "warmup": 0, "steps": 1}
            print(f"{model}: memory", file=sys.stderr, flush=True)
            plain = isolated({**spec, "batch": args.batch_size}, {"side": "ours", "chunk": None})
            cached = isolated({**spec, "batch": args.memory_batch}, {"side": "ours", "chunk": args.chunk})
            ref = plain["rss_peak"] - plain["rss_base"]
            for label, r, b in ((f"plain, batch {args.batch_size}", plain, args.batch_size),
                                (f"grad cache {args.chunk}, batch {args.memory_batch}", cached, args.memory_batch)):
                inc = r["rss_peak"] - r["rss_base"]
                lines.append(f"| {model} | {label} | {eps(b, r['times']):.2f} | {r['rss_peak']:.0f} | {inc:.0f} | "
                             f"{inc / ref:.2f}x | {r['rss_peak'] / plain['rss_peak']:.2f}x |")
    lines += [""] + [f"- {n}" for n in notes] + [f"\nbench time {time.perf_counter() - start:.0f}s"]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
