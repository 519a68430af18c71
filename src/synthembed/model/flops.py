"""FLOP accounting: the machine's measured matmul peak and a model's matmul parameters (for MFU figures)."""

from __future__ import annotations

import time

import torch

# Published dense bf16 peaks (FLOP/s) of common accelerators; on other devices the peak is measured.
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def matmul_peak(dtype: torch.dtype, n: int = 2048, iters: int = 10, device: str | torch.device = "cpu") -> float:
    """Best-of-`iters` FLOP/s of an n x n matmul; in GFLOP/s."""
    # a private generator: measuring must not move the global RNG (a resumed run replays it)
    a, b = torch.randn(2, n, n, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    a @ b  # warm-up
    cuda = torch.device(device).type == "cuda"
    best = float("inf")
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def device_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Peak FLOP/s of the device: the published figure for known GPUs, else measured."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAKS.items():
            if key in name:
                return peak
    return matmul_peak(dtype, iters=5, device=device) * 1e9


def dense_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all but embedding tables (lookups, not FLOPs)."""
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)
