"""LocalBackend on a tiny random Llama built here (fast), and on the real SmolLM2-135M (slow, downloads once)."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from synthembed.generate.backends.base import BackendError, ChatRequest
from synthembed.generate.backends.local import LocalBackend
from synthembed.testing.tiny import tiny_decoder



@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer, width-64 Llama with a character-level tokenizer and a chat template, saved to disk."""
    return tiny_decoder(tmp_path_factory.mktemp("tiny-llama"))


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


def test_key_forcing_gives_an_object_with_exactly_the_keys(tiny_model):
    backend = LocalBackend(str(tiny_model), batch_size=8, dtype="fp32")
    requests = [ChatRequest("json please", max_tokens=60, seed=s, json_keys=("a", "b")) for s in range(6)]
    requests.append(ChatRequest("free text", max_tokens=20, seed=9))  # an unconstrained row in the same batch
    done = run(_complete_all(backend, requests))
    assert backend.batch_sizes == [7]
    assert all(c.text.startswith('{"a": "') for c in done[:6])
    # each value gets a share of max_tokens and is then closed: every row ends as a complete object
    assert all(c.finish_reason == "stop" and c.tokens_out <= 60 for c in done[:6])
    for c in done[:6]:
        assert list(json.loads(c.text)) == ["a", "b"] and all(json.loads(c.text).values())
    assert not done[6].text.startswith("{")
    free = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32", constrained=False), requests[:6]))
    assert not any(c.text.startswith('{"a": "') for c in free)  # the random model alone writes no JSON


def test_list_forcing_gives_the_asked_number_of_strings(tiny_model):
    backend = LocalBackend(str(tiny_model), batch_size=4, dtype="fp32")
    requests = [ChatRequest("brainstorm", max_tokens=40, seed=s, json_list=3) for s in range(4)]
    done = run(_complete_all(backend, requests))
    assert all(c.finish_reason == "stop" for c in done)
    assert all(len(items) == 3 and all(items) for items in map(json.loads, (c.text for c in done)))


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
    requests = [ChatRequest(family.render(task, params), temperature=0.7, top_p=0.9, max_tokens=384, seed=i,
                            json_object=True, json_keys=family.keys) for i, task in enumerate(tasks)]
    done = run(_complete_all(LocalBackend("smollm2-135m", batch_size=4), requests))
    assert all(c.text.startswith('{"user_query": "') for c in done)
    for c in (c for c in done if c.finish_reason == "stop"):
        assert tuple(json.loads(c.text)) == family.keys, c.text


def test_repetition_penalty_breaks_greedy_loops_and_keys_the_ledger_apart(tiny_model):
    """A random tiny model decoding greedily repeats itself; the penalty must reduce repeated tokens, and the two
    settings must not share ledger entries."""
    requests = [ChatRequest(f"say {w}", temperature=0.0, max_tokens=48, seed=0) for w in ("a", "bb", "ccc")]
    plain = run(_complete_all(LocalBackend(str(tiny_model), dtype="fp32"), requests))
    penalised_backend = LocalBackend(str(tiny_model), dtype="fp32", repetition_penalty=2.0)
    penalised = run(_complete_all(penalised_backend, requests))

    def repeats(text: str) -> int:
        return len(text) - len(set(text))

    assert sum(map(repeats, (c.text for c in penalised))) < sum(map(repeats, (c.text for c in plain)))
    assert requests[0].key(penalised_backend.model) != requests[0].key(LocalBackend(str(tiny_model)).model)
