"""Pooling token states into one vector per text, correct under left and right padding."""

from __future__ import annotations

import torch


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at each row's last real token: (batch, seq, dim), (batch, seq) -> (batch, dim).

    The position is found from the mask itself (the last 1), so left padding, right padding and
    unpadded rows are all handled by the same line.
    """
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask * positions).argmax(dim=1)  # (batch,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


POOLERS = {"last": last_token, "mean": mean, "cls": cls}


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    return POOLERS[mode](hidden, mask)
