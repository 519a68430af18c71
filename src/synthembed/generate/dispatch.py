"""Sending requests: at most `max_concurrency` in flight, within the token/cost budget, stoppable.

Brainstorm calls and example requests go through the same `Dispatcher`, so the budget, an unreachable server and
an interrupt stop both alike. A reply already in the ledger is used without asking again (and costs nothing).
On an interrupt no new request is sent and the replies in flight are awaited for at most `grace_s`, so what is
paid for is recorded; a second interrupt stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from synthembed.config import GenerateConfig, Price
from synthembed.generate.backends.base import Backend, BackendError, ChatRequest, Completion, ServerUnreachable
from synthembed.generate.ledger import Ledger, Totals

log = logging.getLogger(__name__)

Paid = tuple[str, str, Completion, float]  # (model, prompt, completion, seconds): what the ledger records


class Budget:
    """Stops dispatching before the token or cost limit, reserving an estimate for requests in flight."""

    def __init__(self, cfg: GenerateConfig, price: Price | None, spent: Totals):
        self.max_tokens, self.max_cost, self.price = cfg.max_tokens_total, cfg.max_cost, price
        self.tokens_in, self.tokens_out, self.calls = spent.tokens_in, spent.tokens_out, spent.requests
        self.in_flight = 0

    def cost(self, tokens_in: int | None = None, tokens_out: int | None = None) -> float:
        if self.price is None:
            return 0.0
        t_in = self.tokens_in if tokens_in is None else tokens_in
        t_out = self.tokens_out if tokens_out is None else tokens_out
        return (t_in * self.price.input + t_out * self.price.output) / 1e6

    def add(self, done: Completion) -> None:
        self.tokens_in += done.tokens_in
        self.tokens_out += done.tokens_out
        self.calls += 1

    def allows_another(self, request: ChatRequest) -> bool:
        # Reserve the mean of what calls cost so far (the request's own size before the first answer).
        mean_in = self.tokens_in / self.calls if self.calls else len(request.prompt) / 4
        mean_out = self.tokens_out / self.calls if self.calls else request.max_tokens / 2
        n = self.in_flight + 1
        t_in, t_out = self.tokens_in + n * mean_in, self.tokens_out + n * mean_out
        if self.max_tokens is not None and t_in + t_out > self.max_tokens:
            return False
        return self.max_cost is None or self.cost(t_in, t_out) <= self.max_cost


@dataclass
class Job:
    """One request and what to do with its outcome: `answered(key, completion, paid or None when cached)`,
    `failed(key, error)`. Both run on the event loop and record into the ledger."""

    request: ChatRequest
    answered: Callable[[str, Completion, Paid | None], None]
    failed: Callable[[str, BackendError], None]


class Dispatcher:
    def __init__(self, backend: Backend, ledger: Ledger, budget: Budget, grace_s: float):
        self.backend, self.ledger, self.budget, self.grace_s = backend, ledger, budget, grace_s
        self.stopped: str | None = None  # "budget" | "interrupted" | "unreachable"
        self.unreachable: ServerUnreachable | None = None
        self._running: set[asyncio.Task] = set()

    async def run(self, jobs: Iterable[Job]) -> None:
        slots = asyncio.Semaphore(self.backend.max_concurrency)
        for job in jobs:
            if self.stopped:
                break
            key = job.request.key(self.backend.model)
            cached = self.ledger.response(key)
            if cached is not None:
                job.answered(key, cached, None)
                continue
            await slots.acquire()
            if self.stopped:
                slots.release()
                break
            if not self.budget.allows_another(job.request):
                slots.release()
                self.stopped = "budget"
                log.warning("budget reached: no more requests are sent")
                break
            self.budget.in_flight += 1
            task = asyncio.create_task(self._send(job, key, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        # return_exceptions: tasks cancelled after the grace period end here as CancelledError, unrecorded.
        for outcome in await asyncio.gather(*self._running, return_exceptions=True):
            if isinstance(outcome, Exception):  # a bug in a job's recording, not a failed request
                raise outcome

    async def _send(self, job: Job, key: str, slots: asyncio.Semaphore) -> None:
        try:
            t0 = time.perf_counter()
            try:
                done = await self.backend.complete(job.request)
            except ServerUnreachable as err:
                self.stopped, self.unreachable = "unreachable", err
                job.failed(key, err)
                return
            except BackendError as err:
                job.failed(key, err)
                return
            self.budget.add(done)
            job.answered(key, done, (self.backend.model, job.request.prompt, done, time.perf_counter() - t0))
        finally:
            self.budget.in_flight -= 1
            slots.release()

    def interrupt(self) -> None:
        """SIGINT: the first stops sending and bounds the wait for replies in flight; a second cancels them."""
        loop = asyncio.get_running_loop()
        if self.stopped == "interrupted":
            log.warning("interrupted again: abandoning %d requests in flight", len(self._running))
            self._cancel_running()
            return
        self.stopped = "interrupted"
        log.warning("interrupted: sending no more requests; waiting up to %.0f s for the %d in flight "
                    "(interrupt again to stop now)", self.grace_s, len(self._running))
        loop.call_later(self.grace_s, self._cancel_running)

    def _cancel_running(self) -> None:
        for task in list(self._running):
            task.cancel()
