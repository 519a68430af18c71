"""Embed one column of a JSONL, CSV or Parquet file into .npy (rows in input order) or Parquet (id, embedding).

Rows are split into chunks of `chunk_size`; each finished chunk is written atomically to
OUTPUT.parts/chunk-00042.npy, so a restarted run skips what is done. Under torchrun / accelerate launch (RANK and
WORLD_SIZE set) rank r encodes chunks r, r + world, ... and rank 0 joins the parts once all of them exist.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from synthembed.formats.jsonl import DataError, read_jsonl

log = logging.getLogger(__name__)


class InputError(DataError):
    """A row of the input cannot be embedded; the message names file, line and field."""


@dataclass
class EncodeReport:
    output: Path
    rows: int
    chunks_encoded: int  # by this process
    chunks_skipped: int  # this process's chunks finished by an earlier run
    texts: int  # encoded by this process
    tokens: int  # of those texts, after truncation
    seconds: float
    rank: int = 0
    world: int = 1

    def __str__(self) -> str:
        s = max(self.seconds, 1e-9)
        who = f"rank {self.rank}/{self.world}: " if self.world > 1 else ""
        return (f"{who}encoded {self.texts} texts ({self.tokens} tokens) in {self.seconds:.1f} s: "
                f"{self.texts / s:.1f} texts/s, {self.tokens / s:.0f} tokens/s; "
                f"{self.chunks_skipped} chunks already done; output {self.output}")


def count_tokens(embedder, texts: Sequence[str], tokenizer=None) -> list[int]:
    """Tokens per text as the model sees it before truncation (EOS included for last-token pooling).
    A fast tokenizer keeps padding/truncation state, so a thread other than the model's must pass its own copy."""
    tok = tokenizer or getattr(embedder, "tokenizer", None)
    if tok is None:
        return [len(t.split()) + 1 for t in texts]
    ids = tok(list(texts), add_special_tokens=True)["input_ids"]
    if getattr(embedder, "pooling", None) != "last":
        return [len(x) for x in ids]
    return [len(x) + (not x or x[-1] != tok.eos_token_id) for x in ids]


