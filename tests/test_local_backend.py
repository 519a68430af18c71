"""LocalBackend on a tiny random Llama built here (fast), and on the real SmolLM2-135M (slow, downloads once)."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from synthembed.generate.backends.base import BackendError, ChatRequest
from synthembed.generate.backends.local import LocalBackend, drop_trailing_commas

CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer, width-64 Llama with a character-level tokenizer and a chat template, saved to disk."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    specials = ["<pad>", "<s>", "<|end|>", "<|user|>", "<|assistant|>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(specials + chars)}, merges=[]))
    tk.add_special_tokens(specials)
    tk.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(specials) + len(chars), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model.save_pretrained(path)
    return path


def run(coro):
    return asyncio.run(coro)


async def _complete_all(backend, requests):
    try:
        return await asyncio.gather(*(backend.complete(r) for r in requests))
    finally:
        await backend.aclose()


def test_concurrent_requests_share_generate_calls(tiny_model):
    backend = LocalBackend(str(tiny_model), batch_size=4, dtype="fp32")
    assert backend.max_concurrency == 8
    requests = [ChatRequest(f"question number {i}?", max_tokens=8, seed=i) for i in range(8)]
    done = run(_complete_all(backend, requests))
    assert sum(backend.batch_sizes) == 8
    assert len(backend.batch_sizes) == 2  # 8 requests queued at once, batch_size 4
    for c in done:
        assert c.tokens_in > 0 and 0 < c.tokens_out <= 8
        assert c.finish_reason in {"stop", "length"} and c.usage_from == "tokenizer"
    # tokens_in counts the prompt through the chat template (3 special tokens, 1 per character), no padding
    assert [c.tokens_in for c in done] == [len(r.prompt) + 3 for r in requests]


def test_same_seed_same_text_whatever_the_batch(tiny_model):
    requests = [ChatRequest("tell me something", temperature=1.0, max_tokens=24, seed=s) for s in (1, 2, 3)]
    batched = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32"), requests))
    alone = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32"), requests[:1]))
    again = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32"), requests[:1]))
    assert alone[0].text == again[0].text == batched[0].text  # each row draws from its own seeded generator
    assert len({c.text for c in batched}) == 3  # different seeds, different texts


def test_mixed_sampling_and_budgets_in_one_batch(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backend = LocalBackend(str(tiny_model), batch_size=8, dtype="fp32")
    requests = [ChatRequest("hello there", temperature=0.0, max_tokens=5),
                ChatRequest("a longer prompt than the first one", temperature=0.0, max_tokens=9),
                ChatRequest("sampled", temperature=0.7, top_p=0.5, max_tokens=3, seed=4)]
    done = run(_complete_all(backend, requests))
    assert backend.batch_sizes == [3]
    assert [c.tokens_out for c in done if c.finish_reason == "length"] == [
        r.max_tokens for r, c in zip(requests, done) if c.finish_reason == "length"]
    # temperature 0 is greedy: the same tokens as transformers' own greedy search on the prompt alone
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    for request, completion in zip(requests[:2], done[:2]):
        text = tok.apply_chat_template([{"role": "user", "content": request.prompt}], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**ids, max_new_tokens=request.max_tokens, do_sample=False)
        assert completion.text == tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_json_constraint_keeps_output_a_json_object(tiny_model):
    backend = LocalBackend(str(tiny_model), batch_size=8, dtype="fp32")
    requests = [ChatRequest("json please", max_tokens=48, seed=s, json_object=True) for s in range(6)]
    done = run(_complete_all(backend, requests))
    for c in done:
        assert c.text.lstrip().startswith("{")
        if c.finish_reason == "stop":
            assert isinstance(json.loads(c.text), dict)
    free = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32", constrained=False), requests))
    assert not all(c.text.lstrip().startswith("{") for c in free)  # the random model alone writes no JSON


@pytest.mark.parametrize("text, fixed", [
    ('{"a": "x",\n}', '{"a": "x"\n}'),
    ('{"a": [1, 2,], "b": {"c": "d",},}', '{"a": [1, 2], "b": {"c": "d"}}'),
    ('{"a": "q\\",}", "b": "\\\\",}', '{"a": "q\\",}", "b": "\\\\"}'),  # commas inside strings stay
    ('{"a": 1 , "b": [ ] }', '{"a": 1 , "b": [ ] }'),
])
def test_drop_trailing_commas(text, fixed):
    assert drop_trailing_commas(text) == fixed
    json.loads(fixed)


def test_closed_backend_refuses(tiny_model):
    backend = LocalBackend(str(tiny_model), dtype="fp32")
    run(backend.aclose())
    with pytest.raises(BackendError):
        run(backend.complete(ChatRequest("hi")))


@pytest.mark.slow
def test_smollm2_constrained_json():
    from synthembed.tasks.families import FAMILIES

    family = FAMILIES["short-long"]
    tasks = ["Retrieve recipes that answer a cooking question.", "Find forum posts that fix a programming error.",
             "Retrieve news articles about a sports team's transfers.", "Find hiking guides near a given city."]
    params = {name: values[0] for name, values in family.placeholders.items()} | {"language": "English"}
    requests = [ChatRequest(family.render(task, params), temperature=0.7, top_p=0.9, max_tokens=768, seed=i,
                            json_object=True) for i, task in enumerate(tasks)]
    done = run(_complete_all(LocalBackend("smollm2-135m", batch_size=4), requests))
    stopped = [c for c in done if c.finish_reason == "stop"]
    assert len(stopped) >= 3, [c.text[-200:] for c in done]
    for c in stopped:
        assert isinstance(json.loads(c.text), dict), c.text
