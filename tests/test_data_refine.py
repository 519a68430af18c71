"""data mine / filter --consistency / relabel: against a numpy reference, hand-made pools with known answers, the
loopback replay server as the LLM judge, and the command line with a tiny random encoder."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from synthembed.config import GenerateConfig
from synthembed.formats.jsonl import DataError
from synthembed.data.pairs import read_pairs
from synthembed.refine.consistency import run_filter
from synthembed.refine.mine import MineConfig, run_mine
from synthembed.refine.relabel import RelabelConfig, parse_judgment, run_relabel
from synthembed.testing.replay_data import SENTENCES
from synthembed.testing.replay_server import ReplayServer
from tests.conftest import write_rows

ENGLISH = SENTENCES["English"]


class BagOfWords:
    """An embedder whose vectors are known: hashed word counts (dim 256). Role and instruction are ignored, so
    a query scores highest against the document that shares most of its words."""

    name = "bag-of-words"
    fingerprint = "bag-of-words-256"
    max_length = 512

    def __init__(self):
        self.calls = 0

    def encode(self, texts, role="document", instruction=None, batch_size=32, normalize=True, show_progress=False):
        self.calls += 1
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % 256] += 1
            # a little noise fixed per text: no two documents tie, so the order of results is unambiguous
            out[row] += 0.01 * np.random.default_rng(zlib.crc32(text.encode())).standard_normal(256)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12) if normalize else out


def _query(sentence: str) -> str:
    words = re.findall(r"\w+", sentence)
    return " ".join(words[1:6])


def labeled_rows() -> list[dict]:
    """A query from each English sentence, its sentence as the positive, its German version as the negative."""
    return [{"query": _query(s), "pos": [s], "neg": [SENTENCES["German"][i]], "prompt": "Find the sentence."}
            for i, s in enumerate(ENGLISH)]


def near_duplicates() -> list[dict]:
    """Sentences with one word changed: they score close to the positive, so the false-negative rule drops them."""
    return [{"text": s.replace(" the ", " a ", 1) + " Indeed."} for s in ENGLISH]


def reference_negatives(rows, pool, n, ratio, margin):
    """Brute force: every pool document scored, own positives and the query left out, the rule applied."""
    emb = BagOfWords()
    docs = emb.encode(pool)
    out, dropped = [], 0
    for row in rows:
        query = emb.encode([row["query"]])[0]
        scores = docs @ query  # (len(pool),)
        positive = float(scores[pool.index(row["pos"][0])])
        limit = min(ratio * positive, positive - margin)
        order = [i for i in np.argsort(-scores, kind="stable") if pool[i] not in row["pos"] and pool[i] != row["query"]]
        allowed = [i for i in order if scores[i] <= limit]
        dropped += len(order) - len(allowed)
        out.append([pool[i] for i in allowed[:n]])
    return out, dropped


def test_mine_matches_numpy_reference(tmp_path):
    rows = labeled_rows()
    data = write_rows(tmp_path / "pairs.jsonl", rows)
    extra = write_rows(tmp_path / "pool.jsonl", near_duplicates())
    pool = [t for r in rows for t in r["pos"] + r["neg"]] + [d["text"] for d in near_duplicates()]
    cfg = MineConfig(negatives=3, depth=len(pool), max_ratio=0.9, margin=0.01, search="faiss")
    card = run_mine([data], BagOfWords(), tmp_path / "out", cfg, pool_file=extra)
    expected, dropped = reference_negatives(rows, pool, 3, 0.9, 0.01)
    written = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    assert [r["neg"] for r in written] == expected
    assert card["candidates_dropped_as_false_negatives"] == dropped > 0
    # the near-duplicate of a row's positive is never its negative
    assert not any(d["text"] in r["neg"] and d["text"].startswith(r["pos"][0][:20])
                   for r, d in zip(written, near_duplicates()))
    pairs, _ = read_pairs(tmp_path / "out")  # the trainer reads the output directory
    assert [p.negatives for p in pairs] == expected and pairs[0].instruction == "Find the sentence."
    card_md = (tmp_path / "out" / "data_card.md").read_text()
    assert "negatives_written | 36" in card_md and json.loads((tmp_path / "out" / "data_card.json").read_text())


def test_mine_torch_search_and_cache_agree(tmp_path):
    data = write_rows(tmp_path / "pairs.jsonl", labeled_rows())
    emb = BagOfWords()
    cfg = MineConfig(negatives=2, depth=10, search="torch")
    first = run_mine([data], emb, tmp_path / "a", cfg, cache=tmp_path / "cache")
    calls = emb.calls
    second = run_mine([data], emb, tmp_path / "b", MineConfig(negatives=2, depth=10, search="faiss"),
                      cache=tmp_path / "cache")
    assert emb.calls == calls  # every vector came from the cache
    assert (tmp_path / "a" / "examples.jsonl").read_text() == (tmp_path / "b" / "examples.jsonl").read_text()
    assert first["negatives_written"] == second["negatives_written"] == 24


def generated_rows() -> list[dict]:
    """Generate-layout rows where the right answer is known: rows 0-2 have their own sentence as the positive,
    row 3's positive is another sentence (the query's sentence is row 4's positive), row 4 is fine."""
    def row(i, query, positive):
        return {"id": f"short-long-{i}", "family": "short-long", "task": "Find the sentence.", "language": "English",
                "user_query": query, "positive_document": positive, "hard_negative_document": SENTENCES["French"][i]}

    return [row(0, _query(ENGLISH[0]), ENGLISH[0]), row(1, _query(ENGLISH[1]), ENGLISH[1]),
            row(2, _query(ENGLISH[2]), ENGLISH[2]), row(3, _query(ENGLISH[3]), ENGLISH[9]),
            row(4, _query(ENGLISH[5]), ENGLISH[5]), row(5, _query(ENGLISH[3]), ENGLISH[3])]


