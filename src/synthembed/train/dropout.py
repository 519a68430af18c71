"""Dropout with the same math as torch's, at a fraction of its CPU cost.

torch's bernoulli_ draws ~0.2 G values/s on a pair of CPU cores, which made dropout 40% of a LoRA step of a
270M decoder and a fifth of an encoder's step. Here the mask takes 15 bits of a 64-bit random word per element
(4 elements per word, about 2x faster), is kept as 1 byte, and is applied with one `where` pass. The mask comes
from the global RNG, so gradient checkpointing and the gradient cache replay it.
"""

from __future__ import annotations

import torch
from torch import nn


def draw_keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """A Bernoulli(1 - p) mask of x's shape, as bool; p is exact to 2^-15 (0.1 -> 0.100006)."""
    n = x.numel()
    words = torch.empty(-(-n // 4), dtype=torch.int64, device=x.device).random_()  # 63 random bits each
    bits = words.view(torch.int16)[:n].bitwise_and_(0x7FFF)  # the top bit of every 4th int16 is always 0
    return (bits >= round(p * 2**15)).view(x.shape)


def masked(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, x, 0)  # one pass; x * keep would first cast the mask to x's dtype


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = draw_keep(x, p)
        ctx.save_for_backward(keep)
        ctx.scale = 1 / (1 - p)
        return masked(x, keep) * ctx.scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return masked(grad, keep) * ctx.scale, None


class Dropout(nn.Dropout):
    """nn.Dropout's drop-in: same p, same training/eval behaviour, a 1-byte mask saved for backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        return _Dropout.apply(x, self.p)


def replace_dropout(model: nn.Module) -> int:
    """Every nn.Dropout in `model` (an encoder's hidden dropout, say) becomes a Dropout; returns how many."""
    count = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.Dropout and child.p > 0:
                module.add_module(name, Dropout(child.p, inplace=False).train(child.training))
                count += 1
    return count
