"""The paper's personalized passkey retrieval, generated in code: n people each get a document of identical filler
text with "{name}'s passkey is {number}. Remember it." hidden at a random depth; the query "What is {name}'s
passkey?" must retrieve that person's document among the n. Scored as top-1 accuracy per document length.

Lengths count the document's own tokens in the embedder's tokenizer (no special tokens). `synthembed evaluate`
refuses a length whose document (with the special tokens) does not fit the embedder's max_length, as the embedder
would truncate it and a passkey beyond the cut would be lost silently; longer contexts need a larger max_length,
and beyond the trained context a larger RoPE base (`model.rope.with_rope_theta` makes the model copy for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthembed.config import ConfigError
from synthembed.evaluate.cache import embed
from synthembed.model.protocol import Embedder

INSTRUCTION = "Given a question, retrieve the document that contains the passkey for the named person"
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena",
         "Mateo", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tomoko", "Umar", "Vera", "Wei", "Yara"]
LAST = ["Abbott", "Barros", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
        "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka"]


@dataclass
class PasskeyData:
    length_tokens: int
    names: list[str]
    passkeys: list[str]
    documents: list[str]  # documents[i] holds passkeys[i]
    queries: list[str]  # queries[i] asks for names[i]'s passkey


def passkey_sentence(name: str, passkey: str) -> str:
    return f"{name}'s passkey is {passkey}. Remember it."


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut(tokenizer, text: str, n_tokens: int) -> str:
    """The prefix of `text` that is its first n_tokens tokens (character offsets, so the text itself is kept)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        return text if n_tokens >= len(offsets) else text[: offsets[n_tokens - 1][1]] if n_tokens > 0 else ""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def make_passkey_data(tokenizer, length_tokens: int, n: int = 20, seed: int = 0) -> PasskeyData:
    """n documents of ~length_tokens tokens (within a few: tokens can merge where the passkey meets the filler)."""
    rng = np.random.default_rng([seed, length_tokens])
    pairs = [(f, l) for f in FIRST for l in LAST]
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} people")
    names = [f"{f} {l}" for f, l in (pairs[i] for i in rng.choice(len(pairs), n, replace=False))]
    passkeys = [str(k) for k in rng.choice(90000, n, replace=False) + 10000]  # distinct 5-digit numbers
    unit = _count(tokenizer, FILLER)
    long_filler = FILLER * (length_tokens // max(unit, 1) + 2)
    documents = []
    for name, key in zip(names, passkeys):
        sentence = passkey_sentence(name, key) + " "
        budget = length_tokens - _count(tokenizer, sentence)
        if budget < 1:
            raise ValueError(f"length {length_tokens} is too short for the passkey sentence")
        filler = _cut(tokenizer, long_filler, budget)
        # the passkey goes in at a sentence boundary at a uniformly random depth of the filler
        depth = int(rng.integers(0, len(filler) + 1))
        at = filler.rfind(". ", 0, depth)
        at = 0 if at < 0 else at + 2
        documents.append(filler[:at] + sentence + filler[at:])
    queries = [f"What is {name}'s passkey?" for name in names]
    return PasskeyData(length_tokens, names, passkeys, documents, queries)


def accuracy(embedder: Embedder, data: PasskeyData, instruction: str | None = INSTRUCTION,
             batch_size: int = 4, cache=None, show_progress: bool = False) -> float:
    """Top-1 accuracy of retrieving each person's document among all n by cosine similarity."""
    opts = dict(batch_size=batch_size, cache=cache, show_progress=show_progress)
    docs = embed(embedder, data.documents, "document", **opts)  # (n, dim)
    queries = embed(embedder, data.queries, "query", instruction, **opts)  # (n, dim)
    best = np.argmax(queries @ docs.T, axis=1)  # ties go to the first document
    return float(np.mean(best == np.arange(len(data.queries))))


def check_lengths_fit(embedder: Embedder, name: str, lengths) -> None:
    """Refuse lengths the embedder would truncate (its special tokens count too); embedders that do not say
    their max_length or how they tokenize are not checked."""
    max_length, token_ids = getattr(embedder, "max_length", None), getattr(embedder, "token_ids", None)
    if not max_length or token_ids is None:
        return
    special = len(token_ids([""])[0])  # BOS/EOS and the like, around every document
    too_long = [length for length in lengths if length + special > max_length]
    if too_long:
        raise ConfigError(f"Passkey task {name!r}: length {too_long[0]} ({too_long[0] + special} tokens with the "
                          f"special ones) is above the model's max_length {max_length}, so documents would be "
                          f"truncated and passkeys lost; raise evaluate.max_length (--set max_length="
                          f"{too_long[0] + special}), with a larger RoPE base (--rope-theta) beyond the trained "
                          f"context")


def evaluate(embedder: Embedder, lengths=(256, 512, 1024), n: int = 20, seed: int = 0,
             instruction: str | None = INSTRUCTION, batch_size: int = 4, tokenizer=None, cache=None,
             show_progress: bool = False) -> dict:
    """{"main_score": mean accuracy over lengths, "accuracy_at_<len>": ...}; the tokenizer defaults to the
    embedder's own (`embedder.tokenizer`)."""
    tokenizer = tokenizer or getattr(embedder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("passkey lengths are in tokens: pass the embedder's tokenizer")
    out = {f"accuracy_at_{length}": accuracy(embedder, make_passkey_data(tokenizer, length, n, seed), instruction,
                                             batch_size, cache, show_progress) for length in lengths}
    return {"main_score": float(np.mean(list(out.values()))), **out}


def evaluate_task(embedder: Embedder, task, instruction: str | None = INSTRUCTION, *, batch_size: int = 4,
                  cache=None, show_progress: bool = False) -> dict:
    """A `Passkey` task of `synthembed evaluate` (its spec carries `lengths` and `n`), called like the other task
    types' evaluate(); the data is generated here, as it needs the embedder's tokenizer."""
    return evaluate(embedder, task.lengths, task.n, instruction=instruction, batch_size=batch_size, cache=cache,
                    show_progress=show_progress)