def test_filter_consistency_keeps_exactly_the_consistent_rows(tmp_path):
    data = write_rows(tmp_path / "examples.jsonl", generated_rows())
    card = run_filter([data], BagOfWords(), tmp_path / "out", k=1)
    kept = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["short-long-0", "short-long-1", "short-long-2", "short-long-4",
                                        "short-long-5"]
    assert kept[0] == generated_rows()[0]  # kept rows are written as they came
    assert [(r["id"], r["line"], r["reason"], r["top_document"]) for r in rejected] == [
        ("short-long-3", 4, "positive_not_in_top_1", ENGLISH[3])]
    assert card["kept"] == 5 and card["rejected_by_reason"] == {"positive_not_in_top_1": 1}
    # Identical rows (the same query and positive twice) do not compete with each other.
    same = write_rows(tmp_path / "same.jsonl", [generated_rows()[0], generated_rows()[0]])
    assert run_filter([same], BagOfWords(), tmp_path / "same", k=1)["kept"] == 2


def judged(tmp_path, server, **kw):
    gen = GenerateConfig(**{"backend": "openai", "model": "replay", "base_url": server.base_url, "timeout_s": 5,
                            "max_retries": 2, "price": {"input": 1.0, "output": 2.0}, **kw})
    rows = [{"query": "library opens nine morning", "pos": [ENGLISH[8]], "neg": [], "prompt": "Find the sentence."},
            {"query": "solar panels school roof electricity", "pos": [ENGLISH[10]], "neg": [],
             "prompt": "Find the sentence."},
            {"query": "quantum chromodynamics lattice", "pos": [ENGLISH[11]], "neg": [], "prompt": "Find it."}]
    data = write_rows(tmp_path / "pairs.jsonl", rows)
    pool = write_rows(tmp_path / "pool.jsonl", [{"text": s} for s in ENGLISH])
    return run_relabel([data], BagOfWords(), tmp_path / "out", gen, RelabelConfig(top_k=3), pool_file=pool)


