"""Training pairs: (instruction, query, positive, negatives) from generated examples or labeled JSONL.

How each generated family becomes a pair follows the paper: the task definition is the query's instruction;
short-long gives (query, positive, hard negative), long-short (input, label, misleading label), short-short and
long-long (input, positive) with in-batch negatives only; STS and bitext (S1, S2, S3) with fixed instructions on
both sides (documents are formatted like queries), as evaluation encodes both sentences of an STS or bitext pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from synthembed.formats.instructions import type_instruction
from synthembed.formats.jsonl import DataError, read_jsonl
from synthembed.tasks.families import FAMILIES

log = logging.getLogger(__name__)

# the fixed instructions of the symmetric families: the paper's STS and bitext instructions
SYMMETRIC_INSTRUCTIONS = {"sts": type_instruction("STS"), "bitext": type_instruction("BitextMining")}
SourceKind = Literal["auto", "generated", "labeled"]


@dataclass
class TrainPair:
    instruction: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    source: str = ""  # file stem, or the generated family: batches can be drawn from one at a time
    in_batch_negatives: bool = True  # False: only its own negatives count (classification/clustering rows)
    instruct_documents: bool = False  # True: documents get the instruction too (symmetric tasks: STS, bitext)


def pair_from_generated(row: dict) -> TrainPair:
    """One generate row (flat fields, or the raw reply nested under "output") -> a pair. KeyError/ValueError
    name the bad field."""
    family = row["family"]
    if family not in FAMILIES:
        raise ValueError(f"field 'family': unknown {family!r}; allowed: {list(FAMILIES)}")
    values = {**row, **row.get("output", {})}
    roles = FAMILIES[family]
    query_key, pos_key, neg_key = roles.query, roles.positive, roles.negative
    instruction = SYMMETRIC_INSTRUCTIONS.get(family) or row.get("task")
    if not instruction:
        raise ValueError("field 'task': an asymmetric example needs its task definition")
    negatives = [_text(values, neg_key)] if neg_key else []
    return TrainPair(instruction, _text(values, query_key), _text(values, pos_key), negatives, source=family,
                     instruct_documents=family in SYMMETRIC_INSTRUCTIONS)


def pair_from_labeled(row: dict, source: str = "") -> TrainPair:
    """{query, pos[], neg[], prompt} (the common labeled layout); the first positive is used. Documents get the
    instruction when the row says so (`instruct_documents`), else for STS rows (type "symmetric_sts") and rows
    with the STS or bitext instruction, which evaluation also puts on both sides."""
    positives = _texts(row, "pos")
    if not positives:
        raise ValueError("field 'pos': needs at least one positive text")
    instruction = row.get("prompt") or row.get("instruction") or ""
    kind = str(row.get("type", ""))
    in_batch = not kind.startswith(("symmetric_class", "symmetric_clustering"))
    symmetric = row.get("instruct_documents", kind == "symmetric_sts" or instruction in SYMMETRIC_INSTRUCTIONS.values())
    if not isinstance(symmetric, bool):
        raise ValueError(f"field 'instruct_documents' must be true or false, got {symmetric!r}")
    return TrainPair(instruction, _text(row, "query"), positives[0], _texts(row, "neg") if "neg" in row else [],
                     source=row.get("source") or source, in_batch_negatives=in_batch, instruct_documents=symmetric)


def read_pairs(path: Path, kind: SourceKind = "auto", skip_bad: bool = False) -> tuple[list[TrainPair], int]:
    """All pairs of one JSONL file (or generate output directory) and the number of bad rows skipped.
    A bad row raises DataError naming file, line and field unless `skip_bad`."""
    path = Path(path)
    file = path / "examples.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file (expected JSONL, or a generate output directory)")
    pairs, skipped = [], 0
    for lineno, row in read_jsonl(file):
        row_kind = kind if kind != "auto" else ("generated" if "family" in row else "labeled")
        try:
            pairs.append(pair_from_generated(row) if row_kind == "generated" else pair_from_labeled(row, file.stem))
        except (KeyError, ValueError, TypeError) as err:
            if not skip_bad:
                raise DataError(f"{file}:{lineno}: {_reason(err)}") from None
            skipped += 1
    if not pairs:  # caught here, when the file is read, not after a model has loaded
        raise DataError(f"{file}: no training pairs " + (f"(all {skipped} rows are bad)" if skipped else "(no rows)"))
    if skipped:
        log.warning("%s: skipped %d bad rows", file, skipped)
    return pairs, skipped


def _text(row: dict, key: str) -> str:
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field '{key}' is empty or not text")
    return value


def _texts(row: dict, key: str) -> list[str]:
    values = row[key]
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"field '{key}' must be a list of non-empty texts")
    return values


def _reason(err: Exception) -> str:
    return f"field {err.args[0]!r} is missing" if isinstance(err, KeyError) else str(err)
