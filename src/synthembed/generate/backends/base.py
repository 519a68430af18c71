"""The one small interface every generation backend implements."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class ChatRequest:
    """One single-turn chat request; its hash (with the model name) keys the ledger."""

    prompt: str
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    json_object: bool = False  # ask the server for a JSON-object response format
    json_keys: tuple[str, ...] | None = None  # the object's keys, for backends that can enforce them
    json_list: int | None = None  # or: a list of this many strings (brainstorms), where it can be enforced

    @property
    def scaffold(self) -> list[str] | None:
        """The JSON around the string values, piece by piece, for backends that write it themselves."""
        if self.json_keys:
            first, *rest = [json.dumps(k) for k in self.json_keys]
            return ["{" + first + ': "', *(", " + k + ': "' for k in rest), "}"]
        if self.json_list:
            return ['["', *([', "'] * (self.json_list - 1)), "]"]
        return None

    def key(self, model: str) -> str:
        payload = json.dumps({"model": model, **asdict(self)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None = None
    usage_from: str = "server"  # "server" | "tokenizer" | "estimate"


class BackendError(RuntimeError):
    """A request that failed for good (after the backend's own retries)."""


class ServerUnreachable(BackendError):
    """The server never answered (refused or timed-out connections): no later request can do better."""


class Backend(Protocol):
    model: str
    max_concurrency: int  # how many requests the engine keeps in flight

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...
