"""Join the outputs of generation runs (shards, or runs with other seeds) into one dataset, without duplicates.

Rows are the same example when their texts are the same (family and every key, compared normalised); only those
are dropped. Ids used to be positions in a run (`short-short-000009`), so two runs reuse them for different
examples: a row whose id is taken by a different text is kept under a new id and reported, never dropped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from synthembed.data.examples import read_examples
from synthembed.formats.examples import content_hash, examples_file
from synthembed.tasks.families import FAMILIES


def merge_examples(inputs: list[Path], output: Path) -> str:
    """Write output/examples.jsonl from the inputs in order; returns a one-line summary."""
    target = output / "examples.jsonl"
    if any(examples_file(s).resolve() == target.resolve() for s in inputs):
        raise ValueError(f"{target}: the output must not be one of the inputs")
    ids: set[str] = set()
    seen_content: set[str] = set()
    rows, renamed, dropped = [], [], Counter()
    for source in inputs:
        for _, row in read_examples(source):
            digest = content_hash(row["family"], row, FAMILIES[row["family"]].keys)
            if digest in seen_content:
                dropped["same text"] += 1
                continue
            if row["id"] in ids:
                renamed.append(row["id"])
                row = {**row, "id": _free_id(row["id"], digest, ids)}
            ids.add(row["id"])
            seen_content.add(digest)
            rows.append(row)
    output.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, target)
    by_family = Counter(r["family"] for r in rows)
    dropped_text = ", ".join(f"{n} {why}" for why, n in dropped.items()) or "none"
    summary = (f"merged {len(inputs)} inputs into {target}: {len(rows)} examples {dict(by_family)}; "
               f"dropped {dropped_text}")
    if renamed:
        shown = ", ".join(renamed[:5]) + (", ..." if len(renamed) > 5 else "")
        summary += (f"; {len(renamed)} rows shared an id with a different text and were kept under new ids "
                    f"({shown})")
    return summary


def _free_id(taken: str, digest: str, ids: set[str]) -> str:
    """`taken` with a content suffix, longer if needed: the same text always gets the same new id."""
    for width in (8, 16, 32):
        candidate = f"{taken}~{digest[:width]}"
        if candidate not in ids:
            return candidate
    raise ValueError(f"cannot find a free id for {taken!r}")
