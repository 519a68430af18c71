"""LoRA's input dropout at a fraction of peft's cost, with the same math: A(dropout(x)).

peft casts every adapted layer's input to the adapter dtype (fp32) and runs `nn.Dropout` on that copy; on the CPU
the dropout keeps an fp32 mask and autocast keeps a bf16 copy of the dropped input for backward. With a bf16
backbone that is two full-size fp32 passes and ~6 bytes saved per input element per adapter (q, k and v each keep
their own). Here the mask is drawn fast (train/dropout.py) and kept as 1 byte, and the dropped input is formed
once, in the compute dtype (2 bytes per element).
"""

from __future__ import annotations

import types
from functools import partial

import torch
from torch import nn

from synthembed.train.dropout import draw_keep, masked


class DropoutLinear(torch.autograd.Function):
    """y = (x * keep / (1 - p)) @ weight.T. The scale 1 / (1 - p) is applied to the small (r, d) weight rather
    than to the (tokens, d) input; backward reuses the dropped input and the 1-byte mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor, scale: float,
                dtype: torch.dtype) -> torch.Tensor:
        dropped = masked(x.to(dtype), keep)  # (tokens, d)
        ctx.save_for_backward(dropped, weight, keep)
        ctx.scale, ctx.dtype, ctx.x_dtype = scale, dtype, x.dtype
        return dropped @ (weight * scale).to(dtype).T  # (tokens, r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dropped, weight, keep = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = masked(grad @ (weight * ctx.scale).to(ctx.dtype), keep).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            flat = grad.reshape(-1, grad.shape[-1])  # (tokens, r)
            grad_w = (flat.T @ dropped.reshape(flat.shape[0], -1)).to(weight.dtype) * ctx.scale
        return grad_x, grad_w, None, None, None


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
    """Swap every peft LoRA Linear's dropout + lora_A for LoraA, and its forward for `_lora_forward`; returns how
    many layers were changed. Layers with a LoRA variant (DoRA, ...) or bias are left to peft."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    changed = 0
    for layer in model.modules():
        if not isinstance(layer, LoraLinear) or layer.lora_variant or any(a.bias is not None for a in layer.lora_A.values()):
            continue
        for name, dropout in list(layer.lora_dropout.items()):
            old = layer.lora_A[name]
            new = LoraA(old.in_features, old.out_features, bias=False, device="meta")
            new.weight = old.weight  # the same Parameter: the optimizer, checkpoints and merging see no change
            new.p = dropout.p if isinstance(dropout, nn.Dropout) else 0.0
            new.train(old.training)
            layer.lora_A[name] = new
            layer.lora_dropout[name] = nn.Identity()
            changed += 1
        layer.forward = types.MethodType(partial(_lora_forward, peft_forward=layer.forward), layer)
    return changed


def _lora_forward(layer, x: torch.Tensor, *args, peft_forward, **kwargs) -> torch.Tensor:
    """base(x) + scaling * B(A(dropout(x))), with the scaling folded into B's small weight and the sum done by the
    matmul itself (addmm): peft multiplies and adds over every (tokens, out_features) output instead."""
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if args or kwargs or layer.disable_adapters or layer.merged or len(active) != 1:
        return peft_forward(x, *args, **kwargs)  # peft's own path for everything but plain single-adapter use
    name = active[0]
    result = layer.base_layer(x)
    low = layer.lora_A[name](x)  # (..., r) in the compute dtype
    b = (layer.lora_B[name].weight * layer.scaling[name]).to(low.dtype)  # (out, r)
    out = torch.addmm(result.reshape(-1, result.shape[-1]).to(low.dtype), low.reshape(-1, low.shape[-1]), b.T)
    return out.view(result.shape).to(result.dtype)
