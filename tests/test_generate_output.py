"""What generate writes: run-unique example ids, merging runs without losing rows, and each family's training
pair as the paper defines it."""

from __future__ import annotations

import json
import sqlite3

from synthembed.data.merge import merge_examples
from synthembed.data.pairs import read_pairs
from synthembed.formats.examples import content_hash
from synthembed.generate.run import run_generate
from synthembed.tasks.families import FAMILIES
from synthembed.testing.replay_server import ReplayServer
from tests.conftest import write_rows
from tests.test_generate import config, read_rows

# The paper's pair per family: (query, positive, hard negative or None for in-batch negatives only).
PAPER_PAIRS = {"short-long": ("user_query", "positive_document", "hard_negative_document"),
               "long-short": ("input_text", "label", "misleading_label"),
               "short-short": ("input", "positive_document", None),
               "sts": ("S1", "S2", "S3"), "bitext": ("S1", "S2", "S3")}


def digest(row: dict) -> str:
    return content_hash(row["family"], row, FAMILIES[row["family"]].keys)


def test_merging_runs_with_different_seeds_keeps_every_distinct_row(tmp_path, task_pool):
    runs = []
    with ReplayServer() as server:
        for seed in (1, 2):
            cfg = config(tmp_path / f"seed{seed}", server, task_pool, seed=seed)
            run_generate(cfg, show_progress=False)
            runs.append(cfg.output_dir)
    rows = [r for run in runs for r in read_rows(run / "examples.jsonl")]
    summary = merge_examples(runs, tmp_path / "merged")
    merged = read_rows(tmp_path / "merged" / "examples.jsonl")
    assert len(merged) == len({digest(r) for r in rows}), summary
    assert len({r["id"] for r in merged}) == len(merged) and "new ids" not in summary  # ids never clash
    assert all(r["id"].startswith(f"{r['family']}-") and r["id"].endswith(r["key"][:12]) for r in merged)


def test_merge_keeps_different_texts_that_share_an_id_and_reports_them(tmp_path):
    def sts(row_id, s1):
        return {"id": row_id, "family": "sts", "language": "English", "S1": s1, "S2": "A cat sits.", "S3": "Rain."}

    # Files from before run-unique ids: positions, so two runs reuse "sts-000000" for different examples.
    a = write_rows(tmp_path / "a.jsonl", [sts("sts-000000", "One."), sts("sts-000001", "Two.")])
    b = write_rows(tmp_path / "b.jsonl", [sts("sts-000000", "Three."), sts("sts-000007", "two.")])
    summary = merge_examples([a, b], tmp_path / "merged")
    merged = read_rows(tmp_path / "merged" / "examples.jsonl")
    assert [r["S1"] for r in merged] == ["One.", "Two.", "Three."]  # "two." is "Two." again: dropped
    assert merged[2]["id"].startswith("sts-000000~") and len({r["id"] for r in merged}) == 3
    assert "1 same text" in summary and "1 rows shared an id with a different text" in summary


def test_an_old_ledger_exports_run_unique_ids(tmp_path, task_pool):
    with ReplayServer() as server:
        cfg = config(tmp_path, server, task_pool, num_examples=10)
        run_generate(cfg, show_progress=False)
        with sqlite3.connect(cfg.output_dir / "ledger.sqlite") as db:  # as older versions stored records
            for item, record in db.execute("SELECT item, record FROM items WHERE status = 'kept'").fetchall():
                db.execute("UPDATE items SET record = ? WHERE item = ?",
                           (json.dumps({**json.loads(record), "id": item}), item))
        db.close()
        run_generate(cfg, show_progress=False)
        assert len(server.log()) == 10  # the second run only re-exported
    rows = read_rows(cfg.output_dir / "examples.jsonl")
    assert rows and all(r["id"].endswith("-" + r["key"][:12]) for r in rows)


def test_every_generated_family_becomes_the_papers_pair(tmp_path, task_pool):
    with ReplayServer() as server:
        cfg = config(tmp_path, server, task_pool)
        run_generate(cfg, show_progress=False)
    rows = read_rows(cfg.output_dir / "examples.jsonl")
    pairs, skipped = read_pairs(cfg.output_dir)
    assert skipped == 0 and len(pairs) == len(rows) and {r["family"] for r in rows} == set(PAPER_PAIRS)
    for row, pair in zip(rows, pairs):
        query, positive, negative = PAPER_PAIRS[row["family"]]
        assert (pair.query, pair.positive, pair.negatives) == (row[query], row[positive],
                                                               [row[negative]] if negative else [])
        symmetric = row["family"] in ("sts", "bitext")
        assert pair.instruct_documents == symmetric and pair.source == row["family"]
        assert pair.instruction == row["task"] if not symmetric else pair.instruction.startswith("Retrieve")