def test_relabel_end_to_end_and_rerun_sends_nothing(tmp_path):
    with ReplayServer(script={2: "prose"}) as server:
        card = judged(tmp_path, server)
        sent = len(server.log())
        out = (tmp_path / "out" / "examples.jsonl").read_text()
        again = judged(tmp_path, server)
        assert len(server.log()) == sent  # every judgment came from the ledger
    assert (tmp_path / "out" / "examples.jsonl").read_text() == out
    assert sent == card["requests"]["sent"] == 3 * 4 and again["requests"] == {"from_ledger": 12, "unparsable": 0}
    rows = [json.loads(line) for line in out.splitlines()]
    # Row 1: the bread sentence was its positive; the judge prefers the library sentence the embedder found.
    assert rows[0]["pos"] == [ENGLISH[0]] and rows[0]["neg"] and rows[0]["neg"][0] != ENGLISH[0]
    assert rows[1]["pos"] == [ENGLISH[10]]  # already right
    assert len(rows) == 2 and card["rejected_by_reason"] == {"no_relevant_candidate": 1}
    judgments = [json.loads(line) for line in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert judgments[0]["positive_changed"] and judgments[0]["candidates"][0]["original_positive"]
    assert all(c["reason"] and c["llm_score"] is not None for j in judgments for c in j["candidates"])
    assert card["positive_changed"] == 1 and card["pending_rows"] == 0
    tokens = card["tokens"]
    assert card["cost_usd"] > 0
    assert card["cost_usd"] == pytest.approx((tokens["input"] * 1.0 + tokens["output"] * 2.0) / 1e6, abs=1e-6)


def test_relabel_budget_stop_leaves_rows_pending_then_resumes(tmp_path):
    with ReplayServer() as server:
        first = judged(tmp_path, server, max_tokens_total=1500)
        assert first["stopped"] == "budget" and first["pending_rows"] > 0
        done = judged(tmp_path, server)
        assert len(server.log()) == 12  # the second run asked only what the first had not
    assert done["pending_rows"] == 0 and done["kept"] == 2
    assert done["requests"]["from_ledger"] == first["requests"]["sent"]


def test_relabel_failed_requests_are_asked_again(tmp_path):
    with ReplayServer(script={1: "500", 2: "500"}) as server:
        first = judged(tmp_path, server, max_retries=0)
        second = judged(tmp_path, server, max_retries=0)
        assert len(server.log()) == 12 + 2  # the two failed judgments, and nothing else, asked twice
    assert first["requests"]["failed"] == 2 and first["pending_rows"] >= 1
    assert second["requests"]["sent"] == 2 and second["pending_rows"] == 0 and second["kept"] == 2


@pytest.mark.parametrize("reply, expected", [
    ('{"reason": "names the place", "score": 3}', (3, "names the place")),
    ('Sure: {"reason": "r", "score": "2"}', (2, "r")),  # local backends write every value as a string
    ('{"reason": "r", "score": 2.0}', (2, "r")),
    ('{"reason": "r", "score": "high"}', (None, "unparsable: score 'high' is no number")),
    ('{"reason": "r", "score": 5}', (None, "unparsable: score 5 is not 0, 1, 2 or 3")),
    ('{"reason": "r"}', (None, "unparsable: score None is no number")),
    ("", (None, "unparsable: empty")),
])
def test_parse_judgment(reply, expected):
    assert parse_judgment(reply) == expected


@pytest.mark.parametrize("rows, message", [
    ([{"query": "q", "pos": ["d"], "neg": []}, {"query": "q2", "neg": []}], ":2: field 'pos' is missing"),
    ([{"query": "q", "pos": "d"}], ":1: field 'pos' must be a list of non-empty texts"),
    ([{"family": "short-long", "task": "t", "user_query": "", "positive_document": "p",
       "hard_negative_document": "n"}], ":1: field 'user_query' is empty or not text"),
])
def test_bad_input_names_file_line_and_field(tmp_path, rows, message):
    data = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(f"{data}{message}")):
        run_mine([data], BagOfWords(), tmp_path / "out", MineConfig())


def test_bad_pool_file_names_line_and_field(tmp_path):
    data = write_rows(tmp_path / "pairs.jsonl", labeled_rows())
    pool = write_rows(tmp_path / "pool.jsonl", [{"text": "fine"}, {"body": "no text"}])
    with pytest.raises(DataError, match=re.escape(f"{pool}:2: field 'text' is missing")):
        run_filter([data], BagOfWords(), tmp_path / "out", pool_file=pool)


