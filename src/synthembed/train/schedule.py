"""The learning-rate schedule: linear warm-up, then linear decay (the paper's), with the warm-up capped at a share
of the run, so that a short run leaves warm-up, and the first step already learning (transformers' schedule gives
step 1 a rate of 0)."""

from __future__ import annotations

import logging

import torch
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger(__name__)


def effective_warmup(warmup_steps: int, total_steps: int, ratio_cap: float) -> int:
    """The warm-up the run gets: at most `ratio_cap` of its steps."""
    return min(warmup_steps, int(ratio_cap * total_steps))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The rate of optimizer step `step` (0-based) as a share of the peak: (step + 1) / warmup while warming up,
    then a straight line down to 1 / (total - warmup) at the last step (never 0 within the run)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(total - step, 0) / max(total - warmup, 1)


def warmup_linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                           ratio_cap: float = 0.1) -> LambdaLR:
    """A scheduler to step once after every optimizer step; logs the warm-up it chose."""
    warmup = effective_warmup(warmup_steps, total_steps, ratio_cap)
    if warmup < warmup_steps:
        log.info("warm-up: %d steps of %d (asked %d, capped at %g of the run)", warmup, total_steps, warmup_steps,
                 ratio_cap)
    else:
        log.info("warm-up: %d steps of %d", warmup, total_steps)
    return LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps))
