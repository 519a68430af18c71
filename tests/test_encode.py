"""encode_file: formats in and out, resuming after an interruption, input errors, and the 2-process run."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthembed.encode.encode import InputError, encode_file
from synthembed.formats.jsonl import DataError
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder

TEXTS = [f"document {i}: " + "some words about retrieval " * (i % 4) for i in range(23)]  # 5 chunks of 5
IDS = [f"doc-{i}" for i in range(len(TEXTS))]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_decoder(tmp_path_factory.mktemp("dec"))


@pytest.fixture(scope="module")
def emb(model):
    return HFEmbedder(model)


@pytest.fixture(scope="module")
def expected(emb):
    return emb.encode(TEXTS)


def write_input(path, rows: list[dict]):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


class Counting:
    """The real embedder, counting texts encoded and optionally failing once on a given call."""

    def __init__(self, inner, fail_on_call: int | None = None):
        self.inner, self.fail_on_call, self.calls, self.texts = inner, fail_on_call, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kw):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated interruption")
        self.texts += len(texts)
        return self.inner.encode(texts, **kw)


@pytest.mark.parametrize("source", [".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize("target", [".npy", ".parquet"])
def test_formats_in_and_out(tmp_path, emb, expected, source, target):
    rows = [{"id": i, "title": "t", "text": t} for i, t in zip(IDS, TEXTS)]
    src = write_input(tmp_path / f"in{source}", rows)
    out = tmp_path / f"out{target}"
    report = encode_file(emb, src, out, chunk_size=5, id_column="id" if target == ".parquet" else None,
                         show_progress=False)
    assert report.texts == report.rows == len(TEXTS) and report.chunks_encoded == 5 and report.tokens > 0
    if target == ".npy":
        got = np.load(out)
        assert got.dtype == np.float32
    else:
        table = pq.read_table(out)
        assert table.column("id").to_pylist() == IDS
        got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not (tmp_path / f"out{target}.parts").exists()


def test_parquet_ids_default_to_row_numbers_and_queries_get_the_instruction(tmp_path, emb):
    src = write_input(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS[:7]])
    encode_file(emb, src, tmp_path / "q.parquet", role="query", instruction="Find it", chunk_size=3,
                show_progress=False)
    table = pq.read_table(tmp_path / "q.parquet")
    assert table.column("id").to_pylist() == list(range(7))
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()),
                               emb.encode(TEXTS[:7], role="query", instruction="Find it"), atol=1e-5)


def test_resume_encodes_only_the_missing_chunks(tmp_path, emb, expected):
    src = write_input(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out.npy"
    flaky = Counting(emb, fail_on_call=3)  # one encode call per chunk: dies on the third chunk
    with pytest.raises(RuntimeError, match="simulated"):
        encode_file(flaky, src, out, chunk_size=5, show_progress=False)
    parts = tmp_path / "out.npy.parts"
    assert sorted(p.name for p in parts.glob("chunk-*")) == ["chunk-00000.npy", "chunk-00001.npy"]
    assert not out.exists() and not list(parts.glob(".*.tmp"))  # nothing half-written
    again = Counting(emb)
    report = encode_file(again, src, out, chunk_size=5, show_progress=False)
    assert again.texts == len(TEXTS) - 10 and report.chunks_skipped == 2 and report.chunks_encoded == 3
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert not parts.exists()


def test_parts_of_a_different_run_are_refused(tmp_path, emb):
    src = write_input(tmp_path / "in.jsonl", [{"text": t, "other": t.upper()} for t in TEXTS])
    with pytest.raises(RuntimeError, match="simulated"):
        encode_file(Counting(emb, fail_on_call=2), src, tmp_path / "out.npy", chunk_size=5, show_progress=False)
    with pytest.raises(ValueError, match="column changed"):
        encode_file(emb, src, tmp_path / "out.npy", column="other", chunk_size=5, show_progress=False)


@pytest.mark.parametrize("suffix, rows, where, message", [
    (".jsonl", [{"text": "a"}, {"text": "b"}, {"body": "c"}], "3", "missing field 'text'"),
    (".jsonl", [{"text": "a"}, {"text": 7}], "2", "field 'text' is not a string (got int)"),
    (".jsonl", [{"text": "a"}, {"text": "  "}], "2", "field 'text' is empty"),
    (".csv", [{"text": "a"}, {"text": "b"}, {"text": ""}], "4", "field 'text' is empty"),  # line 1 is the header
    (".parquet", [{"text": "a"}, {"text": None}], "row 2", "missing field 'text'"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, emb, suffix, rows, where, message):
    src = write_input(tmp_path / f"in{suffix}", rows)
    with pytest.raises(InputError, match=re.escape(f"{src}:{where}: {message}")):
        encode_file(emb, src, tmp_path / "out.npy", show_progress=False)


def test_missing_column_and_bad_json(tmp_path, emb):
    src = write_input(tmp_path / "in.csv", [{"body": "a"}])
    with pytest.raises(InputError, match=re.escape(f"{src}:2: missing field 'text'")):
        encode_file(emb, src, tmp_path / "out.npy", show_progress=False)
    pq_src = write_input(tmp_path / "in.parquet", [{"body": "a"}])
    with pytest.raises(InputError, match="no column 'text'"):
        encode_file(emb, pq_src, tmp_path / "out.npy", show_progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DataError, match=re.escape(f"{bad}:2: not valid JSON")):
        encode_file(emb, bad, tmp_path / "out.npy", show_progress=False)


RANK_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from synthembed.encode.encode import encode_file
from synthembed.model.embedder import HFEmbedder
r = encode_file(HFEmbedder(sys.argv[1]), sys.argv[2], sys.argv[3], chunk_size=5, show_progress=False)
print(json.dumps({"rank": r.rank, "chunks": r.chunks_encoded}))
"""


@pytest.mark.parametrize("sync", ["gloo", "poll"])
def test_two_processes_equal_one(tmp_path, model, expected, sync):
    src = write_input(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out.npy"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    if sync == "gloo":
        base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(model), str(src), str(out)],
                              env={**base, "RANK": str(r), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in results]
    assert reports == [{"rank": 0, "chunks": 3}, {"rank": 1, "chunks": 2}]  # chunks 0, 2, 4 and 1, 3
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert not (tmp_path / "out.npy.parts").exists()


def test_cli_device_option(tmp_path, model, expected):
    from typer.testing import CliRunner

    from synthembed.cli import app

    src = write_input(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    done = CliRunner().invoke(app, ["encode", str(src), "--model", str(model), "-o", str(tmp_path / "a.npy"),
                                    "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, atol=1e-5)
    wrong = CliRunner().invoke(app, ["encode", str(src), "--model", str(model), "-o", str(tmp_path / "b.npy"),
                                     "--device", "tpu:3", "-q"])
    assert wrong.exit_code == 2 and "device 'tpu:3'" in wrong.output


def test_token_count_is_the_embedders_own(tmp_path, emb):
    """The report counts the tokens the embedder embedded (truncated, EOS included) without tokenizing again."""
    src = write_input(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    report = encode_file(emb, src, tmp_path / "out.npy", chunk_size=5, show_progress=False)
    assert report.tokens == sum(len(x) for x in emb.token_ids(TEXTS))
