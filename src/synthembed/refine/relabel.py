"""Gecko-style relabeling: for each query the embedder retrieves the top k pool documents, the LLM judges each
candidate (and the row's own positive) for relevance, the best-judged becomes the positive and the hardest
candidate judged irrelevant the hard negative.

LLM calls go through the generation dispatcher and ledger (`output/ledger.sqlite`): any generate backend, the
same budget, interrupt and retry behaviour, and a rerun pays for nothing twice. The outputs are rebuilt from the
ledger on every run, so each row appears exactly once; rows whose judgments are not all in (failed requests, a
budget stop, an interrupt) are left out and finished by the next run.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthembed.config import GenerateConfig
from synthembed.generate.backends.base import Backend, BackendError, ChatRequest, Completion
from synthembed.generate.dispatch import Budget, Dispatcher, Job, Paid
from synthembed.generate.ledger import Ledger
from synthembed.generate.parse import ParseError, extract_json_object
from synthembed.generate.run import make_backend
from synthembed.model.protocol import Embedder
from synthembed.refine.source import (Hits, Pool, Row, Vectors, labeled_row, read_pool_texts, read_rows, retrieve,
                                      write_card, write_rows)

JUDGE_KEYS = ("reason", "score")  # reason first: the model explains before it scores
MAX_SCORE = 3
JUDGE_PROMPT = """You judge the relevance of a document to a query for this task: {task}

<query>{query}</query>
<document>{document}</document>

Score how well the document serves the query for the task: 3 = it fully answers or matches the query, 2 = it \
partly does, 1 = same topic but it does not answer the query, 0 = unrelated.
Reply with a JSON object only: {{"reason": "<one short sentence>", "score": <0, 1, 2 or 3>}}"""


@dataclass
class RelabelConfig:
    top_k: int = 5  # candidates retrieved per query (the row's own positive is judged too)
    min_positive_score: int = 2  # the best candidate must reach this to become the positive, else the row is dropped
    max_negative_score: int = 1  # a hard negative must be judged at most this
    search: str = "auto"
    max_tokens: int = 128  # per judgment

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if not 0 <= self.max_negative_score < self.min_positive_score <= MAX_SCORE:
            raise ValueError("need 0 <= max_negative_score < min_positive_score <= 3, got "
                             f"{self.max_negative_score} and {self.min_positive_score}")


def judge_request(row: Row, document: str, cfg: RelabelConfig, gen: GenerateConfig) -> ChatRequest:
    """Greedy (temperature 0: a judgment, not a sample), with the generation seed and JSON-mode setting."""
    prompt = JUDGE_PROMPT.format(task=row.pair.instruction or "retrieve relevant documents",
                                 query=row.pair.query, document=document)
    return ChatRequest(prompt, temperature=0.0, max_tokens=cfg.max_tokens, seed=gen.seed,
                       json_object=gen.json_mode, json_keys=JUDGE_KEYS)


def parse_judgment(text: str) -> tuple[int | None, str]:
    """(score 0..3, the judge's reason) or (None, why the reply is unusable)."""
    try:
        reply = extract_json_object(text)
    except ParseError as err:
        return None, f"unparsable: {err.reason}"
    raw = reply.get("score")
    try:
        score = float(str(raw).strip())
    except ValueError:
        return None, f"unparsable: score {raw!r} is no number"
    if not score.is_integer() or not 0 <= score <= MAX_SCORE:
        return None, f"unparsable: score {raw!r} is not 0, 1, 2 or 3"
    return int(score), str(reply.get("reason", "")).strip()


@dataclass
class Candidate:
    text: str
    embed_rank: int | None  # 0-based among retrieved; None: the row's own positive, not retrieved
    embed_score: float
    original_positive: bool
    llm_score: int | None = None
    reason: str = ""


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)  # relabeled rows (labeled layout)
    judgments: list[dict] = field(default_factory=list)  # per row: every candidate's score and reason
    rejected: list[dict] = field(default_factory=list)
    pending: int = 0  # rows with judgments still missing


def candidates(row: Row, hits: Hits, pool: Pool) -> list[Candidate]:
    """The row's own positive first, then the retrieved documents by embedder rank."""
    found = [Candidate(pool.texts[int(i)], rank, float(s), False)
             for rank, (s, i) in enumerate(zip(hits.scores, hits.indices))]
    return [Candidate(row.pair.positive, hits.positive_rank, hits.positive_score, True), *found]


def decide(row: Row, cands: list[Candidate], cfg: RelabelConfig, outcome: Outcome) -> None:
    """Best-judged candidate -> positive (ties: the original positive, then the embedder's order); the
    embedder's highest-ranked candidate judged at most `max_negative_score` -> hard negative."""
    judged = [c for c in cands if c.llm_score is not None]
    best = max(judged, key=lambda c: c.llm_score, default=None)  # max keeps the first of ties
    where = {"file": str(row.file), "line": row.line, **({"id": row.raw["id"]} if "id" in row.raw else {})}
    record = {**where, "query": row.pair.query, "candidates": [asdict(c) for c in cands]}
    if best is None or best.llm_score < cfg.min_positive_score:
        reason = "no_candidate_judged" if best is None else "no_relevant_candidate"
        outcome.rejected.append({**where, "reason": reason, "query": row.pair.query})
        outcome.judgments.append({**record, "kept": False, "reason": reason})
        return
    low = sorted((c for c in judged if c is not best and c.llm_score <= cfg.max_negative_score),
                 key=lambda c: -c.embed_score)  # the hardest for the embedder first
    negative = [low[0].text] if low else []
    outcome.rows.append(labeled_row(row, [best.text], negative))
    outcome.judgments.append({**record, "kept": True, "positive": best.text, "negative": negative[0] if low else None,
                              "positive_changed": not best.original_positive})


