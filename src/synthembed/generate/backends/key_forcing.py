"""Constrained decoding for small local models: the reply is forced into `{"k1": "...", "k2": "..."}` (an
example) or `["...", "...", ...]` (a brainstorm), as `ChatRequest.scaffold` describes.

The JSON scaffolding (brackets, keys, separators) is written by us token by token; the model only writes the
string values, from tokens that cannot end a string early or break JSON. A 135M model that rarely writes valid
JSON unaided then always returns the family's keys, and the cost per step is one masked fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class _Row:
    segment: int = 0  # index of the scaffolding piece being forced, or of the value being written after it
    position: int = 0  # next token within the forced piece; -1 while the model writes a value
    value_tokens: int = 0
    done: bool = False


@dataclass
class Vocabulary:
    """Per-token facts, computed once per tokenizer."""

    inside: torch.Tensor  # (vocab,) bool: may appear inside a JSON string value
    closing: torch.Tensor  # (vocab,) bool: a string-safe text followed by one '"' that ends the value
    closing_ids: set[int] = field(default_factory=set)

    @classmethod
    def build(cls, tokenizer, vocab_size: int) -> Vocabulary:
        inside = torch.zeros(vocab_size, dtype=torch.bool)
        closing = torch.zeros(vocab_size, dtype=torch.bool)
        special = set(tokenizer.all_special_ids)
        for token_id in range(min(vocab_size, len(tokenizer))):
            if token_id in special:
                continue
            text = tokenizer.decode([token_id])
            if text and _safe(text):
                inside[token_id] = True
            elif text.endswith('"') and _safe(text[:-1]):
                closing[token_id] = True
        return cls(inside, closing, set(torch.nonzero(closing).flatten().tolist()))


def _safe(text: str) -> bool:
    return '"' not in text and "\\" not in text and all(ord(c) >= 32 for c in text)


class KeyForcing:
    """A transformers logits processor for one batch; row r follows `scaffolds[r]` (None: unconstrained)."""

    def __init__(self, tokenizer, vocab: Vocabulary, scaffolds: list[list[str] | None], prompt_len: int,
                 eos_id: int, budgets: list[int]):
        self.vocab, self.prompt_len, self.eos_id = vocab, prompt_len, eos_id
        # per row: the forced token ids of each piece
        self.pieces = [[tokenizer(t, add_special_tokens=False)["input_ids"] for t in s] if s else None
                       for s in scaffolds]
        self.rows = [_Row() for _ in scaffolds]
        # Each value gets an equal share of the row's token budget and is then closed, so a rambling model
        # still returns a complete object instead of one cut off by max_tokens.
        self.caps = [max(4, (b - sum(map(len, p)) - 1) // (len(p) - 1) - 1) if p else 0
                     for p, b in zip(self.pieces, budgets)]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_len
        out = torch.full_like(scores, float("-inf"))
        for r, row in enumerate(self.rows):
            if self.pieces[r] is None:
                out[r] = scores[r]
                continue
            if generated > 0:
                self._advance(row, self.pieces[r], int(input_ids[r, -1]))
            if row.done:
                out[r, self.eos_id] = 0.0
            elif row.position >= 0:
                token = self.pieces[r][row.segment][row.position]
                out[r, token] = 0.0
            else:
                if row.value_tokens >= self.caps[r]:
                    allowed = self.vocab.closing
                else:
                    allowed = self.vocab.inside | self.vocab.closing if row.value_tokens else self.vocab.inside
                out[r] = torch.where(allowed[: scores.shape[1]], scores[r], out[r])
        return out

    def _advance(self, row: _Row, pieces: list[list[int]], last: int) -> None:
        """Move a row's state past the token it just emitted."""
        if row.done:
            return
        if row.position >= 0:  # forcing scaffolding
            row.position += 1
            if row.position == len(pieces[row.segment]):
                if row.segment == len(pieces) - 1:
                    row.done = True
                else:
                    row.position, row.value_tokens = -1, 0
        elif last in self.vocab.closing_ids:  # the value just ended: force the next scaffolding piece
            row.segment, row.position = row.segment + 1, 0
        else:
            row.value_tokens += 1
