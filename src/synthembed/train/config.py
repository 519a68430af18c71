"""The training config: the paper's recipe by default (LoRA r16, tau 0.02, lr 1e-4, 100 warm-up steps, wd 0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from synthembed.config import Strict
from synthembed.data.pairs import SourceKind

DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


class DataSource(Strict):
    path: Path  # generate output (dir or examples.jsonl) or labeled JSONL {query, pos[], neg[], prompt}
    weight: float = Field(1.0, gt=0)  # copies per epoch: 2 = twice, 0.5 = a random half
    kind: SourceKind = "auto"


class Lora(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(Strict):
    model: str = "gemma-270m"  # short name, directory, or hub id when online
    pooling: Literal["last", "mean", "cls"] | None = None  # None: last for decoders, mean for encoders
    data: list[DataSource] = Field(default_factory=list)
    skip_bad_rows: bool = False  # count and skip rows with missing fields instead of stopping
    # each batch from one family or file (as sentence-transformers batches several datasets): in-batch negatives
    # of the same kind; False mixes them. Frontier set, lr 2e-4: STSBenchmark 70.66 -> 74.26 (bench/results)
    by_source: bool = True
    hard_negatives: int = Field(1, ge=0)  # per query, the first n of its negatives
    query_max_length: int = Field(512, ge=4)
    doc_max_length: int = Field(512, ge=4)
    pad_to_multiple_of: int | None = Field(None, ge=1)  # None: 8 on GPUs (tensor cores), 1 on CPUs (no gain measured)
    lora: Lora | None = Field(default_factory=Lora)  # None: full fine-tuning
    tau: float = Field(0.02, gt=0)
    # Matryoshka: the loss summed over embeddings cut to these leading dims ("full": the hidden size), ascending
    matryoshka_dims: list[int | Literal["full"]] | None = None
    matryoshka_weights: list[PositiveFloat] | None = None  # one per dim, default 1 each (as sentence-transformers)
    batch_size: int = Field(16, ge=1)  # global: summed over processes
    chunk_size: int | None = Field(None, ge=1)  # gradient cache chunk; None: plain
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    warmup_ratio_cap: float = Field(0.1, ge=0, le=1)  # warm-up at most this share of the run's steps
    weight_decay: float = Field(0.1, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    gradient_checkpointing: bool = True
    rope_theta: float | None = None  # long context: a larger RoPE base
    seed: int = 0
    output_dir: Path = Path("runs/train")
    save_every: int | None = Field(None, ge=1)  # steps between checkpoints (resumable); None: only at the end
    log_every: int = Field(1, ge=1)
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION  # the exported model's default "query" prompt
    threads: int | None = Field(None, ge=1)  # CPU threads (torch.set_num_threads)

    def pad_multiple(self, device_type: str) -> int:
        """Token lengths are padded to a multiple of this: the setting, else 8 on GPUs, 1 on CPUs."""
        return self.pad_to_multiple_of or (8 if device_type == "cuda" else 1)

    @field_validator("matryoshka_dims")
    @classmethod
    def _ascending_positive_dims(cls, dims):
        if dims is None:
            return dims
        if not dims:
            raise ValueError("give at least one dim, e.g. [64, 128, 256, full], or leave it unset")
        sizes = [d for d in dims if d != "full"]
        if any(d <= 0 for d in sizes):
            raise ValueError(f"dims must be positive, got {dims}")
        if sizes != sorted(set(sizes)) or "full" in dims[:-1]:
            raise ValueError(f"dims must be strictly ascending, \"full\" (the hidden size) last; got {dims}")
        return dims

    @model_validator(mode="after")
    def _one_weight_per_dim(self):
        weights, dims = self.matryoshka_weights, self.matryoshka_dims
        if weights is not None and (dims is None or len(weights) != len(dims)):
            raise ValueError(f"matryoshka_weights: {len(weights)} weights for matryoshka_dims {dims}; give one "
                             "weight per dim")
        return self

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        return "no" if value is False else value  # YAML reads a bare `no` as false
