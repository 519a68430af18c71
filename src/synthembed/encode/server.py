"""An OpenAI-compatible embeddings API (POST /v1/embeddings, GET /v1/models, GET /health) with dynamic batching.

Concurrent requests' texts go into one queue and a single worker thread runs the model on up to `max_batch` of
them at a time, so many small requests share forward passes instead of each paying for its own.
Extensions to OpenAI's request body: `input_type` ("query" | "document") and `instruction` (queries only).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import copy
import hmac
import logging
import queue
import threading
import time

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from synthembed.encode.encode import count_tokens
from synthembed.model.embedder import QUERY_TEMPLATE, format_query

log = logging.getLogger(__name__)
QUERY_TYPES, DOCUMENT_TYPES = {"query", "search_query"}, {"document", "passage", "search_document"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def error_response(status: int, message: str, type: str, param: str | None = None, code: str | None = None):
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}}, status)


class _Job:
    __slots__ = ("texts", "out", "cursor", "future")

    def __init__(self, texts: list[str]):
        self.texts, self.out, self.cursor = texts, None, 0  # cursor: texts already taken into a batch
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class DynamicBatcher:
    """One worker thread owns the model. It takes queued requests and runs them as shared batches of at most
    `max_batch` texts, waiting at most `max_wait_ms` for more to arrive when the queue runs dry. With
    `enabled=False` each request is encoded on its own, still one at a time: concurrent forward passes would
    only fight over the same cores."""

    def __init__(self, embed, max_batch: int = 32, max_wait_ms: float = 2.0, enabled: bool = True):
        self._embed, self.max_batch, self.max_wait, self.enabled = embed, max_batch, max_wait_ms / 1000, enabled
        self.forward_passes = self.texts_embedded = self._last_jobs = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> concurrent.futures.Future:
        job = _Job(texts)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pending: collections.deque[_Job] = collections.deque()
        closing = False
        while True:
            if not pending:
                job = None if closing else self._queue.get()
                if job is None:
                    return
                pending.append(job)
            # Waiting pays only under concurrent load: after a pass that served a single request, take just what
            # is already queued, so a lone client never waits for company that is not coming.
            deadline = time.monotonic() + (self.max_wait if self._last_jobs > 1 else 0.0)
            while self.enabled and not closing and sum(len(j.texts) - j.cursor for j in pending) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:  # past the deadline, still take whatever is already queued
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    closing = True
                else:
                    pending.append(job)
            self._step(pending)

    def _step(self, pending: collections.deque[_Job]) -> None:
        texts, spans = [], []  # spans: (job, first row in job, first row in batch, rows)
        while pending and len(texts) < self.max_batch:
            job = pending[0]
            if job.future.cancelled():  # client went away: skip its work
                pending.popleft()
                continue
            take = min(self.max_batch - len(texts), len(job.texts) - job.cursor)
            spans.append((job, job.cursor, len(texts), take))
            texts += job.texts[job.cursor : job.cursor + take]
            job.cursor += take
            if job.cursor == len(job.texts):
                pending.popleft()
            if not self.enabled:
                break
        if not texts:
            return
        try:
            vectors = self._embed(texts)
        except Exception as err:  # fail the requests in this batch, keep serving the rest
            log.exception("embedding a batch of %d texts failed", len(texts))
            for job, *_ in spans:
                _settle(job.future, exception=err)
            for job in [j for j in pending if j.future.done()]:
                pending.remove(job)
            return
        self.forward_passes += 1
        self.texts_embedded += len(texts)
        self._last_jobs = len(spans)
        for job, start, offset, n in spans:
            if job.out is None:
                job.out = np.empty((len(job.texts), vectors.shape[1]), np.float32)
            job.out[start : start + n] = vectors[offset : offset + n]
            if job.cursor == len(job.texts) and start + n == len(job.texts):
                _settle(job.future, result=job.out)


def _settle(future: concurrent.futures.Future, result=None, exception=None) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
        future.set_exception(exception) if exception is not None else future.set_result(result)


def _embed_fn(embedder):
    if hasattr(embedder, "embed_batch"):
        return lambda texts: embedder.embed_batch(texts, normalize=True).float().cpu().numpy()
    return lambda texts: embedder.encode(texts, batch_size=len(texts))


def create_app(embedder, model_name: str | None = None, *, api_key: str | None = None, max_batch: int = 32,
               max_wait_ms: float = 2.0, batching: bool = True, max_inputs: int = 2048,
               max_input_tokens: int | None = None, max_request_tokens: int = 300_000,
               truncate: bool = False) -> Starlette:
    """`max_input_tokens` defaults to the model's length; longer inputs get a 400 as on OpenAI, unless
    `truncate` (then they are cut to the model's length, as `encode` does)."""
    model_name = model_name or embedder.name
    embed = _embed_fn(embedder)
    dim = int(getattr(embedder, "dim", 0) or embed(["probe"]).shape[1])
    max_length = int(embedder.max_length)
    max_input_tokens = max_input_tokens or max_length
    template = getattr(embedder, "query_template", QUERY_TEMPLATE)
    # The worker thread tokenizes with padding and truncation; counting here with the same object races it.
    tokenizer = copy.deepcopy(getattr(embedder, "tokenizer", None))
    batcher = DynamicBatcher(embed, max_batch, max_wait_ms, batching)
    created = int(time.time())

    def check_auth(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def embeddings(request: Request) -> JSONResponse:
        check_auth(request)
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise APIError(400, "The request body must be a JSON object.")
        texts = _parse_input(body.get("input"), max_inputs)
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be 'float' or 'base64', not {fmt!r}.", "encoding_format")
        dims = body.get("dimensions")
        if dims is not None and (type(dims) is not int or not 1 <= dims <= dim):
            raise APIError(400, f"dimensions must be an integer from 1 to {dim}, not {dims!r}.", "dimensions")
        if _is_query(body):
            texts = [format_query(t, body.get("instruction"), template) for t in texts]
        counts = count_tokens(embedder, texts, tokenizer)
        if not truncate and max(counts) > max_input_tokens:
            i = int(np.argmax(counts))
            raise APIError(400, f"input[{i}] has {counts[i]} tokens; this model takes at most {max_input_tokens} "
                                "per input.", "input", "context_length_exceeded")
        total = sum(min(c, max_length) for c in counts)
        if total > max_request_tokens:
            raise APIError(400, f"Requested {total} tokens, max {max_request_tokens} tokens per request.",
                           "input", "max_tokens_per_request")
        vectors = await asyncio.wrap_future(batcher.submit(texts))
        if dims is not None and dims < dim:  # Matryoshka: keep the leading dimensions, re-normalise
            vectors = vectors[:, :dims]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(vectors) <= 64:
            return _reply(vectors, fmt, model_name, total)
        return await run_in_threadpool(_reply, vectors, fmt, model_name, total)  # big JSON: keep the loop free

    async def models(request: Request) -> JSONResponse:
        check_auth(request)
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "synthembed"}
        return JSONResponse({"object": "list", "data": [card]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": model_name, "dimensions": dim, "batching": batching,
                             "forward_passes": batcher.forward_passes, "texts": batcher.texts_embedded})

    async def on_error(request: Request, err: Exception) -> JSONResponse:  # every error in OpenAI's shape
        if isinstance(err, APIError):
            return error_response(err.status, err.message, err.type, err.param, err.code)
        if isinstance(err, HTTPException):
            return error_response(err.status_code, str(err.detail), "invalid_request_error")
        return error_response(500, f"The server failed to embed the input: {err}", "server_error")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]), Route("/health", health, methods=["GET"])],
                    exception_handlers={APIError: on_error, HTTPException: on_error, Exception: on_error},
                    lifespan=lifespan)
    app.state.batcher = batcher
    return app


