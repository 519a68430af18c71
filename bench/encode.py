"""Encoding throughput: synthembed's HFEmbedder.encode vs sentence-transformers' SentenceTransformer.encode.

Same model, texts (the first N SciFact documents, "title text"), max length and batch size on both sides. Ours
holds the weights in the compute dtype, tokenizes once and batches by token length (EOS appended for last-token
pooling); for the decoder sentence-transformers gets the EOS string appended to each text (it does not append EOS
itself). Configurations: ours and sentence-transformers in fp32 (both libraries' CPU default), and each with the
weights in bf16. All are built in one process and run round-robin, the order rotating each repetition, so each
sees the same share of the machine: --warmup repetitions, then --repeats measured ones over all N texts; the median
and the spread (min-max) are reported with the 1-minute load average beside each figure. A run that starts above a
load of 1.5 says so.

    .venv/bin/python bench/encode.py [--models minilm,gemma-270m] [--minilm-n 512] [--gemma-n 128]
        [--max-length 256] [--batch-size 32] [--warmup 2] [--repeats 5] [--output bench/results/encode.md]
    .venv/bin/python bench/encode.py --smoke    # tiny random models, a few texts: checks that every step runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from synthembed.model.embedder import HFEmbedder

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"
BUSY = 1.5


def load() -> float:
    return os.getloadavg()[0]


def load_texts(n: int) -> list[str]:
    if not CORPUS.is_file():  # synthetic texts of varied length: the bench still runs without ../shared
        words = "retrieval embedding model query passage vector search ranking".split()
        return [" ".join(words[(i + j) % len(words)] for j in range(8 + (i * 37) % 200)) for i in range(n)]
    texts = []
    with CORPUS.open() as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if len(texts) == n:
                break
    return texts


def sentence_transformer(path: Path, ours: HFEmbedder, max_length: int, dtype: torch.dtype):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    if (path / "modules.json").is_file():
        st = SentenceTransformer(str(path), device=str(ours.device))
    else:
        pooling = {"last": "lasttoken", "mean": "mean", "cls": "cls"}[ours.pooling]
        st = SentenceTransformer(modules=[Transformer(str(path), max_seq_length=max_length),
                                          Pooling(ours.dim, pooling_mode=pooling)], device=str(ours.device))
    st.max_seq_length = max_length
    return st.to(dtype).eval()


def configurations(path: Path, texts: list[str], max_length: int, batch: int, device: str) -> dict[str, Callable]:
    """name -> a function encoding all texts once."""
    runs = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ours = HFEmbedder(path, max_length=max_length, dtype=label, device=device)
        st = sentence_transformer(path, ours, max_length, dtype)
        st_texts = [t + ours.tokenizer.eos_token for t in texts] if ours.pooling == "last" else texts
        runs[f"ours {label}"] = lambda ours=ours: ours.encode(texts, batch_size=batch)
        runs[f"ST {label}"] = lambda st=st, x=st_texts: st.encode(x, batch_size=batch, normalize_embeddings=True)
    return runs


def agreement(runs: dict[str, Callable], fits: np.ndarray) -> str:
    """Smallest cosine between our fp32 vectors and sentence-transformers' (the same model on both sides), over
    the texts that fit in max_length: a longer text loses its appended EOS string to ST's truncation, while we
    truncate the text and keep EOS, so a last-token model then pools another token there."""
    cosine = (np.asarray(runs["ours fp32"]()) * np.asarray(runs["ST fp32"]())).sum(1)
    fit = f"{cosine[fits].min():.6f}" if fits.any() else "-"
    cut = f"; {int((~fits).sum())} texts over max_length at {cosine[~fits].min():.3f}" if (~fits).any() else ""
    return f"smallest cosine ours vs ST (fp32) {fit} over {int(fits.sum())} texts that fit{cut}"


def fitting(path: Path, texts: list[str], max_length: int) -> np.ndarray:
    """Which texts, with the EOS a last-token model appends, fit in max_length tokens."""
    from transformers import AutoTokenizer

    lengths = [len(ids) + 1 for ids in AutoTokenizer.from_pretrained(path)(texts)["input_ids"]]
    return np.array(lengths) <= max_length


def measure(runs: dict[str, Callable], warmup: int, repeats: int) -> dict[str, dict]:
    names = list(runs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    loads: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order each repetition
            sync()
            t = time.perf_counter()
            runs[name]()
            sync()
            if rep >= warmup:
                seconds[name].append(time.perf_counter() - t)
                loads[name].append(load())
    return {n: {"median": statistics.median(s), "min": min(s), "max": max(s), "load": statistics.median(loads[n])}
            for n, s in seconds.items()}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def table(model: str, n: int, stats: dict[str, dict]) -> list[str]:
    rows = []
    for name, s in stats.items():
        dtype = name.split()[1]
        versus = stats[f"ST {dtype}"]["median"] / s["median"]
        versus_default = stats["ST fp32"]["median"] / s["median"]
        rows.append(f"| {model} | {name} | {n / s['median']:.1f} | {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}) "
                    f"| {versus:.2f}x | {versus_default:.2f}x | {s['load']:.2f} |")
    return rows


def smoke_models(root: Path) -> dict[str, Path]:
    from synthembed.testing.tiny import tiny_decoder, tiny_encoder

    return {"tiny-encoder": tiny_encoder(root / "enc"), "tiny-decoder": tiny_decoder(root / "dec")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,gemma-270m")
    ap.add_argument("--minilm-n", type=int, default=512)
    ap.add_argument("--gemma-n", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--output", type=Path, default=None, help="also write the table here (markdown)")
    ap.add_argument("--smoke", action="store_true", help="tiny random models and 16 texts")
    args = ap.parse_args()
    if args.warmup < 2 or args.repeats < 5:
        ap.error("at least 2 warm-up and 5 measured repetitions")

    start_load = load()
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
             f"1-minute load at start {start_load:.2f}"]
    if start_load > BUSY:
        lines.append(f"WARNING: the machine was busy (load {start_load:.2f} > {BUSY}): figures are not reliable")
    print("\n".join(lines), flush=True)
    head = ["| model | encoder | texts/s | seconds, median (min-max) | vs ST same dtype | vs ST fp32 | load |",
            "|---|---|---:|---:|---:|---:|---:|"]
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        if args.smoke:
            models = smoke_models(Path(tmp))
            counts = dict.fromkeys(models, 16)
        else:
            from synthembed.formats.offline import resolve

            models = {name: resolve(name) for name in args.models.split(",")}
            counts = {name: args.minilm_n if name == "minilm" else args.gemma_n for name in models}
        for name, path in models.items():
            texts = load_texts(counts[name])
            runs = configurations(path, texts, args.max_length, args.batch_size, args.device)
            notes.append(f"- {name}: {len(texts)} texts, max_length {args.max_length}, batch {args.batch_size}; "
                         f"{agreement(runs, fitting(path, texts, args.max_length))}")
            rows += table(name, len(texts), measure(runs, args.warmup, args.repeats))
            print(rows[-1], flush=True)
    report = "\n".join([*lines, "", *head, *rows, "", *notes, f"\n1-minute load at the end {load():.2f}"])
    print("\n" + report)
    if args.output:
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
