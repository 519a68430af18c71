"""Cross-process negatives: gather embeddings from every process with gradients flowing back to their owner.

Each process computes the loss of its own queries against every process's documents; the gradient that other
processes' losses send to this process's documents arrives through the gather's backward (an all-reduce), so
after the usual gradient averaging the update equals one process running the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every process holds gradients for every slice; sum them and keep our own slice. (all_reduce, unlike
        # reduce_scatter, works on every backend, gloo included.)
        grad = grad.contiguous()
        dist.all_reduce(grad)
        size = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * size : (rank + 1) * size]


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate x (n_rank, ...) of all processes in rank order, differentiably; also each rank's row count.
    Processes may hold different numbers of rows (queries with more or fewer negatives)."""
    if not is_distributed():
        return x, [x.shape[0]]
    sizes = gather_sizes(x.shape[0], x.device)
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded = torch.cat([x, padded[x.shape[0] :]]) if x.shape[0] < max(sizes) else x
    full = _GatherWithGrad.apply(padded)  # (world * max, ...)
    rows = [full[r * max(sizes) : r * max(sizes) + n] for r, n in enumerate(sizes)]
    return torch.cat(rows), sizes


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], device=device))
    return [int(s) for s in sizes]


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def mean_across(value: float) -> float:
    """A logged number averaged over processes."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()