async def judge_all(rows: list[Row], cands: list[list[Candidate]], dispatcher: Dispatcher, ledger: Ledger,
                    cfg: RelabelConfig, gen: GenerateConfig) -> Counter:
    """Fill in each candidate's LLM score; returns counts of requests by how they were answered."""
    counts = Counter()

    def job(row: Row, cand: Candidate) -> Job:
        def answered(key: str, done: Completion, paid: Paid | None) -> None:
            if paid is not None:
                ledger.record_request(key, "judge", *paid)
            counts["sent" if paid else "from_ledger"] += 1
            cand.llm_score, cand.reason = parse_judgment(done.text)
            counts["unparsable"] += cand.llm_score is None

        def failed(key: str, err: BackendError) -> None:
            counts["failed"] += 1
            cand.reason = f"request_failed: {err}"

        return Job(judge_request(row, cand.text, cfg, gen), answered, failed)

    await dispatcher.run(job(row, c) for row, cs in zip(rows, cands) for c in cs)
    return counts


def relabel(rows: list[Row], vectors: Vectors, gen: GenerateConfig, cfg: RelabelConfig, ledger: Ledger,
            backend: Backend | None = None) -> tuple[Outcome, dict]:
    """Retrieve, judge through the ledger, decide. -> (outcome, counts and cost for the card)."""
    hits = retrieve(rows, vectors, cfg.top_k, cfg.search)
    cands = [candidates(row, h, vectors.pool) for row, h in zip(rows, hits)]
    backend = backend or make_backend(gen)
    budget = Budget(gen, gen.resolved_price(), ledger.totals())
    dispatcher = Dispatcher(backend, ledger, budget, grace_s=gen.timeout_s)

    async def go() -> Counter:
        loop = asyncio.get_running_loop()
        try:  # Ctrl-C stops sending and records the replies in flight, as in generate
            loop.add_signal_handler(signal.SIGINT, dispatcher.interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
        try:
            return await judge_all(rows, cands, dispatcher, ledger, cfg, gen)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await backend.aclose()

    requests = asyncio.run(go())
    outcome = Outcome()
    for row, cs in zip(rows, cands):
        if any(c.llm_score is None and not c.reason.startswith("unparsable") for c in cs):
            outcome.pending += 1  # not answered yet: the next run asks again
        else:
            decide(row, cs, cfg, outcome)
    totals = ledger.totals()
    counts = {"requests": dict(requests), "stopped": dispatcher.stopped,
              "tokens": {"input": totals.tokens_in, "output": totals.tokens_out},
              "cost_usd": round(budget.cost(totals.tokens_in, totals.tokens_out), 6)}
    return outcome, counts


def run_relabel(inputs: list[Path], embedder: Embedder, output: Path, gen: GenerateConfig, cfg: RelabelConfig,
                cache: Path | None = None, pool_file: Path | None = None, batch_size: int = 32,
                backend: Backend | None = None, show_progress: bool = False) -> dict:
    """Read, relabel, write examples.jsonl, judgments.jsonl, rejected.jsonl and the data card; returns the card
    (its `stopped` and `pending_rows` say whether a rerun is needed)."""
    started = time.perf_counter()
    rows = read_rows(inputs)
    pool = Pool(rows, read_pool_texts(pool_file) if pool_file else [])
    vectors = Vectors(embedder, pool, cache, batch_size, show_progress)
    output = Path(output)
    ledger = Ledger(output / "ledger.sqlite")
    try:
        outcome, counts = relabel(rows, vectors, gen, cfg, ledger, backend)
    finally:
        ledger.close()
    write_rows(output / "examples.jsonl", outcome.rows)
    write_rows(output / "judgments.jsonl", outcome.judgments)
    write_rows(output / "rejected.jsonl", outcome.rejected)
    changed = sum(bool(j.get("positive_changed")) for j in outcome.judgments)
    card = {"command": "data relabel", "inputs": [str(p) for p in inputs], "embedder": embedder.name,
            "judge": {"backend": gen.backend, "model": gen.model}, "settings": asdict(cfg), "rows": len(rows),
            "pool_documents": len(pool), "kept": len(outcome.rows), "rejected": len(outcome.rejected),
            "pending_rows": outcome.pending, "positive_changed": changed,
            "rows_without_negative": sum(1 for r in outcome.rows if not r["neg"]),
            "rejected_by_reason": dict(Counter(r["reason"] for r in outcome.rejected).most_common()),
            **counts, "seconds": round(time.perf_counter() - started, 2)}
    return write_card(output, "Relabeled by an LLM judge", card)
