"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp server, TGI."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time

import aiohttp

from synthembed.generate.backends.base import BackendError, ChatRequest, Completion

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


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
        self.url = base_url.rstrip("/") + "/chat/completions"
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
                    status, text = response.status, await response.text()
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                last_error = f"{type(err).__name__}: {err}"
                await self._sleep(attempt, None)
                continue
            if status == 200:
                return _completion(text, request)
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
        await asyncio.sleep(wait)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _completion(body: str, request: ChatRequest) -> Completion:
    try:
        payload = json.loads(body)
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise BackendError(f"malformed chat-completions response: {str(payload)[:200]}") from err
    usage = payload.get("usage") or {}
    if "prompt_tokens" in usage and "completion_tokens" in usage:
        return Completion(text, usage["prompt_tokens"], usage["completion_tokens"], choice.get("finish_reason"))
    # No usage field: estimate ~4 characters a token, flagged as an estimate in the ledger.
    return Completion(text, len(request.prompt) // 4 + 1, len(text) // 4 + 1, choice.get("finish_reason"), "estimate")
