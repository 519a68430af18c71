"""Where a model runs and in which dtype its weights are held: `auto` is the GPU when there is one."""

from __future__ import annotations

import os
from typing import Literal

import torch

Device = str  # auto | cpu | cuda | cuda:N
Dtype = Literal["auto", "fp32", "bf16", "fp16"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: Device | torch.device | None = "auto") -> torch.device:
    """`auto`: CUDA when present, else the CPU. A CUDA device asked for on a machine without one is an error."""
    if device is None or str(device) == "auto":
        return _this_process_gpu() if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA device is available here (use --device cpu or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        if resolved.index is None:
            resolved = _this_process_gpu()
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    return resolved


def _this_process_gpu() -> torch.device:
    """Under torchrun / accelerate launch each process takes the GPU of its local rank, else the current one."""
    local = os.environ.get("LOCAL_RANK")
    index = int(local) % torch.cuda.device_count() if local is not None else torch.cuda.current_device()
    return torch.device("cuda", index)


def resolve_dtype(dtype: Dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the weights are held in. `auto`: bf16 on a GPU (fp16 where bf16 is unsupported); exact fp32 on
    the CPU, so that scores match published ones unless bf16 is asked for."""
    if dtype in (None, "auto"):
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]