def test_commands_with_a_tiny_encoder(tmp_path, one_thread, monkeypatch):
    from synthembed.cli import app
    from synthembed.testing.tiny import tiny_encoder

    monkeypatch.setenv("SYNTHEMBED_CACHE", str(tmp_path / "cache"))
    model = tiny_encoder(tmp_path / "encoder")
    data = write_rows(tmp_path / "examples.jsonl", generated_rows())
    runner = CliRunner()
    mined = runner.invoke(app, ["data", "mine", str(data), "-m", str(model), "-o", str(tmp_path / "mined"),
                                "-n", "2", "--max-ratio", "1", "-q"])
    assert mined.exit_code == 0, mined.output
    pairs, _ = read_pairs(tmp_path / "mined")
    assert len(pairs) == 6 and all(len(p.negatives) <= 2 for p in pairs) and any(p.negatives for p in pairs)
    assert list((tmp_path / "cache" / "evaluate" / "embeddings").iterdir())  # the evaluator's cache was used
    kept = runner.invoke(app, ["data", "filter", "--consistency", str(data), "-m", str(model), "-k", "50",
                               "-o", str(tmp_path / "filtered"), "-q"])
    assert kept.exit_code == 0 and "kept 6 of 6 rows" in kept.output
    missing = runner.invoke(app, ["data", "filter", str(data), "-m", str(model), "-o", str(tmp_path / "f")])
    assert missing.exit_code == 2 and "choose a filter: --consistency" in missing.output
    bad = write_rows(tmp_path / "bad.jsonl", [{"query": "q"}])
    failed = runner.invoke(app, ["data", "mine", str(bad), "-m", str(model), "-o", str(tmp_path / "x")])
    assert failed.exit_code == 2 and f"{bad}:1: field 'pos' is missing" in failed.output
    with ReplayServer() as server:
        relabeled = runner.invoke(app, ["data", "relabel", str(data), "-m", str(model), "-o", str(tmp_path / "rl"),
                                        "--backend", "openai", "--llm", "replay", "--base-url", server.base_url,
                                        "-k", "2", "-q"])
    assert relabeled.exit_code == 0, relabeled.output
    assert "requests sent" in relabeled.output and (tmp_path / "rl" / "ledger.sqlite").is_file()
    assert "# Relabeled by an LLM judge" in (tmp_path / "rl" / "data_card.md").read_text()


class Recording(BagOfWords):
    """Bag of words that records how each text was asked for."""

    def __init__(self):
        super().__init__()
        self.asked: dict[str, set] = {}

    def encode(self, texts, role="document", instruction=None, **kw):
        for text in texts:
            self.asked.setdefault(text, set()).add((role, instruction))
        return super().encode(texts, role, instruction, **kw)


def test_symmetric_rows_embed_documents_like_queries(tmp_path):
    """STS rows (instruction on both sides in training and evaluation) score the pool as instructed queries;
    retrieval rows score it as plain documents."""
    sts = [{"id": f"sts-{i}", "family": "sts", "language": "English", "S1": ENGLISH[i], "S2": ENGLISH[i] + " Yes.",
            "S3": ENGLISH[i + 1]} for i in range(3)]
    data = write_rows(tmp_path / "examples.jsonl", sts + generated_rows()[:2])
    emb = Recording()
    run_mine([data], emb, tmp_path / "out", MineConfig(negatives=1, depth=5))
    instruction = "Retrieve semantically similar text."
    assert emb.asked[ENGLISH[0] + " Yes."] == {("query", instruction), ("document", None)}
    assert ("query", instruction) in emb.asked[ENGLISH[0]]  # an STS query ...
    assert ("document", None) in emb.asked[ENGLISH[0]]  # ... that is also a retrieval row's positive
    written = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    assert [r["instruct_documents"] for r in written] == [True, True, True, False, False]
    assert all(r["neg"] and r["neg"][0] != r["query"] for r in written)  # the query itself is never a negative


def test_relabel_with_the_local_backend_reruns_nothing(tmp_path, one_thread):
    from synthembed.generate.backends.local import LocalBackend
    from synthembed.testing.tiny import tiny_decoder

    model = tiny_decoder(tmp_path / "llm")
    gen = GenerateConfig(backend="local", model=str(model))
    data = write_rows(tmp_path / "pairs.jsonl", labeled_rows()[:2])
    cfg = RelabelConfig(top_k=1, max_tokens=12)
    backends = [LocalBackend(str(model), dtype="fp32") for _ in range(2)]
    first, second = (run_relabel([data], BagOfWords(), tmp_path / "out", gen, cfg, backend=b) for b in backends)
    assert sum(backends[0].batch_sizes) == first["requests"]["sent"] == 4
    assert backends[1].batch_sizes == [] and second["requests"]["from_ledger"] == 4
    # a random model's score is no number: its judgments are unusable, so no row is kept, and the card says why
    judgments = [json.loads(line) for line in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert all(c["reason"].startswith("unparsable") for j in judgments for c in j["candidates"])
    assert second["kept"] == 0 and second["rejected_by_reason"] == {"no_candidate_judged": 2}
