"""A backend that runs a small chat model in-process with transformers, micro-batching concurrent requests.

    backend = LocalBackend("smollm2-135m")          # an offline short name or a local HF directory
    done = await backend.complete(ChatRequest(prompt, temperature=1.0, seed=7, json_object=True))

Concurrent `complete()` calls queue up; one worker takes up to `batch_size` of them (waiting a few ms for
more) and runs ONE batched `model.generate` in a thread (left padding, the model's chat template).

Sampling is done per row by our own logits processor, each row drawing from its own generator seeded by
its request's seed, so requests with different temperature / top_p / max_tokens / json_object share a
batch. In fp32 a request's text depends on its seed only, not on which requests share its batch; in bf16
(the CPU default where it is faster) padding changes the rounding, so it is reproducible only for the same
batch (rerun the same requests together, or use dtype="fp32").

With `json_keys` or `json_list` set (and `constrained`), the reply is forced into a JSON object with exactly
those keys, or a list of that many strings (see key_forcing.py); only `max_tokens` can cut it short.
A batch runs until its longest row ends, so a few rambling rows hold up the rest: keep max_tokens tight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

import torch

from synthembed.generate.backends.base import BackendError, ChatRequest, Completion
from synthembed.generate.backends.key_forcing import KeyForcing, Vocabulary

log = logging.getLogger(__name__)



@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future


class LocalBackend:
    def __init__(
        self,
        model: str = "smollm2-135m",
        batch_size: int = 16,
        dtype: str = "auto",
        max_new_tokens_cap: int | None = None,
        constrained: bool = True,
        batch_wait_s: float = 0.01,
        repetition_penalty: float = 1.0,  # > 1 discourages the loops small models fall into
    ):
        self.source = str(model)
        self.repetition_penalty = repetition_penalty
        # the ledger keys requests by this name: a different penalty gives different replies
        self.model = self.source if repetition_penalty == 1.0 else f"{self.source}@repetition_penalty={repetition_penalty:g}"
        self.batch_size = batch_size
        self.max_concurrency = batch_size * 2
        self.dtype_name = dtype
        self.max_new_tokens_cap = max_new_tokens_cap
        self.constrained = constrained
        self.batch_wait_s = batch_wait_s
        self.batch_sizes: list[int] = []  # one entry per generate call, for logs and tests
        self.tokens_out = 0
        self.generate_s = 0.0
        self._lm = self._tok = None
        self._vocabulary = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False

    # --- the Backend protocol -------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        if self._closed:
            raise BackendError("LocalBackend is closed")
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work(), name="local-backend-worker")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, future))
        return await future

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker
            self._worker = None
        self._lm = self._tok = self._vocabulary = None

    # --- batching ------------------------------------------------------------------------------------
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = loop.time() + self.batch_wait_s
            while len(batch) < self.batch_size and not stopping:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:  # poll rather than wait_for(get()), which can drop an item on 3.11
                    if loop.time() >= deadline:
                        break
                    await asyncio.sleep(0.002)
                    continue
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            batch = [p for p in batch if not p.future.done()]  # callers that gave up
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._generate, [p.request for p in batch])
            except Exception as exc:  # one failed batch fails its requests, not the backend
                log.exception("local generation failed for a batch of %d", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BackendError(f"local generation failed: {exc!r}"))
                continue
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)
        while not self._queue.empty():  # closed with requests still queued
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(BackendError("LocalBackend closed"))

    # --- the model -----------------------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from synthembed.formats.offline import resolve

        path = resolve(self.source)
        dtype = pick_dtype(self.dtype_name)
        t0 = time.perf_counter()
        self._tok = AutoTokenizer.from_pretrained(path)
        self._tok.padding_side = "left"
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        eos = self._lm.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self._tok.eos_token_id}
        self._eos = sorted(e for e in eos if e is not None)
        if self._tok.chat_template is None:
            log.warning("%s has no chat template: prompts go to the model as raw text", path)
        log.info("loaded %s (%s, %s) in %.1f s", path, dtype, device, time.perf_counter() - t0)

    def _prompt_text(self, prompt: str) -> str:
        if self._tok.chat_template is None:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        if self._lm is None:
            self._load()
        tok = self._tok
        enc = tok([self._prompt_text(r.prompt) for r in requests], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(self._lm.device)
        prompt_len = enc["input_ids"].shape[1]
        budgets = [min(r.max_tokens, self.max_new_tokens_cap or r.max_tokens) for r in requests]
        processors = LogitsProcessorList()
        scaffolds = [r.scaffold if self.constrained else None for r in requests]
        json_rows = [i for i, s in enumerate(scaffolds) if s]
        if json_rows:
            processors.append(KeyForcing(tok, self._key_vocabulary(), scaffolds, prompt_len, self._tok.eos_token_id,
                                         budgets))
        processors.append(RowSampler(requests))
        config = GenerationConfig(max_new_tokens=max(budgets), do_sample=False, pad_token_id=tok.pad_token_id,
                                  eos_token_id=self._eos, repetition_penalty=self.repetition_penalty)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self._lm.generate(**enc, generation_config=config, logits_processor=processors,
                                    stopping_criteria=StoppingCriteriaList([RowBudget(budgets, prompt_len)]))
        seconds = time.perf_counter() - t0
        results = []
        for i, row in enumerate(out[:, prompt_len:].tolist()):
            row = row[: budgets[i]]
            stop = next((k for k, t in enumerate(row) if t in self._eos), None)
            text = tok.decode(row if stop is None else row[:stop], skip_special_tokens=True)
            results.append(Completion(
                text=text,
                tokens_in=int(enc["attention_mask"][i].sum()),
                tokens_out=len(row) if stop is None else stop + 1,
                finish_reason="length" if stop is None else "stop",
                usage_from="tokenizer",
            ))
        n_out = sum(c.tokens_out for c in results)
        self.batch_sizes.append(len(requests))
        self.tokens_out += n_out
        self.generate_s += seconds
        log.debug("batch of %d (%d json): %d tokens out in %.1f s (%.0f tok/s)", len(requests), len(json_rows),
                  n_out, seconds, n_out / max(seconds, 1e-9))
        return results

    def _key_vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            t0 = time.perf_counter()
            self._vocabulary = Vocabulary.build(self._tok, self._lm.config.vocab_size)
            log.info("indexed the vocabulary for key forcing in %.1f s", time.perf_counter() - t0)
        return self._vocabulary


# --- dtype -------------------------------------------------------------------------------------------
_CPU_BF16_FASTER: bool | None = None


def pick_dtype(name: str) -> torch.dtype:
    """"auto": bf16 on a GPU that has it, and on a CPU where it is faster than fp32 (measured once)."""
    if name != "auto":
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
                "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}[name]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    global _CPU_BF16_FASTER
    if _CPU_BF16_FASTER is None:
        _CPU_BF16_FASTER = _bf16_speedup() > 1.2
    return torch.bfloat16 if _CPU_BF16_FASTER else torch.float32


def _bf16_speedup() -> float:
    def seconds(dtype):
        x, w = torch.randn(16, 1024, dtype=dtype), torch.randn(4096, 1024, dtype=dtype)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        t0 = time.perf_counter()
        for _ in range(20):
            torch.nn.functional.linear(x, w)
        return time.perf_counter() - t0

    speedup = seconds(torch.float32) / seconds(torch.bfloat16)
    log.info("CPU bf16 matmul is %.1fx fp32", speedup)
    return speedup


# --- logits processors -------------------------------------------------------------------------------
class RowSampler:
    """Per-row temperature / top-p sampling, each row with its own seeded generator.

    Returns scores that are -inf except at the drawn token, so greedy decoding in `generate` picks it.
    temperature 0 means greedy.
    """

    def __init__(self, requests: list[ChatRequest]):
        self.temperature = torch.tensor([r.temperature for r in requests], dtype=torch.float32)
        self.top_p = torch.tensor([r.top_p for r in requests], dtype=torch.float32)
        self.generators = []
        for r in requests:
            g = torch.Generator()
            g.manual_seed(r.seed if r.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
            self.generators.append(g)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()  # (batch, vocab)
        temperature, top_p = self.temperature.to(scores.device), self.top_p.to(scores.device)
        greedy_token = scores.argmax(-1)  # (batch,)
        probs = torch.softmax(scores / temperature.clamp_min(1e-4)[:, None], dim=-1)
        if bool((top_p < 1).any()):
            probs, order = probs.sort(dim=-1, descending=True)
            probs = probs * ((probs.cumsum(-1) - probs) < top_p[:, None])  # keep the nucleus (>= 1 token)
        else:
            order = None
        cdf = probs.cumsum(-1)  # (batch, vocab)
        u = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(scores.device) * cdf[:, -1]
        pick = torch.searchsorted(cdf, u[:, None].contiguous(), right=True).clamp_max(scores.shape[-1] - 1)  # (batch, 1)
        token = (order.gather(1, pick) if order is not None else pick)[:, 0]
        token = torch.where(temperature <= 0, greedy_token, token)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token[:, None], 0.0)


class RowBudget:
    """Stopping criterion: row i is done after budgets[i] new tokens."""

    def __init__(self, budgets: list[int], prompt_len: int):
        self.budgets = torch.tensor(budgets)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return ((input_ids.shape[1] - self.prompt_len) >= self.budgets).to(input_ids.device)
