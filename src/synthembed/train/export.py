"""The trained model as a directory that loads everywhere: transformers (merged weights), peft (adapter/),
sentence-transformers (modules, last-token pooling, normalisation and a "query" prompt), synthembed evaluate/serve.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import DistributedType
from tokenizers import processors

from synthembed.model.embedder import HFEmbedder, format_query
from synthembed.train.config import TrainConfig

log = logging.getLogger(__name__)
MODEL = "model"


def export(accelerator: Accelerator, embedder: HFEmbedder, cfg: TrainConfig, history: list[dict]) -> Path:
    out = Path(cfg.output_dir) / MODEL
    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    state = accelerator.get_state_dict(embedder.model) if sharded else None  # gathered: every rank takes part
    if accelerator.is_main_process:
        if sharded:  # the weights are spread over the processes: rebuild the model whole on this one
            from synthembed.train.model import build_embedder

            gathered = build_embedder(cfg.model_copy(update={"gradient_checkpointing": False}))
            gathered.model.load_state_dict(state)
            embedder = gathered
        model = accelerator.unwrap_model(embedder.model)
        if hasattr(model, "merge_and_unload"):  # LoRA: keep the adapter, ship merged weights
            model.save_pretrained(out / "adapter")
            model = model.merge_and_unload()
        model.save_pretrained(out)
        embedder.model = model
        tokenizer = copy.deepcopy(embedder.tokenizer)
        tokenizer.chat_template = None  # else sentence-transformers 6 wraps every text in the chat format
        if embedder.pooling == "last":
            append_eos(tokenizer)
        tokenizer.save_pretrained(out)
        write_sentence_transformers(out, embedder, cfg)
        (out / "training_history.json").write_text(json.dumps(history))
        write_card(out, cfg, history)
        log.info("wrote %s", out)
    accelerator.wait_for_everyone()
    return out


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
    # "Instruct: {task}\nQuery: " as a plain prefix: the query text follows it
    prompt = format_query("", cfg.query_instruction, embedder.query_template) if embedder.pooling == "last" else ""
    transformer = Transformer(str(out), max_seq_length=max(cfg.query_max_length, cfg.doc_max_length))
    st = SentenceTransformer(modules=[transformer, Pooling(embedder.dim, pooling_mode=pooling), Normalize()],
                             prompts={"query": prompt, "document": ""}, device="cpu")
    st.save(str(out))


def write_card(out: Path, cfg: TrainConfig, history: list[dict]) -> None:
    last = history[-1] if history else {}
    data = "\n".join(f"- `{s.path}` (weight {s.weight})" for s in cfg.data)
    recipe = cfg.model_dump(mode="json", exclude={"data", "output_dir"})
    (out / "README.md").write_text(
        f"---\nlibrary_name: sentence-transformers\nbase_model: {cfg.model}\ntags: [sentence-transformers, "
        f"feature-extraction, synthembed]\n---\n\n# Text embeddings from {cfg.model}\n\n"
        f"Contrastively fine-tuned with synthembed (InfoNCE, tau {cfg.tau}, "
        f"{'LoRA r' + str(cfg.lora.r) if cfg.lora else 'full fine-tuning'}).\n\n## Use\n\n```python\n"
        "from sentence_transformers import SentenceTransformer\n\nmodel = SentenceTransformer(PATH)\n"
        'q = model.encode(["how do vaccines work"], prompt_name="query")\n'
        'd = model.encode(["Vaccines train the immune system ..."])\n```\n\n'
        f"Queries take \"Instruct: {{task}}\\nQuery: {{query}}\"; the default query prompt's task is "
        f"\"{cfg.query_instruction}\".\n\n## Data\n\n{data}\n\n## Training\n\n{len(history)} steps, final loss "
        f"{last.get('loss', float('nan')):.4f}.\n\n```json\n{json.dumps(recipe, indent=1)}\n```\n\n"
        f"{SCORES}\n\nNot evaluated yet: `synthembed evaluate --model PATH --task ...` writes them.\n")


SCORES = "## Scores"


def add_scores(model_dir: Path, results: list[dict]) -> None:
    """Replace the card's score section with a table of evaluation results."""
    card = Path(model_dir) / "README.md"
    if not card.is_file():
        return
    rows = "\n".join(f"| {r['task_name']} | {r['task_type']} | {100 * r['main_score']:.2f} |" for r in results)
    head = card.read_text().split(SCORES)[0]
    card.write_text(f"{head}{SCORES}\n\n| task | type | main score (x100) |\n|---|---|---:|\n{rows}\n")
