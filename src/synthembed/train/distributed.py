"""Cross-process negatives: gather embeddings from every process with gradients flowing back to their owner.

Each process computes the loss of its own queries against every process's documents; the gradient that other
processes' losses send to this process's documents arrives through the gather's backward, which sums every
process's gradient of this process's slice (a reduce-scatter on NCCL, an all-to-all on gloo), so after the usual
gradient averaging the update equals one process running the whole batch.

Every tensor handed to a collective lives on the device the backend works on: the embeddings' own device (the
accelerator's under NCCL), and for logged numbers the device the caller names (accelerator.device).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(x: torch.Tensor) -> list[torch.Tensor]:
    """torch's gradient-carrying all_gather (deprecated in favour of functional collectives, whose backward
    needs a reduce-scatter that gloo lacks; this one works on gloo and NCCL alike)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed.nn.functional.all_gather is deprecated",
                                category=FutureWarning)
        return list(dist_nn.all_gather(x.contiguous()))


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate x (n_rank, ...) of all processes in rank order, differentiably; also each rank's row count.
    Processes may hold different numbers of rows (queries with more or fewer negatives)."""
    if not is_distributed():
        return x, [x.shape[0]]
    sizes = gather_sizes(x.shape[0], x.device)
    if x.shape[0] < max(sizes):  # all_gather wants equal shapes: pad, gather, cut
        x = torch.cat([x, x.new_zeros((max(sizes) - x.shape[0], *x.shape[1:]))])
    parts = all_gather_with_grad(x)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)]), sizes


def gather_sizes(n: int, device: torch.device | str) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s) for s in sizes]


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def backend_device() -> torch.device:
    """The device the default group's collectives need: the current CUDA device under NCCL, else the CPU."""
    backend = str(dist.get_backend()).lower()
    if "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_across(value: float, device: torch.device | str | None = None) -> float:
    """A logged number averaged over processes; `device` is where the backend's collectives run (the
    accelerator's device: NCCL accepts CUDA tensors only); None: the backend's."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device or backend_device())
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()
