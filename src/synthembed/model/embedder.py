"""Hugging Face embedders: decoder LLMs with EOS + last-token pooling (the paper's model), encoders with mean or
CLS pooling, and sentence-transformers folders (their pooling, length and normalisation settings read from disk).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rich.progress import Progress
from transformers import AutoConfig, AutoModel, AutoTokenizer

from synthembed.model.pooling import pool
from synthembed.model.protocol import Role

log = logging.getLogger(__name__)

Pooling = Literal["last", "mean", "cls"]
QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {text}"


def format_query(text: str, instruction: str | None, template: str = QUERY_TEMPLATE) -> str:
    """The paper's query side; without an instruction a query is embedded as it is."""
    return template.format(instruction=instruction, text=text) if instruction else text


class HFEmbedder:
    def __init__(
        self,
        path: str | Path,
        pooling: Pooling | None = None,  # None: last for decoders, the folder's setting or mean for encoders
        max_length: int | None = None,
        query_template: str | None = None,  # None: the paper's with last-token pooling; else no instruction
        dtype: Literal["auto", "fp32", "bf16"] = "auto",
        name: str | None = None,
        model: torch.nn.Module | None = None,  # an in-memory model (e.g. one being trained)
        tokenizer=None,
    ):
        self.path = Path(path)
        self.name = name or self.path.name
        st = _sentence_transformers_settings(self.path)
        self.config = model.config if model is not None else AutoConfig.from_pretrained(self.path)
        self.decoder = bool(getattr(self.config, "is_decoder", False)) or _is_causal(self.config)
        self.pooling: Pooling = pooling or st.get("pooling") or ("last" if self.decoder else "mean")
        self.max_length = int(max_length or st.get("max_length") or 512)
        self.query_template = query_template or (QUERY_TEMPLATE if self.pooling == "last" else "{text}")
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = _resolve_dtype(dtype)
        self.model = model if model is not None else AutoModel.from_pretrained(self.path, dtype=torch.float32)
        self.model.eval()
        self.fingerprint = self._fingerprint()

    # -- tokenisation --------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Token ids padded into a batch. For last-token pooling we append EOS ourselves (some tokenizers of
        transformers >= 5 silently drop it) and truncate before it, so the pooled position is always EOS."""
        tok, max_length = self.tokenizer, max_length or self.max_length
        if self.pooling != "last":
            return tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        eos = tok.eos_token_id
        ids = tok(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
        ids = [(x if x and x[-1] == eos else x[: max_length - 1] + [eos]) for x in ids]  # EOS added once
        return tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    # -- encoding --------------------------------------------------------------------------------------------
    def encode(
        self,
        texts: Sequence[str],
        role: Role = "document",
        instruction: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        if role == "query":
            texts = [format_query(t, instruction, self.query_template) for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # length-sorted batches pad least
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with Progress(disable=not show_progress, transient=True) as progress:
            bar = progress.add_task(f"encode {self.name}", total=len(texts))
            for start in range(0, len(texts), batch_size):
                index = order[start : start + batch_size]
                out[index] = self.embed_batch([texts[i] for i in index], normalize).numpy()
                progress.advance(bar, len(index))
        return out

    @torch.inference_mode()
    def embed_batch(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        batch = self.tokenize(texts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            vectors = self.forward(batch)
        return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled, unnormalised vectors (batch, hidden) of a tokenized batch, with the graph when training."""
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state  # (batch, seq, hidden)
        if self.pooling == "mean":  # a sum over many tokens: in fp32
            hidden = hidden.float()
        return pool(hidden, batch["attention_mask"], self.pooling).float()

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.config.to_json_string(), self.pooling, self.max_length, self.query_template,
                             str(self.dtype)]).encode())
        for p in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            h.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
        return h.hexdigest()[:16]


def _is_causal(config) -> bool:
    return any(a.endswith("ForCausalLM") for a in (config.architectures or []))


def _resolve_dtype(dtype: str) -> torch.dtype:
    # Exact fp32 by default on CPU (scores comparable with published ones); bf16 when asked for.
    return torch.bfloat16 if dtype == "bf16" else torch.float32


def _sentence_transformers_settings(path: Path) -> dict:
    """Pooling and max length from a sentence-transformers folder, if this is one."""
    settings: dict = {}
    pooling_cfg = path / "1_Pooling" / "config.json"
    if pooling_cfg.is_file():
        cfg = json.loads(pooling_cfg.read_text())
        for key, name, mode in (("pooling_mode_lasttoken", "lasttoken", "last"), ("pooling_mode_cls_token", "cls", "cls"),
                                ("pooling_mode_mean_tokens", "mean", "mean")):
            if cfg.get(key) or cfg.get("pooling_mode") == name:  # flags before sentence-transformers 6, a name since
                settings["pooling"] = mode
                break
    st_cfg, tok_cfg = path / "sentence_bert_config.json", path / "tokenizer_config.json"
    if st_cfg.is_file():  # sentence-transformers < 6 keeps the length here, 6 in the tokenizer's config
        settings["max_length"] = json.loads(st_cfg.read_text()).get("max_seq_length")
        if not settings["max_length"] and tok_cfg.is_file():
            settings["max_length"] = json.loads(tok_cfg.read_text()).get("model_max_length")
    return settings
