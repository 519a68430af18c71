"""An OpenAI-compatible embeddings API (POST /v1/embeddings, GET /v1/models, GET /health) with dynamic batching.

Concurrent requests' texts go into one queue and a single worker thread runs the model on up to `max_batch` of
them at a time, so many small requests share forward passes instead of each paying for its own. Parsing and
tokenising run on another thread, so the event loop (and /health) never waits for a large request.
Extensions to OpenAI's request body: `input_type` ("query" | "document") and `instruction` (queries only).
`dimensions` takes any size from 1 to the model's (OpenAI's semantics); a model trained with Matryoshka dims
(its folder's matryoshka.json) lists them in /v1/models and /health, the sizes that keep most quality.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import copy
import functools
import hmac
import json
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

from synthembed.encode.api_input import (APIError, is_query, parse_body, parse_input, resolve_model,
                                         special_tokens, wrap_ids)
from synthembed.encode.encode import count_tokens
from synthembed.formats import matryoshka
from synthembed.model.embedder import QUERY_TEMPLATE, format_query

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 * 1024 * 1024  # far above 2048 inputs of a 8k-token model's worth of JSON text
CHARS_PER_TOKEN = 32  # longer inputs are refused before tokenising: no vocabulary has tokens this long on average


class _ASCIIJSONResponse(JSONResponse):
    def render(self, content) -> bytes:  # escapes anything a client sent, lone surrogates included
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def error_response(status: int, message: str, type: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None):
    error = {"message": message, "type": type, "param": param, "code": code}
    return _ASCIIJSONResponse({"error": error}, status, headers=headers)


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
    """Items are texts, or token-id lists already in the model's layout (`wrap_ids`); one batch holds one kind
    unless requests of both kinds meet, then each kind gets its own forward pass."""
    if not hasattr(embedder, "embed_batch"):
        return lambda texts: embedder.encode(texts, batch_size=len(texts))

    def embed(items: list) -> np.ndarray:
        ids_at = [i for i, item in enumerate(items) if not isinstance(item, str)]
        if not ids_at:
            return embedder.embed_batch(items, normalize=True).float().cpu().numpy()
        out = np.empty((len(items), embedder.dim), np.float32)
        out[ids_at] = _embed_ids(embedder, [items[i] for i in ids_at])
        texts_at = [i for i, item in enumerate(items) if isinstance(item, str)]
        if texts_at:
            out[texts_at] = embedder.embed_batch([items[i] for i in texts_at], normalize=True).float().cpu().numpy()
        return out

    return embed


def _embed_ids(embedder, ids: list[list[int]]) -> np.ndarray:
    import torch

    pad = getattr(embedder, "pad", None) or (lambda x: embedder.tokenizer.pad({"input_ids": x}, return_tensors="pt"))
    weights = next(embedder.model.parameters()).dtype  # bf16 asked for on fp32 weights: autocast, as embed_batch
    bf16 = getattr(embedder, "dtype", None) == torch.bfloat16 and weights == torch.float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        vectors = embedder.forward(pad(ids))
    return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


def _openai_errors(handler):
    """Errors in OpenAI's shape, as a reply: the connection stays usable, and no internal text leaks."""

    @functools.wraps(handler)
    async def wrapped(request: Request):
        try:
            return await handler(request)
        except APIError as err:
            return error_response(err.status, err.message, err.type, err.param, err.code, err.headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "The server had an error while processing your request.", "server_error")

    return wrapped


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes: by its Content-Length before reading any of it,
    and by counting what arrives (a chunked body has no length)."""
    too_large = APIError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         code="request_too_large", headers={"connection": "close"})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _served_names(model_name, embedder) -> list[str]:
    names = [model_name] if isinstance(model_name, str) else list(model_name or [])
    names = [n.strip() for name in names for n in name.split(",") if n.strip()]
    return list(dict.fromkeys(names)) or [embedder.name]


def create_app(embedder, model_name: str | list[str] | None = None, *, api_key: str | None = None,
               max_batch: int = 32, max_wait_ms: float = 2.0, batching: bool = True, max_inputs: int = 2048,
               max_input_tokens: int | None = None, max_request_tokens: int = 300_000, truncate: bool = False,
               max_body_bytes: int = MAX_BODY_BYTES, max_input_chars: int | None = None,
               accept_token_ids: bool = False) -> Starlette:
    """`model_name`: the served name, or several (a list or a comma list); requests naming another get 404.
    `max_input_tokens` defaults to the model's length; longer inputs get a 400 as on OpenAI, unless `truncate`
    (then they are cut to the model's length, as `encode` does). Inputs over `max_input_chars` (default
    CHARS_PER_TOKEN per token) are refused, or cut under `truncate`, before tokenising. `accept_token_ids`:
    take lists of this model's own token ids (without special tokens) in place of texts."""
    if api_key is not None and not api_key.strip():
        raise ValueError("the API key is empty: give a non-empty key, or none to serve without authentication")
    names = _served_names(model_name, embedder)
    embed = _embed_fn(embedder)
    dim = int(getattr(embedder, "dim", 0) or embed(["probe"]).shape[1])
    trained_dims = matryoshka.read_dims(getattr(embedder, "path", None))
    extra = {"matryoshka_dimensions": trained_dims} if trained_dims else {}
    max_length = int(embedder.max_length)
    max_input_tokens = max_input_tokens or max_length
    max_input_chars = max_input_chars or CHARS_PER_TOKEN * max_input_tokens
    template = getattr(embedder, "query_template", QUERY_TEMPLATE)
    as_query = getattr(embedder, "format_query", None) or (lambda text, instruction: format_query(text, instruction,
                                                                                                  template))
    # The worker thread tokenizes with padding and truncation; counting here with the same object races it.
    tokenizer = copy.deepcopy(getattr(embedder, "tokenizer", None))
    if accept_token_ids and tokenizer is None:
        raise ValueError("accept_token_ids needs a model with a tokenizer")
    wrap = (special_tokens(tokenizer), tokenizer.eos_token_id) if tokenizer is not None else (([], []), None)
    last_token = getattr(embedder, "pooling", None) == "last"
    vocab_size = len(tokenizer) if tokenizer is not None else 0
    batcher = DynamicBatcher(embed, max_batch, max_wait_ms, batching)
    preparer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embed-prepare")
    created = int(time.time())

    def check_auth(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    def model_inputs(items: list, token_ids: bool, body: dict, query: bool) -> tuple[list, list[int]]:
        if token_ids:
            if body.get("instruction") is not None:
                raise APIError(400, "instruction applies to text inputs, not token ids.", "instruction")
            (prefix, suffix), eos = wrap
            pairs = [wrap_ids(ids, prefix, suffix, eos, max_length, last_token) for ids in items]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        longest = max(range(len(items)), key=lambda i: len(items[i]))
        if len(items[longest]) > max_input_chars and not truncate:
            raise APIError(400, f"input[{longest}] has {len(items[longest])} characters; this server refuses "
                                f"inputs over {max_input_chars} characters (this model takes at most "
                                f"{max_input_tokens} tokens per input).", "input", "context_length_exceeded")
        texts = [t[:max_input_chars] for t in items]
        if query:
            texts = [as_query(t, body.get("instruction")) for t in texts]
        return texts, count_tokens(embedder, texts, tokenizer)

    def prepare(raw: bytes) -> tuple:
        """Everything before the model, run off the event loop: parse, check, format, count tokens."""
        body = parse_body(raw)
        name = resolve_model(body.get("model"), names)
        items, token_ids = parse_input(body.get("input"), max_inputs, accept_token_ids, vocab_size)
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be 'float' or 'base64', not {fmt!r}.", "encoding_format")
        dims = body.get("dimensions")
        if dims is not None and (type(dims) is not int or not 1 <= dims <= dim):
            raise APIError(400, f"dimensions must be an integer from 1 to {dim}, not {dims!r}.", "dimensions")
        items, counts = model_inputs(items, token_ids, body, is_query(body))
        if not truncate and max(counts) > max_input_tokens:
            i = int(np.argmax(counts))
            raise APIError(400, f"input[{i}] has {counts[i]} tokens; this model takes at most {max_input_tokens} "
                                "per input.", "input", "context_length_exceeded")
        total = sum(min(c, max_length) for c in counts)
        if total > max_request_tokens:
            raise APIError(400, f"Requested {total} tokens, max {max_request_tokens} tokens per request.",
                           "input", "max_tokens_per_request")
        return items, fmt, dims, name, total

    @_openai_errors
    async def embeddings(request: Request) -> JSONResponse:
        check_auth(request)
        raw = await _read_body(request, max_body_bytes)
        items, fmt, dims, name, total = await asyncio.get_running_loop().run_in_executor(preparer, prepare, raw)
        vectors = await asyncio.wrap_future(batcher.submit(items))
        if dims is not None and dims < dim:  # Matryoshka: keep the leading dimensions, re-normalise
            vectors = matryoshka.truncate(vectors, dims)
        if len(vectors) <= 64:
            return _reply(vectors, fmt, name, total)
        return await run_in_threadpool(_reply, vectors, fmt, name, total)  # big JSON: keep the loop free

    def card(name: str) -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "synthembed", **extra}

    @_openai_errors
    async def models(request: Request) -> JSONResponse:
        check_auth(request)
        return JSONResponse({"object": "list", "data": [card(n) for n in names]})

    @_openai_errors
    async def model(request: Request) -> JSONResponse:
        check_auth(request)
        return JSONResponse(card(resolve_model(request.path_params["model"], names)))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": names[0], "dimensions": dim, **extra, "batching": batching,
                             "forward_passes": batcher.forward_passes, "texts": batcher.texts_embedded})

    async def on_error(request: Request, err: Exception) -> JSONResponse:  # routing errors (404, 405)
        if isinstance(err, HTTPException):
            return error_response(err.status_code, str(err.detail), "invalid_request_error")
        return error_response(500, "The server had an error while processing your request.", "server_error")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        preparer.shutdown(wait=False, cancel_futures=True)
        batcher.close()

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]),
                            Route("/v1/models/{model:path}", model, methods=["GET"]),
                            Route("/health", health, methods=["GET"])],
                    exception_handlers={HTTPException: on_error, Exception: on_error}, lifespan=lifespan)
    app.state.batcher = batcher
    return app


def _reply(vectors: np.ndarray, fmt: str, model_name: str, tokens: int) -> JSONResponse:
    encode = (lambda v: base64.b64encode(v.astype("<f4").tobytes()).decode()) if fmt == "base64" else \
        (lambda v: v.tolist())
    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": model_name,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def serve(embedder, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
          log_level: str = "info", access_log: bool = False, **options) -> None:
    """Run the API until interrupted; `options` go to `create_app`."""
    import uvicorn

    app = create_app(embedder, model_name, **options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5)