def read_column(path: Path, column: str, id_column: str | None = None) -> tuple[list[str], list | None]:
    """Texts (and ids) from a .jsonl, .csv or .parquet file; an InputError names the file, line and field."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        for field in filter(None, (column, id_column)):
            if field not in names:
                raise InputError(f"{path}: no column {field!r} (columns: {', '.join(names)})")
        table = pq.read_table(path, columns=list(dict.fromkeys(filter(None, (column, id_column)))))
        rows = ((f"row {i + 1}", {c: table.column(c)[i].as_py() for c in table.column_names})
                for i in range(table.num_rows))
    elif suffix in (".jsonl", ".json", ".csv"):
        rows = _csv_rows(path) if suffix == ".csv" else read_jsonl(path)
    else:
        raise InputError(f"{path}: unsupported input type {suffix!r} (use .jsonl, .csv or .parquet)")
    texts, ids = [], [] if id_column else None
    for where, row in rows:
        value = row.get(column)
        if column not in row or value is None:
            raise InputError(f"{path}:{where}: missing field {column!r}")
        if not isinstance(value, str):
            raise InputError(f"{path}:{where}: field {column!r} is not a string (got {type(value).__name__})")
        if not value.strip():
            raise InputError(f"{path}:{where}: field {column!r} is empty")
        texts.append(value)
        if id_column:
            if row.get(id_column) is None:
                raise InputError(f"{path}:{where}: missing field {id_column!r}")
            ids.append(row[id_column])
    if not texts:
        raise InputError(f"{path}: no rows")
    return texts, ids


def _csv_rows(path: Path):
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        start = reader.line_num + 2  # the first record starts after the header line
        for row in reader:
            yield start, {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1  # a quoted field may span lines: report where the record begins


def encode_file(embedder, input_path, output_path, column: str = "text", role: str = "document",
                instruction: str | None = None, batch_size: int = 32, chunk_size: int = 10_000,
                id_column: str | None = None, show_progress: bool = True) -> EncodeReport:
    input_path, output_path = Path(input_path), Path(output_path)
    kind = output_path.suffix.lower()
    if kind not in (".npy", ".parquet"):
        raise ValueError(f"{output_path}: output must end in .npy or .parquet")
    texts, ids = read_column(input_path, column, id_column)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    parts = output_path.with_name(output_path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    _check_manifest(parts, {"input": str(input_path.resolve()), "bytes": input_path.stat().st_size,
                            "mtime_ns": input_path.stat().st_mtime_ns, "column": column, "role": role,
                            "instruction": instruction, "rows": len(texts), "chunk_size": chunk_size,
                            "embedder": getattr(embedder, "fingerprint", None)})
    chunks = [(i, texts[s : s + chunk_size]) for i, s in enumerate(range(0, len(texts), chunk_size))]
    mine = [(i, c) for i, c in chunks if i % world == rank]
    todo = [(i, c) for i, c in mine if not _chunk_path(parts, i).exists()]
    report = EncodeReport(output_path, len(texts), len(todo), len(mine) - len(todo), 0, 0, 0.0, rank, world)
    group, own_group = _barrier_group(rank, world)
    start = time.perf_counter()
    with Progress(disable=not show_progress, transient=True) as progress:
        bar = progress.add_task(f"encode {input_path.name}", total=sum(len(c) for _, c in todo))
        for i, chunk in todo:
            # Sub-batches of a chunk keep length-sorted batching while moving the bar more than once a chunk.
            step = batch_size * 16
            parts_of_chunk = []
            for s in range(0, len(chunk), step):
                piece = chunk[s : s + step]
                before = getattr(embedder, "tokens_encoded", None)
                parts_of_chunk.append(embedder.encode(piece, role=role, instruction=instruction,
                                                      batch_size=batch_size, normalize=True))
                if before is not None:  # counted while encoding
                    report.tokens += embedder.tokens_encoded - before
                else:
                    report.tokens += sum(min(n, embedder.max_length) for n in count_tokens(embedder, piece))
                progress.advance(bar, len(piece))
            _save_atomic(_chunk_path(parts, i), np.concatenate(parts_of_chunk).astype(np.float32))
            report.texts += len(chunk)
    report.seconds = time.perf_counter() - start
    if show_progress:
        Console(stderr=True, soft_wrap=True).print(str(report))
    log.info("%s", report)
    _wait_for_all(group, parts, len(chunks), rank, world)
    if own_group:
        import torch.distributed as dist

        dist.destroy_process_group()
    if rank == 0:
        _join(parts, len(chunks), output_path, ids)
    return report


def _chunk_path(parts: Path, i: int) -> Path:
    return parts / f"chunk-{i:05d}.npy"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, array)
    os.replace(tmp, path)  # a crash leaves either no chunk or a whole one


def _check_manifest(parts: Path, manifest: dict) -> None:
    """Refuse to mix chunks of a different input, column, role or model into this output."""
    path = parts / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in manifest if old.get(k) != manifest[k]]
        if changed:
            raise ValueError(f"{parts} holds chunks of a different run ({', '.join(changed)} changed); "
                             "delete it to start over")
        return
    tmp = parts / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


def _barrier_group(rank: int, world: int):
    """(group to wait on, whether we created the default group); group None with world > 1 means poll files."""
    if world <= 1:
        return None, False
    import torch.distributed as dist

    timeout = timedelta(days=7)  # ranks may finish far apart, e.g. when resuming with uneven work left
    if dist.is_available() and dist.is_initialized():  # accelerate / the caller set it up, perhaps on NCCL
        return dist.new_group(backend="gloo", timeout=timeout), False
    if dist.is_available() and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timeout)
        return dist.group.WORLD, True
    return None, False


def _wait_for_all(group, parts: Path, n_chunks: int, rank: int, world: int) -> None:
    if world <= 1:
        return
    if group is not None:
        import torch.distributed as dist

        dist.barrier(group=group)
        return
    if rank != 0:
        return
    last_note = time.monotonic()
    while missing := [i for i in range(n_chunks) if not _chunk_path(parts, i).exists()]:
        if time.monotonic() - last_note > 60:
            log.info("rank 0 waiting for %d chunks from other ranks (first: %d)", len(missing), missing[0])
            last_note = time.monotonic()
        time.sleep(0.5)


def _join(parts: Path, n_chunks: int, output: Path, ids: list | None) -> None:
    missing = [i for i in range(n_chunks) if not _chunk_path(parts, i).exists()]
    if missing:
        raise RuntimeError(f"{parts}: chunks {missing[:10]} are missing; rerun to encode them")
    arrays = [np.load(_chunk_path(parts, i), mmap_mode="r") for i in range(n_chunks)]
    rows, dim = sum(len(a) for a in arrays), arrays[0].shape[1]
    tmp = output.with_name(f".{output.name}.tmp")
    if output.suffix.lower() == ".npy":
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, dim))
        row = 0
        for a in arrays:
            out[row : row + len(a)] = a
            row += len(a)
        out.flush()
        del out
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        id_array = pa.array(ids if ids is not None else range(rows))  # one type for all chunks
        writer, row = None, 0
        for a in arrays:
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a).reshape(-1)), dim)
            table = pa.table({"id": id_array.slice(row, len(a)), "embedding": vectors})
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            row += len(a)
        writer.close()
    os.replace(tmp, output)
    del arrays
    shutil.rmtree(parts)
