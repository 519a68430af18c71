"""Checking an embeddings request body: every malformed field becomes an `APIError` (a 4xx in OpenAI's error
shape), never an exception from deeper down that would surface as a 500."""

from __future__ import annotations

import json

QUERY_TYPES, DOCUMENT_TYPES = {"query", "search_query"}, {"document", "passage", "search_document"}
TOKEN_IDS_REFUSED = (
    "input[{i}] is a list of token ids. Token ids from a client are usually another tokenizer's (LangChain's "
    "OpenAIEmbeddings sends tiktoken ids by default), and this model would embed them as garbage. Send the text "
    "instead (in LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False)), or start the server with "
    "--accept-token-ids to send ids from this model's own tokenizer.")


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested too deep to parse
        raise APIError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    return body


def resolve_model(requested, names: list[str]) -> str:
    """The served name a request asks for (the first one when it names none); 404 for any other, as OpenAI."""
    if requested is None:
        return names[0]
    if not isinstance(requested, str):
        raise APIError(400, "model must be a string.", "model")
    if requested not in names:
        raise APIError(404, f"The model {requested!r} does not exist; this server serves {names}.", "model",
                       "model_not_found")
    return requested


def parse_input(value, max_inputs: int, accept_token_ids: bool, vocab_size: int) -> tuple[list, bool]:
    """OpenAI's four input forms -> (items, True if they are token-id lists). Strings are checked to be
    non-empty, valid Unicode; token ids to lie in the vocabulary, and to be allowed at all."""
    items = [value] if isinstance(value, str) or _is_token_array(value) else value
    if not isinstance(items, list) or not items:
        raise APIError(400, "input must be a non-empty string or a non-empty list of strings.", "input")
    if len(items) > max_inputs:
        raise APIError(400, f"input has {len(items)} items; at most {max_inputs} per request.", "input")
    token_ids = _is_token_array(items[0])
    for i, item in enumerate(items):
        if token_ids and _is_token_array(item):
            _check_ids(i, item, accept_token_ids, vocab_size)
        elif not token_ids and isinstance(item, str):
            check_text(item, f"input[{i}]", "input")
        else:
            raise APIError(400, f"input[{i}] must be a string, or a list of token ids, like every other item.",
                           "input")
    return items, token_ids


def check_text(text: str, name: str, param: str) -> None:
    if not text.strip():
        raise APIError(400, f"{name} is empty.", param)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": no tokenizer can take it
        raise APIError(400, f"{name} is not valid Unicode text (it holds a lone surrogate).", param) from None


def _is_token_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


def _check_ids(i: int, ids: list[int], accept: bool, vocab_size: int) -> None:
    if not accept:
        raise APIError(400, TOKEN_IDS_REFUSED.format(i=i), "input", "token_ids_not_accepted")
    bad = next((v for v in ids if not 0 <= v < vocab_size), None)
    if bad is not None:
        raise APIError(400, f"input[{i}] holds token id {bad}, outside this model's vocabulary "
                            f"(0 to {vocab_size - 1}).", "input")


def is_query(body: dict) -> bool:
    kind = body.get("input_type")
    if kind is not None and (not isinstance(kind, str) or kind not in QUERY_TYPES | DOCUMENT_TYPES):
        raise APIError(400, f"input_type must be 'query' or 'document', not {kind!r}.", "input_type")
    instruction = body.get("instruction")
    if instruction is not None and (not isinstance(instruction, str) or kind in DOCUMENT_TYPES):
        raise APIError(400, "instruction must be a string and applies to queries only.", "instruction")
    if instruction is not None:
        check_text(instruction, "instruction", "instruction")
    return kind in QUERY_TYPES or instruction is not None


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own ids (e.g. [CLS] ... [SEP], or BOS)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []


def wrap_ids(ids: list[int], prefix: list[int], suffix: list[int], eos: int | None, max_length: int,
             truncate_last: bool) -> tuple[list[int], int]:
    """A text's token ids as the model sees them (special tokens, truncation, EOS for last-token pooling, as
    `HFEmbedder.tokenize` does for text) and the count before truncation."""
    full = prefix + ids + suffix
    needs_eos = truncate_last and full[-1] != eos
    count = len(full) + needs_eos
    if len(full) > max_length:
        full = prefix + ids[: max(0, max_length - len(prefix) - len(suffix))] + suffix
    if truncate_last and full[-1] != eos:
        full = full[: max_length - 1] + [eos]
    return full, count
