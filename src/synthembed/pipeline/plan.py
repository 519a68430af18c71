"""`synthembed pipeline --dry-run`: validate a config and print what it would do and cost, running nothing.

Token counts of prompts come from the prompts themselves (rendered for a sample of the run's items, characters / 4);
reply lengths are the means of a GPT-4-class generator's replies to these prompts (the shared synthetic set);
memory follows the usual accounting for LoRA with gradient checkpointing (weights, plus one checkpointed hidden
state per layer and token, plus one layer's working activations for a chunk).
"""

from __future__ import annotations

import math
from pathlib import Path

from synthembed.pipeline.run import PipelineConfig

REPLY_TOKENS = {"short-long": 400, "long-short": 70, "short-short": 35, "long-long": 600, "sts": 80, "bitext": 70}
BRAINSTORM_TOKENS = 600  # ~20 task definitions of ~30 tokens
SAMPLE = 2000
# Shapes of well-known backbones, for planning without downloading their configs:
# (parameters, hidden size, layers, intermediate size)
KNOWN_SHAPES = {
    "mistralai/Mistral-7B-v0.1": (7.24e9, 4096, 32, 14336),
    "intfloat/e5-mistral-7b-instruct": (7.11e9, 4096, 32, 14336),
    "meta-llama/Llama-2-7b-hf": (6.74e9, 4096, 32, 11008),
    "Qwen/Qwen2.5-7B": (7.62e9, 3584, 28, 18944),
}


def plan(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """(stage, what it will do) rows."""
    return [("generate", _generate(cfg)), ("split", _split(cfg)), ("train", _train(cfg)),
            ("evaluate", _evaluate(cfg)), ("output", f"{cfg.output_dir}/report.md")]


def _generate(cfg: PipelineConfig) -> str:
    from synthembed.generate.plan import brainstorm_requests, plan_items

    gen = cfg.generate
    brainstorm = list(brainstorm_requests(gen))
    sample = gen.model_copy(update={"num_examples": min(gen.num_examples, SAMPLE)})
    items = plan_items(sample, {name: ["a task definition of about twenty words " * 2] for name in gen.families})
    scale = gen.num_examples / max(len(items), 1)
    tokens_in = scale * sum(len(i.request.prompt) / 4 for i in items) + sum(len(r.prompt) / 4 for *_, r in brainstorm)
    tokens_out = scale * sum(min(REPLY_TOKENS[i.family], gen.max_tokens) for i in items)
    tokens_out += len(brainstorm) * min(BRAINSTORM_TOKENS, gen.max_tokens)
    price = gen.resolved_price()
    cost = f"${(tokens_in * price.input + tokens_out * price.output) / 1e6:,.0f}" if price else "unknown price"
    limit = f", stops at ${gen.max_cost:,.0f}" if gen.max_cost else ""
    return (f"{gen.backend} `{gen.model}`: {len(brainstorm):,} brainstorm + {gen.num_examples:,} example requests, "
            f"~{tokens_in / 1e6:,.1f}M tokens in + ~{tokens_out / 1e6:,.1f}M out, ~{cost}{limit}")


def _split(cfg: PipelineConfig) -> str:
    held = f"{cfg.holdout:.0%}" if cfg.holdout < 1 else f"{int(cfg.holdout)}"
    return f"{held} of the kept examples held out as a retrieval task (BEIR layout)"


def _train(cfg: PipelineConfig) -> str:
    tr = cfg.train
    generated = (cfg.generate.output_dir, cfg.output_dir / "generate")
    extra = sum(_rows(s.path) * s.weight for s in tr.data if Path(s.path) not in generated)
    kept = cfg.generate.num_examples  # at most: validation drops some
    examples = (kept * (1 - cfg.holdout) if cfg.holdout < 1 else max(kept - cfg.holdout, 0)) + extra
    per_epoch = max(math.ceil(examples / tr.batch_size), 1)
    length = (f"{tr.max_steps:,} steps (max_steps: ~{tr.max_steps / per_epoch:.1f} epochs)" if tr.max_steps
              else f"{tr.epochs:g} epoch(s): ~{math.ceil(tr.epochs * per_epoch):,} steps")
    recipe = f"LoRA r{tr.lora.r}" if tr.lora else "full fine-tuning"
    chunk = f", gradient cache chunks of {tr.chunk_size}" if tr.chunk_size else ""
    return (f"`{tr.model}`, {recipe}, batch {tr.batch_size}{chunk}, lr {tr.lr:g}, {length} over "
            f"~{examples:,.0f} examples; {_memory(tr)}")


def _memory(tr) -> str:
    shape = _shape(tr.model)
    if shape is None:
        return "memory: unknown backbone shape"
    params, hidden, layers, inter = shape
    length = max(tr.query_max_length, tr.doc_max_length)
    chunk = tr.chunk_size or tr.batch_size * 2  # queries + positives (+ negatives) per forward
    bytes_ = 2  # bf16
    weights = params * bytes_ if tr.lora else params * (bytes_ + 12)  # full FT: fp32 master + Adam states
    checkpoints = chunk * length * hidden * layers * bytes_ if tr.gradient_checkpointing else 0
    working = chunk * length * (10 * hidden + 3 * inter) * bytes_ * (1 if tr.gradient_checkpointing else layers)
    gib = (weights + checkpoints + working) / 2**30
    return (f"GPU memory ~{gib:,.0f} GiB on one device before sharding (weights {weights / 2**30:,.0f} GiB; "
            f"ZeRO-3/FSDP divide the weights by the number of GPUs)")


def _shape(model: str):
    if model in KNOWN_SHAPES:
        return KNOWN_SHAPES[model]
    try:
        from transformers import AutoConfig

        from synthembed.train.backbone import resolve_backbone

        config = AutoConfig.from_pretrained(resolve_backbone(model))
        config = getattr(config, "text_config", None) or config
        h, n, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
        params = config.vocab_size * h + n * (4 * h * h + 3 * h * inter)
        return params, h, n, inter
    except (OSError, ValueError, AttributeError):
        return None


def _rows(path: Path) -> int:
    file = Path(path) / "examples.jsonl" if Path(path).is_dir() else Path(path)
    return sum(1 for _ in open(file, encoding="utf-8")) if file.is_file() else 0


def _evaluate(cfg: PipelineConfig) -> str:
    names = ["HeldOut", *[t.name for t in cfg.evaluate.tasks]]
    return f"base `{cfg.train.model}` and the trained model on {len(names)} task(s): {', '.join(names)}"