def _reply(vectors: np.ndarray, fmt: str, model_name: str, tokens: int) -> JSONResponse:
    encode = (lambda v: base64.b64encode(v.astype("<f4").tobytes()).decode()) if fmt == "base64" else \
        (lambda v: v.tolist())
    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": model_name,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _parse_input(value, max_inputs: int) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise APIError(400, "input must be a non-empty string or a non-empty list of strings.", "input")
    if len(texts) > max_inputs:
        raise APIError(400, f"input has {len(texts)} items; at most {max_inputs} per request.", "input")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise APIError(400, f"input[{i}] is not a string; token-id inputs are not supported.", "input")
        if not t.strip():
            raise APIError(400, f"input[{i}] is empty.", "input")
    return texts


def _is_query(body: dict) -> bool:
    kind = body.get("input_type")
    if kind is not None and kind not in QUERY_TYPES | DOCUMENT_TYPES:
        raise APIError(400, f"input_type must be 'query' or 'document', not {kind!r}.", "input_type")
    instruction = body.get("instruction")
    if instruction is not None and (not isinstance(instruction, str) or kind in DOCUMENT_TYPES):
        raise APIError(400, "instruction must be a string and applies to queries only.", "instruction")
    return kind in QUERY_TYPES or instruction is not None


def serve(embedder, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          log_level: str = "info", access_log: bool = False, **options) -> None:
    """Run the API until interrupted; `options` go to `create_app`."""
    import uvicorn

    app = create_app(embedder, model_name, **options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5)
