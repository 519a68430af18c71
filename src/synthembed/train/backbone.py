"""The model being trained: a backbone (offline short name, directory or hub id) wrapped with LoRA through peft,
behind the same HFEmbedder that evaluation uses, so training and inference tokenize and pool identically."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModel

from synthembed.model.embedder import QUERY_TEMPLATE, HFEmbedder
from synthembed.train.config import TrainConfig
from synthembed.train.dropout import replace_dropout
from synthembed.train.lora import fuse_lora_dropout

log = logging.getLogger(__name__)


def resolve_backbone(name: str) -> Path | str:
    """Offline short names and directories to a path; anything else is left for the hub."""
    from synthembed.formats.offline import OFFLINE_MODELS, resolve

    if name in OFFLINE_MODELS or Path(name).expanduser().is_dir():
        return resolve(name)
    return name


def build_embedder(cfg: TrainConfig) -> HFEmbedder:
    path = resolve_backbone(cfg.model)
    if cfg.rope_theta:
        from synthembed.model.rope import with_rope_theta

        path = with_rope_theta(path, cfg.rope_theta)
    # LoRA under bf16 mixed precision: the frozen backbone is held in bf16 (half the memory, no per-forward weight
    # casts); the adapters, which the optimizer updates, stay fp32.
    frozen_bf16 = cfg.lora is not None and cfg.mixed_precision == "bf16"
    backbone = AutoModel.from_pretrained(path, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input gradients (LoRA leaves the embeddings frozen) and
        # restores the RNG state itself, so dropout masks match between forward and recompute.
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        backbone.config.use_cache = False
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=cfg.lora.target_modules, task_type="FEATURE_EXTRACTION")
        backbone = get_peft_model(backbone, lora, autocast_adapter_dtype=True)  # adapters in fp32
        fuse_lora_dropout(backbone)
    replace_dropout(backbone)  # an encoder's own hidden dropout: same math, cheaper (train/dropout.py)
    trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    total = sum(p.numel() for p in backbone.parameters())
    log.info("%s: %d of %d parameters trainable (%.2f%%)", cfg.model, trainable, total, 100 * trainable / total)
    return HFEmbedder(path, pooling=cfg.pooling, max_length=max(cfg.query_max_length, cfg.doc_max_length),
                      name=Path(str(cfg.model)).name, model=backbone, query_template=QUERY_TEMPLATE)
