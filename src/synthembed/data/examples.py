"""Reading generated examples, checked for their family's keys, with errors that name the file, line and field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from synthembed.formats.examples import examples_file
from synthembed.formats.jsonl import DataError, read_jsonl


def read_examples(path: Path) -> Iterator[tuple[int, dict]]:
    """Rows of a generate output, checked for the fields every family has and the family's own keys."""
    from synthembed.tasks.families import FAMILIES

    file = examples_file(path)
    for lineno, row in read_jsonl(file, ("id", "family", "language")):
        family = FAMILIES.get(row["family"])
        if family is None:
            raise DataError(f"{file}:{lineno}: field 'family': unknown {row['family']!r}; allowed: {list(FAMILIES)}")
        for key in family.keys:
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"{file}:{lineno}: field '{key}' is missing or empty")
        yield lineno, row
