"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp server, TGI."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import time

import aiohttp

from synthembed.generate.backends.base import BackendError, ChatRequest, Completion, ServerUnreachable

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Connection attempts before the server has answered once: refusals then mean a wrong URL or a server that is down,
# and the run stops with a clear message instead of retrying every request for minutes.
FIRST_CONTACT_ATTEMPTS = 3


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ):
        self.model = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.json_supported = True  # set to False once the server refuses response_format
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.answered = False  # whether the server has sent any HTTP response yet
        key = os.environ.get(api_key_env, "")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 10.0))
        self.session: aiohttp.ClientSession | None = None  # made on first use, inside the running event loop

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()

    def _body(self, request: ChatRequest) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_object and self.json_supported:
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        if self.session is None:  # aiohttp's pool stays cheap at hundreds of connections (httpcore's does not)
            connector = aiohttp.TCPConnector(limit=self.max_concurrency)
            self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout, connector=connector)
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            try:
                async with self.session.post(self.url, json=self._body(request)) as response:
                    status, text = response.status, await response.text(errors="replace")
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
                last_error = f"{type(err).__name__}: {err}"
                if not self.answered and attempt + 1 >= min(FIRST_CONTACT_ATTEMPTS, self.max_retries + 1):
                    raise ServerUnreachable(f"cannot reach the server at {self.base_url}: {last_error}") from None
                await self._sleep(attempt, None)
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                last_error = f"{type(err).__name__}: {err}"
                await self._sleep(attempt, None)
                continue
            self.answered = True
            if status == 200:
                try:
                    return _completion(text, request)
                except BackendError as err:  # e.g. a proxy's HTML page: retried like a 5xx
                    last_error = str(err)
                    await self._sleep(attempt, None)
                    continue
            if status == 400 and self.json_supported and "response_format" in text:
                log.warning("server does not support response_format; continuing without JSON mode")
                self.json_supported = False
                continue
            last_error = f"HTTP {status}: {text[:200]}"
            if status not in RETRY_STATUS:
                raise BackendError(last_error)
            await self._sleep(attempt, retry_after)
        raise BackendError(f"gave up after {self.max_retries + 1} attempts: {last_error}")

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.max_retries:
            return
        wait = _retry_after_seconds(retry_after)
        if wait is None:  # exponential backoff with full jitter
            wait = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        await asyncio.sleep(min(wait, self.max_backoff_s))


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; anything else (a proxy's "soon") is ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = parsed.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _completion(body: str, request: ChatRequest) -> Completion:
    try:
        payload = json.loads(body)
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
        usage = payload.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise BackendError(f"malformed chat-completions response ({type(err).__name__}): {body[:200]!r}") from None
    if not isinstance(text, str):
        raise BackendError(f"malformed chat-completions response (content is no string): {body[:200]!r}")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int) \
            and isinstance(usage.get("completion_tokens"), int):
        return Completion(text, usage["prompt_tokens"], usage["completion_tokens"], choice.get("finish_reason"))
    # No usage field: estimate ~4 characters a token, flagged as an estimate in the ledger.
    return Completion(text, len(request.prompt) // 4 + 1, len(text) // 4 + 1, choice.get("finish_reason"), "estimate")
