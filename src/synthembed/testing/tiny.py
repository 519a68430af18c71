"""Tiny random models with real tokenizers, built offline in a second, for tests (hidden 64, 2 layers)."""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ["<pad>", "<s>", "<|end|>", "<|user|>", "<|assistant|>", "[CLS]", "[SEP]", "[UNK]"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def char_tokenizer(padding_side: str = "left", **special):
    """A character-level fast tokenizer (a real `tokenizers` BPE with no merges) with a chat template."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(SPECIALS + CHARS)}, merges=[], unk_token="[UNK]"))
    tk.add_special_tokens(SPECIALS)
    tk.decoder = decoders.Fuse()
    tokens = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "<|end|>", "unk_token": "[UNK]", **special}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, padding_side=padding_side, **tokens)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_decoder(path: Path, padding_side: str = "left", seed: int = 0) -> Path:
    """A 2-layer, width-64 Llama causal LM and its tokenizer, saved to `path`."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(SPECIALS) + len(CHARS), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model.save_pretrained(path)
    char_tokenizer(padding_side).save_pretrained(path)
    return Path(path)


def tiny_encoder(path: Path, seed: int = 0) -> Path:
    """A 2-layer, width-64 BERT and a tokenizer that wraps texts in [CLS] ... [SEP], saved to `path`."""
    from tokenizers import processors
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(SPECIALS) + len(CHARS), hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512, pad_token_id=0)
    BertModel(config).save_pretrained(path)
    tokenizer = char_tokenizer("right", cls_token="[CLS]", sep_token="[SEP]")
    cls_id, sep_id = SPECIALS.index("[CLS]"), SPECIALS.index("[SEP]")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.save_pretrained(path)
    return Path(path)
