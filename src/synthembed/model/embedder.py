"""Hugging Face embedders: decoder LLMs with EOS + last-token pooling (the paper's model), encoders with mean or
CLS pooling, and sentence-transformers folders (their pooling, length, normalisation and query prompt read from
disk). Weights are held in the compute dtype on the chosen device (bf16 on a GPU, exact fp32 on the CPU unless
bf16 is asked for); texts are tokenized once and batched by token length so that padding is small.
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

from synthembed.formats.instructions import QUERY_TEMPLATE, format_query
from synthembed.model.device import Device, Dtype, resolve_device, resolve_dtype
from synthembed.model.pooling import pool
from synthembed.model.protocol import Role

log = logging.getLogger(__name__)

Pooling = Literal["last", "mean", "cls"]
NO_INSTRUCTION = "{text}"


class HFEmbedder:
    """Queries: with an instruction, `query_template` (the paper's `Instruct: {instruction}\\nQuery: {text}`, for
    any pooling); without one, the folder's saved sentence-transformers `query` prompt, if any, else the bare text.
    An off-the-shelf sentence-transformers folder with no saved query prompt (e.g. all-MiniLM-L6-v2) takes no
    instruction at all, as mteb runs it."""

    def __init__(
        self,
        path: str | Path,
        pooling: Pooling | None = None,  # None: last for decoders, the folder's setting or mean for encoders
        max_length: int | None = None,
        query_template: str | None = None,  # None: the paper's, or no instruction for a prompt-less ST folder
        dtype: Dtype = "auto",
        name: str | None = None,
        model: torch.nn.Module | None = None,  # an in-memory model (e.g. one being trained), used as it is
        tokenizer=None,
        device: Device | torch.device = "cpu",  # auto | cpu | cuda | cuda:N (ignored with an in-memory model)
        query_prompt: str | None = None,  # None: the folder's saved "query" prompt, if any
    ):
        self.path = Path(path)
        self.name = name or self.path.name
        st = _sentence_transformers_settings(self.path)
        self.config = model.config if model is not None else AutoConfig.from_pretrained(self.path)
        self.decoder = bool(getattr(self.config, "is_decoder", False)) or _is_causal(self.config)
        self.pooling: Pooling = pooling or st.get("pooling") or ("last" if self.decoder else "mean")
        self.max_length = int(max_length or st.get("max_length") or 512)
        self.query_prompt = st.get("query_prompt", "") if query_prompt is None else query_prompt
        off_the_shelf = st.get("is_folder") and not self.query_prompt
        self.query_template = query_template or (NO_INSTRUCTION if off_the_shelf else QUERY_TEMPLATE)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model is None:
            self.device = resolve_device(device)
            self.dtype = resolve_dtype(dtype, self.device)
            model = _load_model(self.path, self.dtype, self.device)
        else:
            first = next(model.parameters())
            self.device, self.dtype = first.device, first.dtype
        self.model = model
        self.model.eval()
        self.tokens_encoded = 0  # tokens (after truncation, EOS included) that encode() has embedded
        self.fingerprint = self._fingerprint()

    # -- queries -------------------------------------------------------------------------------------------
    def format_query(self, text: str, instruction: str | None = None) -> str:
        """One query as this model embeds it (the same in encode, serve and sentence-transformers). Instruction
        None: the saved query prompt; "": the text as it is (e.g. queries already formatted)."""
        if instruction:
            return format_query(text, instruction, self.query_template)
        return self.query_prompt + text if instruction is None else text

    # -- tokenisation --------------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Unpadded token ids, truncated. For last-token pooling EOS is appended here (some tokenizers of
        transformers >= 5 silently drop it) after truncation, so the pooled position is always EOS."""
        tok, max_length = self.tokenizer, max_length or self.max_length
        ids = tok(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
        if self.pooling != "last":
            return ids
        eos = tok.eos_token_id
        return [(x if x and x[-1] == eos else x[: max_length - 1] + [eos]) for x in ids]  # EOS added once

    def pad(self, ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for row, x in enumerate(ids):
            span = slice(width - len(x), width) if left else slice(0, len(x))
            input_ids[row, span] = torch.tensor(x, dtype=torch.long)
            mask[row, span] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Token ids padded into a batch (the tokenizer's padding side)."""
        return self.pad(self.token_ids(texts, max_length))

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
            texts = [self.format_query(t, instruction) for t in texts]
        ids = self.token_ids(texts) if len(texts) else []
        self.tokens_encoded += sum(len(x) for x in ids)  # for throughput reports: nothing tokenized twice
        order = np.argsort([-len(x) for x in ids], kind="stable")  # length-sorted batches pad least
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with Progress(disable=not show_progress, transient=True) as progress:
            bar = progress.add_task(f"encode {self.name}", total=len(texts))
            for start in range(0, len(texts), batch_size):
                index = order[start : start + batch_size]
                out[index] = self._embed_ids([ids[i] for i in index], normalize).numpy()
                progress.advance(bar, len(index))
        return out

    def embed_batch(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """(len(texts), dim) float32 on the CPU, texts taken as they are (queries already formatted)."""
        return self._embed_ids(self.token_ids(texts), normalize)

    @torch.inference_mode()
    def _embed_ids(self, ids: Sequence[list[int]], normalize: bool) -> torch.Tensor:
        vectors = self.forward(self.pad(ids))
        vectors = torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
        return vectors.cpu()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled, unnormalised fp32 vectors (batch, hidden) of a tokenized batch, with the graph when training."""
        device = next(self.model.parameters()).device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
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
                             self.query_prompt, str(self.dtype)]).encode())
        for p in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            h.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
        return h.hexdigest()[:16]


def _load_model(path: Path, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Weights loaded straight in the compute dtype (no fp32 copy autocast on every forward), with SDPA on a GPU."""
    options = {"attn_implementation": "sdpa"} if device.type == "cuda" else {}
    try:
        model = AutoModel.from_pretrained(path, dtype=dtype, **options)
    except (ValueError, ImportError):  # an architecture without SDPA: its default attention
        model = AutoModel.from_pretrained(path, dtype=dtype)
    return model.to(device)


def _is_causal(config) -> bool:
    return any(a.endswith("ForCausalLM") for a in (config.architectures or []))


def _sentence_transformers_settings(path: Path) -> dict:
    """Pooling, max length and the saved query prompt of a sentence-transformers folder, if this is one."""
    settings: dict = {"is_folder": (path / "modules.json").is_file()}
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
    prompts_cfg = path / "config_sentence_transformers.json"
    if prompts_cfg.is_file():
        settings["query_prompt"] = (json.loads(prompts_cfg.read_text()).get("prompts") or {}).get("query") or ""
    return settings
