"""The trained model as a directory that loads everywhere: transformers (merged weights), peft (adapter/),
sentence-transformers (modules, last-token pooling, normalisation and a "query" prompt), synthembed evaluate/serve.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from tokenizers import processors

from synthembed.formats.matryoshka import FILE as MATRYOSHKA_FILE
from synthembed.formats.matryoshka import write_dims
from synthembed.model.embedder import HFEmbedder, format_query
from synthembed.train.config import TrainConfig
from synthembed.train.loss import resolve_matryoshka

log = logging.getLogger(__name__)
MODEL = "model"


def export(accelerator: Accelerator, embedder: HFEmbedder, cfg: TrainConfig, history: list[dict]) -> Path:
    out = Path(cfg.output_dir) / MODEL
    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    # Partitioned weights (ZeRO-3, FSDP) are gathered with every rank taking part; rank 0 alone saves them.
    state = accelerator.get_state_dict(embedder.model) if sharded else None
    if accelerator.is_main_process:
        with _without_zero3_init(accelerator):  # this rank alone builds and loads models: plain, not partitioned
            _save(accelerator, embedder, cfg, history, out, state)
    accelerator.wait_for_everyone()
    return out


def _save(accelerator: Accelerator, embedder: HFEmbedder, cfg: TrainConfig, history: list[dict], out: Path,
          state: dict | None) -> None:
    if state is not None:  # the weights are spread over the processes: rebuild the model whole on this one
        from synthembed.train.backbone import build_embedder

        gathered = build_embedder(cfg.model_copy(update={"gradient_checkpointing": False}))
        gathered.model.load_state_dict(state)
        embedder = gathered
    model = accelerator.unwrap_model(embedder.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: keep the adapter, ship merged weights
        model.save_pretrained(out / "adapter")
        model = merge_lora(model)
    model.save_pretrained(out)
    embedder.model = model
    tokenizer = copy.deepcopy(embedder.tokenizer)
    tokenizer.chat_template = None  # else sentence-transformers 6 wraps every text in the chat format
    if embedder.pooling == "last":
        append_eos(tokenizer)
    tokenizer.save_pretrained(out)
    write_sentence_transformers(out, embedder, cfg)
    (out / "training_history.json").write_text(json.dumps(history))
    dims = [d for d, _ in resolve_matryoshka(cfg.matryoshka_dims, cfg.matryoshka_weights, embedder.dim) or []]
    if dims:
        write_dims(out, dims)
    write_card(out, cfg, history, embedder.query_template, dims)
    log.info("wrote %s", out)


@contextlib.contextmanager
def _without_zero3_init(accelerator: Accelerator):
    """transformers loads under ZeRO-3 partitioning (every rank taking part) while accelerate's DeepSpeed config is
    registered with it, even with zero3_init off: unregister it while this rank alone builds a model."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        yield
        return
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if plugin.dschf is not None:
            set_hf_deepspeed_config(plugin.dschf)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA merged in fp32 (adapted weights and adapters upcast, one layer at a time), then cast back to the
    backbone's dtype: merged in bf16 (e.g. adapters gathered from a bf16 DeepSpeed engine), B @ A would be rounded
    before the sum and the sum again, losing the small deltas."""
    from peft.tuners.lora import LoraLayer

    dtype = next(p.dtype for name, p in model.named_parameters() if "lora_" not in name)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.float()
    return model.merge_and_unload().to(dtype)


def append_eos(tokenizer) -> None:
    """Make the saved tokenizer append EOS (after truncation) so that sentence-transformers, which tokenizes
    with the tokenizer alone, pools at the same token as training did."""
    if not getattr(tokenizer, "is_fast", False):
        log.warning("slow tokenizer: the exported sentence-transformers model will not append EOS")
        return
    bos = tokenizer.bos_token if tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id] else None
    eos = tokenizer.eos_token
    single = f"{bos} $A {eos}" if bos else f"$A {eos}"
    specials = [(t, tokenizer.convert_tokens_to_ids(t)) for t in {bos, eos} if t]
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single=single, special_tokens=specials)


def write_sentence_transformers(out: Path, embedder: HFEmbedder, cfg: TrainConfig) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    pooling = {"last": "lasttoken", "mean": "mean", "cls": "cls"}[embedder.pooling]
    # "Instruct: {task}\nQuery: " as a plain prefix, for every pooling: the query text follows it
    if not embedder.query_template.endswith("{text}"):
        raise ValueError(f"query template {embedder.query_template!r} must end with {{text}} to be saved as a "
                         "sentence-transformers prompt")
    prompt = format_query("", cfg.query_instruction, embedder.query_template)
    transformer = Transformer(str(out), max_seq_length=max(cfg.query_max_length, cfg.doc_max_length))
    st = SentenceTransformer(modules=[transformer, Pooling(embedder.dim, pooling_mode=pooling), Normalize()],
                             prompts={"query": prompt, "document": ""}, device="cpu")
    st.save(str(out))


def base_model_id(name: str) -> str:
    """The card's base_model: the hub id behind a short name, a directory's absolute path, else the id as given."""
    from synthembed.formats.offline import HUB_IDS

    if name in HUB_IDS:
        return HUB_IDS[name]
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def write_card(out: Path, cfg: TrainConfig, history: list[dict], query_template: str,
               matryoshka_dims: list[int] | None = None) -> None:
    last = history[-1] if history else {}
    shape = query_template.format(instruction="{task}", text="{query}").replace("\n", "\\n")
    data = "\n".join(f"- `{s.path}` (weight {s.weight})" for s in cfg.data)
    recipe = cfg.model_dump(mode="json", exclude={"data", "output_dir"})
    (out / "README.md").write_text(
        f"---\nlibrary_name: sentence-transformers\nbase_model: {json.dumps(base_model_id(cfg.model))}\ntags: [sentence-transformers, "
        f"feature-extraction, synthembed]\n---\n\n# Text embeddings from {cfg.model}\n\n"
        f"Contrastively fine-tuned with synthembed (InfoNCE, tau {cfg.tau}, "
        f"{'LoRA r' + str(cfg.lora.r) if cfg.lora else 'full fine-tuning'}).\n\n## Use\n\n```python\n"
        "from sentence_transformers import SentenceTransformer\n\nmodel = SentenceTransformer(PATH)\n"
        'q = model.encode(["how do vaccines work"], prompt_name="query")\n'
        'd = model.encode(["Vaccines train the immune system ..."])\n```\n\n'
        f"Queries take `{shape}` (documents take no prefix); the saved `query` prompt's task is "
        f"\"{cfg.query_instruction}\": pass your own task's instruction for other tasks.\n\n{matryoshka_section(matryoshka_dims)}## Data\n\n{data}\n\n## Training\n\n{len(history)} steps, final loss "
        f"{last.get('loss', float('nan')):.4f}.\n\n```json\n{json.dumps(recipe, indent=1)}\n```\n\n"
        f"{SCORES}\n\nNot evaluated yet: `synthembed evaluate --model PATH --task ...` writes them.\n")


def matryoshka_section(dims: list[int] | None) -> str:
    """How to use the trained Matryoshka dims; empty for a model trained on the full size only."""
    if not dims:
        return ""
    listed = ", ".join(str(d) for d in dims)
    return (f"## Matryoshka dimensions\n\nTrained to be used cut to its first {listed} dimensions (the loss summed "
            "over each, as sentence-transformers' MatryoshkaLoss), re-normalised after the cut: smaller vectors "
            f"at some loss of quality.\n\n```python\nmodel = SentenceTransformer(PATH, truncate_dim={dims[0]})\n```"
            f"\n\n`synthembed serve` takes OpenAI's `dimensions` (any 1 to the full size; these were trained), "
            f"`synthembed evaluate --dims {','.join(str(d) for d in dims)}` scores each. They are also in "
            f"`{MATRYOSHKA_FILE}`.\n\n")


SCORES = "## Scores"


def add_scores(model_dir: Path, results: list[dict]) -> None:
    """Replace the card's score section with a table of evaluation results."""
    card = Path(model_dir) / "README.md"
    if not card.is_file():
        return
    rows = "\n".join(f"| {r['task_name']} | {r['task_type']} | {100 * r['main_score']:.2f} |" for r in results)
    head = card.read_text().split(SCORES)[0]
    card.write_text(f"{head}{SCORES}\n\n| task | type | main score (x100) |\n|---|---|---:|\n{rows}\n")
