"""The run's SQLite ledger: every response paid for, and every item's (or brainstorm call's) verdict, committed
together.

A request is keyed by a hash of (model, prompt, sampling params, seed). A response and the verdict on the item it
produced are written in one transaction, so a process killed at any moment leaves either both or neither; a
resumed run skips what is recorded and never pays for a request twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from synthembed.generate.backends.base import Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL,
    response TEXT NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    usage_from TEXT NOT NULL, finish_reason TEXT, seconds REAL NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, family TEXT NOT NULL, language TEXT NOT NULL, key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('kept', 'rejected', 'failed')),
    reason TEXT, content_hash TEXT, record TEXT
);
CREATE INDEX IF NOT EXISTS items_content ON items (content_hash) WHERE status = 'kept';
CREATE TABLE IF NOT EXISTS brainstorms (
    call TEXT PRIMARY KEY, family TEXT NOT NULL, key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('parsed', 'rejected', 'failed')), reason TEXT
);
"""


@dataclass(frozen=True)
class Totals:
    requests: int
    tokens_in: int
    tokens_out: int


class Ledger:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- requests -------------------------------------------------------------------------------------------
    def response(self, key: str) -> Completion | None:
        row = self.db.execute(
            "SELECT response, tokens_in, tokens_out, finish_reason, usage_from FROM requests WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else Completion(row[0], row[1], row[2], row[3], row[4])

    def record_request(self, key: str, kind: str, model: str, prompt: str, done: Completion, seconds: float) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key, kind, model, prompt, done.text, done.tokens_in, done.tokens_out, done.usage_from,
             done.finish_reason, seconds, time.time()),
        )

    def totals(self) -> Totals:
        n, t_in, t_out = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0) FROM requests"
        ).fetchone()
        return Totals(n, t_in, t_out)

    # -- items ----------------------------------------------------------------------------------------------
    def finished_items(self) -> set[str]:
        """Items with a verdict; failed requests are retried on the next run."""
        return {r[0] for r in self.db.execute("SELECT item FROM items WHERE status != 'failed'")}

    def record_item(
        self,
        item: str,
        family: str,
        language: str,
        key: str,
        verdict: str | None,
        record: dict | None,
        content_hash: str | None,
        request: tuple[str, str, Completion, float] | None = None,
    ) -> str:
        """Store an item's verdict (None: kept) with the response that produced it; returns the final status."""
        with self.db:  # one transaction: the response and the verdict land together
            self.db.execute("BEGIN")
            if request is not None:
                self.record_request(key, "example", *request)
            status = "kept" if verdict is None else ("failed" if verdict.startswith("request_failed") else "rejected")
            if status == "kept" and self._is_duplicate(content_hash, item):
                status, verdict = "rejected", "duplicate"
            self.db.execute(
                "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?)",
                (item, family, language, key, status, verdict, content_hash,
                 json.dumps(record, ensure_ascii=False) if record is not None else None),
            )
        return status

    def _is_duplicate(self, content_hash: str | None, item: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM items WHERE content_hash = ? AND status = 'kept' AND item != ?", (content_hash, item)
        ).fetchone()
        return row is not None

    # -- brainstorm calls ------------------------------------------------------------------------------------
    def record_brainstorm(self, call: str, family: str, key: str, reason: str | None,
                          request: tuple[str, str, Completion, float] | None = None) -> None:
        """A brainstorm call's verdict (None: parsed) with the response it came from, in one transaction."""
        status = "parsed" if reason is None else ("failed" if reason.startswith("request_failed") else "rejected")
        with self.db:
            self.db.execute("BEGIN")
            if request is not None:
                self.record_request(key, "brainstorm", *request)
            self.db.execute("INSERT OR REPLACE INTO brainstorms VALUES (?,?,?,?,?)",
                            (call, family, key, status, reason))

    def brainstorm_counts(self) -> Counter:
        return Counter(dict(self.db.execute("SELECT status, COUNT(*) FROM brainstorms GROUP BY status").fetchall()))

    def unusable_brainstorms(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT b.call, b.status, b.reason, r.response FROM brainstorms b LEFT JOIN requests r ON r.key = b.key "
            "WHERE b.status != 'parsed' ORDER BY b.call")
        return [{"id": a, "status": b, "reason": c, "response": d} for a, b, c, d in rows]

    def kept_records(self) -> list[dict]:
        rows = self.db.execute("SELECT record FROM items WHERE status = 'kept' ORDER BY item")
        return [json.loads(r[0]) for r in rows]

    def status_counts(self) -> tuple[Counter, Counter]:
        """(count per status, count per rejection/failure reason)."""
        statuses, reasons = Counter(), Counter()
        for status, reason, n in self.db.execute("SELECT status, reason, COUNT(*) FROM items GROUP BY status, reason"):
            statuses[status] += n
            if reason:
                reasons[reason.split(":")[0]] += n
        return statuses, reasons
