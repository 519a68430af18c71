"""LoRA's input dropout at a fraction of peft's cost, with the same math: A(dropout(x)).

peft casts every adapted layer's input to the adapter dtype (fp32) and runs `nn.Dropout` on that copy; on the CPU
the dropout keeps an fp32 mask and autocast keeps a bf16 copy of the dropped input for backward. With a bf16
backbone that is two full-size fp32 passes and ~6 bytes saved per input element per adapter (q, k and v each keep
their own). Here the mask is drawn as bytes, the dropped input is formed in the compute dtype, and backward
rebuilds it from the layer input (which the graph keeps anyway) and the 1-byte mask.
"""

from __future__ import annotations

import torch
from torch import nn


class DropoutLinear(torch.autograd.Function):
    """y = (x * keep / (1 - p)) @ weight.T, saving x and the boolean mask instead of the dropped copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor, scale: float,
                dtype: torch.dtype) -> torch.Tensor:
        ctx.save_for_backward(x, weight, keep)
        ctx.scale, ctx.dtype = scale, dtype
        return _dropped(x, keep, scale, dtype) @ weight.to(dtype).T  # (tokens, r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, keep = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = ((grad @ weight.to(ctx.dtype)) * keep * ctx.scale).to(x.dtype)
        if ctx.needs_input_grad[1]:
            flat = grad.reshape(-1, grad.shape[-1])
            grad_w = (flat.T @ _dropped(x, keep, ctx.scale, ctx.dtype).reshape(flat.shape[0], -1)).to(weight.dtype)
        return grad_x, grad_w, None, None, None


def _dropped(x: torch.Tensor, keep: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) * keep * scale


def draw_keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """Bernoulli(1 - p) mask as bool, from the global RNG (so checkpointing and the gradient cache replay it)."""
    return torch.empty(x.shape, dtype=torch.uint8, device=x.device).bernoulli_(1 - p).bool()


class LoraA(nn.Linear):
    """peft's lora_A with the layer's dropout folded in; same parameter, so state dicts and merging are unchanged."""

    p: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x, self.weight)
        if not self.training or self.p == 0:
            return x.to(dtype) @ self.weight.to(dtype).T
        return DropoutLinear.apply(x, self.weight, draw_keep(x, self.p), 1 / (1 - self.p), dtype)


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """Autocast's dtype when it is on (what peft's matmul would run in), else the adapter's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return weight.dtype


def fuse_lora_dropout(model: nn.Module) -> int:
    """Swap every peft LoRA Linear's dropout + lora_A for LoraA; returns how many layers were changed."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    changed = 0
    for layer in model.modules():
        if not isinstance(layer, LoraLinear):
            continue
        if any(layer.lora_A[name].bias is not None for name in layer.lora_A):
            continue  # peft's lora_bias: left as it is
        for name, dropout in list(layer.lora_dropout.items()):
            old = layer.lora_A[name]
            new = LoraA(old.in_features, old.out_features, bias=False, device="meta")
            new.weight = old.weight  # the same Parameter: the optimizer, checkpoints and merging see no change
            new.p = dropout.p if isinstance(dropout, nn.Dropout) else 0.0
            new.train(old.training)
            layer.lora_A[name] = new
            layer.lora_dropout[name] = nn.Identity()
            changed += 1
        layer.cast_input_dtype_enabled = False  # LoraA casts itself, to the compute dtype only
    return changed
