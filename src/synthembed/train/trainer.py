"""The training loop: one code path from a CPU to many GPUs (accelerate: DDP, FSDP or DeepSpeed ZeRO-3, launched
with `accelerate launch` or `torchrun`). Resumable: a run killed at any step and resumed from its last checkpoint
ends with the same weights as an uninterrupted run, because batches and randomness derive from (seed, step)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from synthembed.data.mix import epoch_batches
from synthembed.data.pairs import read_pairs
from synthembed.model.flops import dense_params, device_peak
from synthembed.train.backbone import build_embedder, resolve_backbone
from synthembed.train.config import TrainConfig
from synthembed.train.distributed import mean_across
from synthembed.train.engine import configure_deepspeed, engine_hooks, is_deepspeed, make_accelerator
from synthembed.train.loss import resolve_matryoshka
from synthembed.train.schedule import warmup_linear_schedule
from synthembed.train.step import make_batch, step, tokenizer_for

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"


def train(cfg: TrainConfig, show_progress: bool = True) -> Path:
    """Train, write the model directory (see export.py) and return its path."""
    from synthembed.train.export import export

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    AcceleratorState._reset_state()  # a second run in this process may choose another precision
    accelerator = make_accelerator(cfg.mixed_precision)
    world = accelerator.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes ({world})")
    sources = _read_sources(cfg)
    # from the config alone: a wrong dim fails before the weights load (minutes for a 7B model)
    matryoshka = resolve_matryoshka(cfg.matryoshka_dims, cfg.matryoshka_weights, _hidden_size(cfg.model))
    set_seed(cfg.seed)
    embedder = build_embedder(cfg)
    params = [p for p in embedder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = _batches(cfg, sources, epoch=0)  # the current epoch's batches, cut once per epoch
    per_epoch = len(batches)
    if per_epoch == 0:
        raise ValueError(f"no full batch of {cfg.batch_size}: the data has fewer pairs; lower batch_size")
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    scheduler = warmup_linear_schedule(optimizer, cfg.warmup_steps, total, cfg.warmup_ratio_cap)
    if is_deepspeed(accelerator):
        configure_deepspeed(accelerator, cfg.batch_size // world, cfg.max_grad_norm)
    model, optimizer = accelerator.prepare(embedder.model, optimizer)
    backward, no_sync, optimizer_step = engine_hooks(accelerator, model)
    accelerator.register_for_checkpointing(scheduler)
    _save_trainable_only(accelerator)
    embedder.model = model
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meter = Meter(dense_params(model), accelerator.device, cfg.mixed_precision,  # before the RNG is restored
                  flops_per_token=4 if cfg.lora else 6)
    history = _resume(accelerator, out)
    start = len(history)
    tokenize = tokenizer_for(embedder, cfg.query_max_length, cfg.doc_max_length,
                             cfg.pad_multiple(accelerator.device.type))
    model.train()
    with _progress(show_progress and accelerator.is_main_process) as progress:
        bar = progress.add_task("train", total=total, completed=start, loss=float("nan"), rate=0.0, mfu=0.0)
        for n in range(start, total):
            epoch, index = divmod(n, per_epoch)
            if index == 0 or n == start:
                batches = _batches(cfg, sources, epoch)
            pairs = batches[index]
            local = len(pairs) // world
            pairs = pairs[accelerator.process_index * local : (accelerator.process_index + 1) * local]
            batch = make_batch(pairs, embedder.query_template, cfg.hard_negatives)
            lr = scheduler.get_last_lr()[0]  # the rate of this step (the scheduler then moves to the next)
            meter.start()
            loss = step(embedder.forward, tokenize, batch, cfg.tau, cfg.chunk_size, backward, no_sync, matryoshka)
            optimizer_step(optimizer, params, cfg.max_grad_norm)
            scheduler.step()
            record = {"step": n + 1, "epoch": epoch, "loss": mean_across(loss, accelerator.device), "lr": lr,
                      **meter.stop(len(pairs) * world, tokenize.take_count() * world)}
            history.append(record)
            progress.update(bar, advance=1, loss=record["loss"], rate=record["examples_per_s"], mfu=record["mfu"])
            if (n + 1) % cfg.log_every == 0:
                log.info(json.dumps(record))
                if accelerator.is_main_process:
                    with open(out / "train_log.jsonl", "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
            if cfg.save_every and (n + 1) % cfg.save_every == 0 and n + 1 < total:
                _checkpoint(accelerator, out, history)
    _checkpoint(accelerator, out, history)
    return export(accelerator, embedder, cfg, history)


def _hidden_size(model: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(resolve_backbone(model)).get_text_config().hidden_size)


class Meter:
    """Examples/s, tokens/s, an MFU estimate and peak memory. MFU counts matmul FLOPs of the non-embedding
    parameters (an embedding lookup is no matmul): 2N per token forward, plus 4N backward when the weights get
    gradients (full fine-tuning, 6N as nanoGPT) or 2N when only the input gradient flows through frozen weights
    (LoRA, about 4N); recomputation under gradient checkpointing is not useful work and is not counted."""

    def __init__(self, n_params: int, device: torch.device, precision: str, flops_per_token: int = 6):
        self.n_params, self.flops_per_token = n_params, flops_per_token
        self.device = device
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.peak = device_peak(device, dtype)

    def start(self) -> None:
        self.t = time.perf_counter()

    def stop(self, examples: int, tokens: int) -> dict:
        seconds = time.perf_counter() - self.t
        return {"seconds": round(seconds, 4), "examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds,
                "mfu": self.flops_per_token * self.n_params * tokens / seconds / self.peak, "peak_memory_gb": _peak_memory(self.device)}


def _peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def _read_sources(cfg: TrainConfig) -> list:
    if not cfg.data:
        raise ValueError("no training data: give --data PATH (repeatable) or train.data in the config")
    return [read_pairs(source.path, source.kind, cfg.skip_bad_rows)[0] for source in cfg.data]


def _batches(cfg: TrainConfig, sources: list, epoch: int) -> list:
    return epoch_batches(sources, [s.weight for s in cfg.data], cfg.batch_size, cfg.seed, epoch, cfg.by_source,
                         drop_last=True)


def _save_trainable_only(accelerator: Accelerator) -> None:
    """Checkpoints hold the trained weights only (the LoRA adapters), not a copy of the frozen backbone."""

    def keep_trainable(models, weights, output_dir):
        if not weights:  # DeepSpeed writes its own (partitioned) checkpoint and hands no state dicts here
            return
        for model, state in zip(models, weights, strict=True):
            trainable = {name for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
            for key in [k for k in state if k.removeprefix("module.") not in trainable]:
                del state[key]

    accelerator.register_save_state_pre_hook(keep_trainable)


def _checkpoint(accelerator: Accelerator, out: Path, history: list[dict]) -> None:
    """Written beside the last one, then swapped in: a kill at any moment leaves one complete checkpoint."""
    fresh, old = out / f"{CHECKPOINT}.tmp", out / f"{CHECKPOINT}.old"
    accelerator.save_state(str(fresh))
    accelerator.wait_for_everyone()  # every process has written its part (e.g. its RNG state) before the swap
    if accelerator.is_main_process:
        (fresh / "history.json").write_text(json.dumps(history))
        if (out / CHECKPOINT).exists():
            (out / CHECKPOINT).rename(old)
        fresh.rename(out / CHECKPOINT)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _resume(accelerator: Accelerator, out: Path) -> list[dict]:
    """The history of the run so far, with model, optimizer, scheduler and RNG states restored from its last
    checkpoint; empty for a fresh run."""
    for checkpoint in (out / CHECKPOINT, out / f"{CHECKPOINT}.old"):  # .old: killed between the two renames
        if (checkpoint / "history.json").is_file():
            accelerator.load_state(str(checkpoint), strict=False)
            history = json.loads((checkpoint / "history.json").read_text())
            log.info("resumed from %s at step %d", checkpoint, len(history))
            return history
    return []


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} ex/s  MFU {task.fields[mfu]:.1%}"),
                    TimeRemainingColumn(), disable=not enabled,
                    transient=False)
