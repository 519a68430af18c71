"""A scripted OpenAI-compatible chat-completions server that replays recorded LLM outputs.

It stands in for a remote LLM in tests and benchmarks: replies are generator outputs (rows in the layout of the
synthetic-frontier data set, from a directory, or the small built-in set of `replay_data` when none is given)
picked deterministically from the prompt, and faults (rate limits, errors, hangs, malformed replies) are
scripted by request ordinal so a client's retry and parsing paths can be exercised reproducibly.
``ReplayServer`` runs it in a subprocess so a benchmarked client does not share its GIL with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

FAMILIES = ("short-long", "long-short", "short-short", "sts", "bitext")
FAULTS = ("429", "500", "hang", "truncated", "prose", "wrong_keys", "wrong_language", "empty",
          "no_usage", "no_json_mode", "not_json", "bad_retry_after")
# What a misbehaving proxy in front of the LLM sends: 200 with an HTML page, or a Retry-After that is no number.
NOT_JSON_BODY = "<html><body><h1>Gateway</h1><p>upstream answered nothing</p></body></html>"
# Plausible key mistakes an LLM makes; unknown keys get a suffix.
RENAMES = {"user_query": "query", "positive_document": "positive", "hard_negative_document": "negative",
           "input_text": "text", "label": "correct_label", "misleading_label": "wrong_label",
           "input": "query", "S1": "s1", "S2": "s2", "S3": "s3"}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4  # rough chars-per-token estimate, good enough for accounting tests


def _error(status: int, message: str, type_: str, code: str | None = None, headers=None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class Replayer:
    """Picks a recorded reply for a prompt; pure and deterministic (no request state)."""

    def __init__(self, data_dir: str | Path | None = None):
        if data_dir is None:  # the built-in set
            from synthembed.testing.replay_data import TASK_POOLS, replay_rows

            self.rows, self.pools = replay_rows(), TASK_POOLS
        else:
            data_dir = Path(data_dir)
            self.rows = {f: [json.loads(line) for line in (data_dir / f"{f}.jsonl").open(encoding="utf-8")
                             if line.strip()] for f in FAMILIES}
            self.pools = json.loads((data_dir / "task_pools.json").read_text(encoding="utf-8"))
        langs = {r["language"] for rows in self.rows.values() for r in rows}
        langs |= {r["params"]["target_language"] for r in self.rows["bitext"]}
        # Longest first so that e.g. "Malayalam" would win over "Malay" in the alternation.
        self.lang_re = re.compile(r"\b(" + "|".join(sorted(map(re.escape, langs), key=len, reverse=True))
                                  + r")\b")

    @staticmethod
    def family(prompt: str) -> str | None:
        if "user_query" in prompt:
            return "short-long"
        if "input_text" in prompt:
            return "long-short"
        if "S1" in prompt:
            return "bitext" if "translation" in prompt.lower() else "sts"
        if "positive_document" in prompt and re.search(r"\binput\b", prompt):
            low = prompt.lower()
            return "long-long" if "long documents" in low or "300 words" in low else "short-short"
        return None

    def brainstorm(self, prompt: str, seed: int | None = None) -> list[str]:
        low = prompt.lower()
        # Order matters: the short-matching prompt's examples say "retrieve", so test it before retrieval.
        if "long documents" in low or "very short" in low or "matching" in low:
            pool = self.pools["short-short"]  # no long-long pool exists; matching tasks are the closest
        elif "classification" in low:
            pool = self.pools["long-short"]
        else:
            pool = self.pools["short-long"]
        # The seed is folded in so a client that brainstorms twice with different seeds gets new tasks.
        key = prompt if seed is None else f"{prompt}\x00seed={seed}"
        return random.Random(int(_sha(key), 16)).sample(pool, min(20, len(pool)))

    @staticmethod
    def judge(prompt: str) -> dict | None:
        """A relevance judgment (data relabel's prompt: <query>..</query> <document>..</document>), scored 0-3 by
        the share of the query's words found in the document; None when the prompt is no judge prompt."""
        query, document = (re.search(rf"<{tag}>(.*?)</{tag}>", prompt, re.S) for tag in ("query", "document"))
        if query is None or document is None:
            return None
        words = set(re.findall(r"\w+", query.group(1).lower()))
        shared = words & set(re.findall(r"\w+", document.group(1).lower()))
        return {"reason": f"{len(shared)} of {len(words)} query words in the document",
                "score": round(3 * len(shared) / max(len(words), 1))}

    def example(self, prompt: str, family: str, wrong_language: bool = False) -> dict:
        rows = self.rows["short-short" if family == "long-long" else family]
        hits = [(m.group(1), m.start()) for m in self.lang_re.finditer(prompt)]
        first: dict[str, int] = {}
        for lang, pos in hits:
            first.setdefault(lang, pos)
        if family == "bitext":
            def src(r): return r["params"]["source_language"]
            def tgt(r): return r["params"]["target_language"]
            if wrong_language:  # same source if possible, target not asked for
                tiers = [[r for r in rows if src(r) in first and tgt(r) not in first],
                         [r for r in rows if tgt(r) not in first]]
            else:  # the paper's template names the source language before the target
                both = [r for r in rows if src(r) in first and tgt(r) in first]
                tiers = [[r for r in both if first[src(r)] < first[tgt(r)]], both]
        else:
            # "... should be in German": a language right after "in" beats one named in the task text.
            after_in = {lang for lang, pos in hits if prompt[max(0, pos - 3):pos].lower() == "in "}
            asked = after_in or set(first)
            tiers = [[r for r in rows if r["language"] not in first]] if wrong_language else \
                [[r for r in rows if r["language"] in asked]]
        candidates = next((t for t in tiers if t), rows)
        return candidates[int(_sha(prompt), 16) % len(candidates)]["output"]


def _fault_for(n: int, script: dict[int, str], every: dict[str, int]) -> str | None:
    if n in script:
        return script[n]
    return next((kind for kind, k in every.items() if k > 0 and n % k == 0), None)


def _user_text(messages) -> str | None:
    for msg in reversed(messages or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):  # OpenAI content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else None
    return None


def create_app(data_dir: str | Path | None, latency_ms: float = 0, script: dict[int, str] | None = None,
               every: dict[str, int] | None = None, log_path: str | Path | None = None,
               retry_after: float = 1, hang_s: float = 30) -> Starlette:
    replayer = Replayer(data_dir)
    script = {int(k): v for k, v in (script or {}).items()}
    every = {k: int(v) for k, v in (every or {}).items()}
    for kind in [*script.values(), *every]:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULTS}")
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    state = {"n": 0}

    async def chat(request: Request):
        state["n"] += 1  # counted before any await, so ordinals follow arrival order
        n = state["n"]
        try:
            body = await request.json()
        except ValueError:
            body = {}
        prompt = _user_text(body.get("messages")) if isinstance(body, dict) else None
        fault = _fault_for(n, script, every)
        if log:  # flushed per line: tests read it after killing a client mid-run
            log.write(json.dumps({"n": n, "sha": _sha(prompt) if prompt is not None else None,
                                  "fault": fault, "t": time.time()}) + "\n")
            log.flush()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if prompt is None:
            return _error(400, "'messages' must contain a user message", "invalid_request_error")
        if fault == "429":
            return _error(429, "Rate limit reached for requests. Please try again later.", "requests",
                          "rate_limit_exceeded", headers={"Retry-After": f"{retry_after:g}"})
        if fault == "500":
            return _error(500, "The server had an error while processing your request.", "server_error")
        if fault == "bad_retry_after":
            return _error(429, "Rate limit reached.", "requests", "rate_limit_exceeded",
                          headers={"Retry-After": "soon"})
        if fault == "not_json":
            return HTMLResponse(NOT_JSON_BODY)
        if fault == "no_json_mode" and body.get("response_format") is not None:
            return _error(400, "Invalid parameter: 'response_format' of type 'json_object' is not "
                          "supported with this model.", "invalid_request_error", "unsupported_parameter")
        if fault == "hang":
            await asyncio.sleep(hang_s)

        judgment = replayer.judge(prompt)
        if judgment is not None:
            output = judgment
        elif "brainstorm" in prompt.lower():
            output = replayer.brainstorm(prompt, body.get("seed"))
        else:
            family = replayer.family(prompt)
            if family is None:
                return _error(400, "replay server: cannot tell which example family this prompt asks "
                              "for", "invalid_request_error")
            output = replayer.example(prompt, family, wrong_language=fault == "wrong_language")
        if fault == "wrong_keys":
            output = ({RENAMES.get(k, k + "_1"): v for k, v in output.items()}
                      if isinstance(output, dict) else {"tasks": output})
        content = json.dumps(output, ensure_ascii=False)
        finish = "stop"
        if fault == "truncated":
            content, finish = content[: len(content) // 2], "length"  # as when max_tokens runs out
        elif fault == "prose":
            content = f"Sure! Here is the JSON you asked for:\n```json\n{content}\n```\nHope this helps."
        elif fault == "empty":
            content = ""

        reply = {"id": f"chatcmpl-replay-{n}", "object": "chat.completion", "created": int(time.time()),
                 "model": body.get("model") or "replay", "system_fingerprint": "replay",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "logprobs": None, "finish_reason": finish}]}
        if fault != "no_usage":
            p_tok = sum(_tokens(m.get("content") or "") for m in body["messages"]
                        if isinstance(m, dict) and isinstance(m.get("content"), str))
            c_tok = _tokens(content)
            reply["usage"] = {"prompt_tokens": p_tok, "completion_tokens": c_tok,
                              "total_tokens": p_tok + c_tok}
        return JSONResponse(reply)

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [
            {"id": "replay", "object": "model", "created": 0, "owned_by": "synthembed"}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


class ReplayServer:
    """Runs the replay server in a subprocess on a free loopback port for the duration of a `with`."""

    def __init__(self, data_dir=None, latency_ms: float = 0, script: dict[int, str] | None = None,
                 every: dict[str, int] | None = None, log_path=None, retry_after: float = 1,
                 hang_s: float = 30, port: int | None = None):
        self.data_dir, self.latency_ms, self.script, self.every = data_dir, latency_ms, script, every
        self.retry_after, self.hang_s, self.port = retry_after, hang_s, port
        self._own_log = log_path is None
        if self._own_log:
            fd, log_path = tempfile.mkstemp(prefix="replay-", suffix=".jsonl")
            os.close(fd)
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None
        self._log_cache: list[dict] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ReplayServer:
        import httpx

        data = ["--data", str(self.data_dir)] if self.data_dir is not None else []
        cmd = [sys.executable, "-m", "synthembed.testing.replay_server", *data,
               "--port", str(self.port or 0), "--latency-ms", str(self.latency_ms),
               "--script", json.dumps(self.script or {}), "--every", json.dumps(self.every or {}),
               "--log", str(self.log_path), "--retry-after", str(self.retry_after),
               "--hang-s", str(self.hang_s)]
        # The child binds the socket itself (port 0 = any free one) and prints the port: no race.
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line.startswith("port "):
            self._stop()
            raise RuntimeError(f"replay server failed to start (exit code {self._proc.returncode})")
        self.port = int(line.split()[1])
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.base_url + "/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError("replay server did not answer GET /v1/models")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop()
        if self._own_log:
            self._log_cache = self.log()
            self.log_path.unlink(missing_ok=True)

    def _stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc:
            self._proc.stdout.close()

    def log(self) -> list[dict]:
        """The request log so far: one dict per chat request, in arrival order."""
        if self._log_cache is not None:
            return self._log_cache
        lines = self.log_path.read_text(encoding="utf-8").splitlines() if self.log_path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible replay server (loopback only).")
    ap.add_argument("--data", default=None,
                    help="directory in the synthetic-frontier layout (default: the small built-in set)")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as 'port N')")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--script", default="{}", help='faults by ordinal, e.g. \'{"1": "429"}\'')
    ap.add_argument("--every", default="{}", help='periodic faults, e.g. \'{"500": 10}\'')
    ap.add_argument("--log", default=None, help="append one JSON line per request here")
    ap.add_argument("--retry-after", type=float, default=1)
    ap.add_argument("--hang-s", type=float, default=30)
    a = ap.parse_args(argv)
    app = create_app(a.data, a.latency_ms, json.loads(a.script), json.loads(a.every), a.log,
                     a.retry_after, a.hang_s)
    # proto must be IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on such sockets, and without
    # it every reply stalls ~40 ms on Nagle + delayed ACK (headers and body are written separately).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    print(f"port {sock.getsockname()[1]}", flush=True)
    # A short graceful shutdown: a "hang" request in flight must not hold up termination.
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
