"""Encoding throughput: HFEmbedder vs sentence-transformers' SentenceTransformer.encode on the same model.

Same texts (the first N SciFact documents, "title text"), same max length, same batch size. For the decoder
(Gemma-270M, last-token pooling) sentence-transformers gets the texts with the EOS string appended, since it does
not append EOS itself while HFEmbedder does. Each measurement follows one warm-up batch; configurations run
interleaved and the best of --repeats is kept. GFLOP/s = 2 * non-embedding params * real tokens / s, against
the machine's 2048x2048 matmul rate in the same dtype (best of runs before and after the encodings; the percentages
below use the final peak).

    .venv/bin/python bench/encode.py [--minilm-n 512] [--gemma-n 128] [--max-length 256] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer, models

from synthembed.model.embedder import HFEmbedder
from synthembed.model.flops import dense_params, matmul_peak
from synthembed.model.load import model_path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"


def load_texts(n: int) -> list[str]:
    texts = []
    with CORPUS.open() as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if len(texts) == n:
                break
    return texts


def bench_model(label, path, texts, L, bs, decoder, repeats):
    ours = HFEmbedder(path, max_length=L, dtype="fp32")
    ours_bf16 = HFEmbedder(path, max_length=L, dtype="bf16", model=ours.model, tokenizer=ours.tokenizer)
    if decoder:  # ST sees the EOS our tokenizer appends, as text
        st_texts = [t + ours.tokenizer.eos_token for t in texts]
        st = SentenceTransformer(modules=[models.Transformer(str(path), max_seq_length=L),
                                          models.Pooling(ours.dim, pooling_mode="lasttoken")], device="cpu")
    else:
        st_texts = texts
        st = SentenceTransformer(str(path), device="cpu")
        st.max_seq_length = L
    st.eval()

    # Real (non-pad) tokens each side processes.
    ours_tokens = sum(int(ours.tokenize([t])["attention_mask"].sum()) for t in texts)
    st_ids = [st.tokenize([t])["input_ids"][0].tolist() for t in st_texts]
    st_tokens = sum(len(x) for x in st_ids)

    # Same vectors in fp32 (over texts both tokenize identically; truncation may differ for decoders).
    same = [i for i, t in enumerate(texts) if ours.tokenize([t])["input_ids"][0].tolist() == st_ids[i]]
    a = ours.encode([texts[i] for i in same], batch_size=bs)
    b = st.encode([st_texts[i] for i in same], batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
    diff = float(np.abs(a - b).max()) if same else float("nan")

    runs = {"ours fp32": (lambda x: ours.encode(x, batch_size=bs), texts, ours_tokens, "fp32"),
            "ST fp32": (lambda x: st.encode(x, batch_size=bs, normalize_embeddings=True), st_texts, st_tokens,
                        "fp32"),
            "ours bf16": (lambda x: ours_bf16.encode(x, batch_size=bs), texts, ours_tokens, "bf16")}
    try:
        st_bf16 = _st_copy_bf16(st)
        st_bf16.encode(st_texts[:2], batch_size=bs)
        runs["ST bf16"] = (lambda x: st_bf16.encode(x, batch_size=bs, normalize_embeddings=True), st_texts,
                           st_tokens, "bf16")
    except Exception as e:  # noqa: BLE001 - report and go on without it
        print(f"[{label}] ST bf16 skipped: {type(e).__name__}: {e}")

    for fn, x, _, _ in runs.values():  # one warm-up batch each
        fn(x[:bs])
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):  # interleaved: ours, ST, ours, ST, ...
        for k, (fn, x, _, _) in runs.items():
            t = time.perf_counter()
            fn(x)
            best[k] = min(best[k], time.perf_counter() - t)

    params = dense_params(ours.model)
    rows = []
    for k, (_, x, tokens, dt) in runs.items():
        s = best[k]
        gflops = 2 * params * tokens / s / 1e9
        base = best.get(f"ST {dt}")
        ratio = f"{base / s:.2f}x" if base and not k.startswith("ST") else "—"
        rows.append((f"| {label} | {k} | {len(x) / s:.1f} | {tokens / s:.0f} | {ratio} | {gflops:.1f} | ", gflops, dt))
    info = (f"{label}: N={len(texts)}, max_length={L}, batch={bs}, tokens ours/ST={ours_tokens}/{st_tokens}, "
            f"dense params={params / 1e6:.1f}M (total {sum(p.numel() for p in ours.model.parameters()) / 1e6:.1f}M), "
            f"fp32 max |ours-ST|={diff:.2e} over {len(same)}/{len(texts)} texts")
    return rows, info


def _st_copy_bf16(st: SentenceTransformer) -> SentenceTransformer:
    import copy

    return copy.deepcopy(st).to(torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm-n", type=int, default=512)
    ap.add_argument("--gemma-n", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", default="minilm,gemma-270m")
    args = ap.parse_args()

    start = time.perf_counter()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows, infos = [], []
    for name in args.models.split(","):
        n = args.minilm_n if name == "minilm" else args.gemma_n
        r, info = bench_model(name, model_path(name), load_texts(n), args.max_length, args.batch_size,
                              decoder=name != "minilm", repeats=args.repeats)
        rows += r
        infos.append(info)

    for dt, torch_dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):  # again after: the best of both
        peaks[dt] = max(peaks[dt], matmul_peak(torch_dt))
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, matmul 2048^2 peak: "
          f"fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s\n")
    print("| model | encoder | texts/s | tokens/s | ours/ST | GFLOP/s | % of peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(f"{row}{100 * gflops / peaks[dt]:.0f}% |" for row, gflops, dt in rows))
    print()
    for info in infos:
        print(f"- {info}")
    print(f"\nbench time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
