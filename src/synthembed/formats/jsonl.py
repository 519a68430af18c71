"""JSONL read and written by every stage, with errors that name the file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """Bad input data; the message starts with file:line."""


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-empty line; rows must be objects holding the `required` fields."""
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            for name in required:
                if name not in row:
                    raise DataError(f"{path}:{lineno}: field '{name}' is missing")
            yield lineno, row


def write_jsonl(path: Path, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path
