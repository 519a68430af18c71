"""What differs between the engines accelerate drives: how several backward passes make one optimizer step.

DDP and FSDP accumulate gradients locally under `no_sync` and reduce them at the last backward. accelerate's
DeepSpeed backward also runs the engine's step, so the gradient cache's chunks would each step the optimizer;
under DeepSpeed every chunk but the last is marked as not a gradient-accumulation boundary instead (the engine
then adds its gradients and steps once, at the last chunk).
"""

from __future__ import annotations

import contextlib
import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs


def make_accelerator(mixed_precision: str) -> Accelerator:
    """accelerate's Accelerator for this machine. Without CUDA it runs on the CPU; a DeepSpeed launch there
    (ACCELERATE_USE_DEEPSPEED, as `accelerate launch` with a DeepSpeed config sets) is allowed too, over gloo:
    accelerate turns DeepSpeed off for `cpu=True` and, without a named backend, counts one process."""
    if torch.cuda.is_available():
        return Accelerator(mixed_precision=mixed_precision)
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and "LOCAL_RANK" in os.environ:
        return Accelerator(mixed_precision=mixed_precision, cpu=False,
                           kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    return Accelerator(mixed_precision=mixed_precision, cpu=True)


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def configure_deepspeed(accelerator: Accelerator, local_batch: int, max_grad_norm: float | None) -> None:
    """Settings DeepSpeed wants before `prepare`: we prepare no dataloader, and it clips inside its own step."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = local_batch
    config["train_batch_size"] = local_batch * accelerator.num_processes
    config["gradient_clipping"] = max_grad_norm or 0.0


def engine_hooks(accelerator: Accelerator, model):
    """(backward, no_sync, optimizer_step) giving one optimizer step per batch on DDP, FSDP and ZeRO-3."""
    if not is_deepspeed(accelerator):
        def optimizer_step(optimizer, params, max_grad_norm):
            if max_grad_norm:
                accelerator.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return accelerator.backward, (lambda: accelerator.no_sync(model)), optimizer_step

    engine = accelerator.deepspeed_engine_wrapped.engine
    if engine.gradient_accumulation_steps() != 1:  # its backward would divide every chunk's loss by it
        raise ValueError("DeepSpeed gradient_accumulation_steps must be 1 (the gradient cache accumulates itself)")

    @contextlib.contextmanager
    def no_sync():  # not a boundary: the engine's backward adds gradients and does not step
        accelerator.sync_gradients = False
        try:
            yield
        finally:
            accelerator.sync_gradients = True

    def optimizer_step(optimizer, params, max_grad_norm):
        pass  # the engine clipped, stepped and zeroed inside the last chunk's backward

    return accelerator.backward, no_sync, optimizer_step
