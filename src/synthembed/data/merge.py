"""Join the shards of a generation run into one dataset, without duplicates."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from synthembed.data.examples import examples_file, read_examples
from synthembed.generate.plan import content_hash
from synthembed.tasks.families import FAMILIES


def merge_examples(inputs: list[Path], output: Path) -> str:
    """Write output/examples.jsonl from the inputs in order; an example seen before (same id or same text) is
    dropped. Returns a one-line summary."""
    target = output / "examples.jsonl"
    if any(examples_file(s).resolve() == target.resolve() for s in inputs):
        raise ValueError(f"{target}: the output must not be one of the inputs")
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    rows, dropped = [], Counter()
    for source in inputs:
        for _, row in read_examples(source):
            digest = content_hash(row["family"], row, FAMILIES[row["family"]].keys)
            if row["id"] in seen_ids:
                dropped["same id"] += 1
            elif digest in seen_content:
                dropped["same text"] += 1
            else:
                seen_ids.add(row["id"])
                seen_content.add(digest)
                rows.append(row)
    output.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, target)
    by_family = Counter(r["family"] for r in rows)
    dropped_text = ", ".join(f"{n} {why}" for why, n in dropped.items()) or "none"
    return f"merged {len(inputs)} inputs into {target}: {len(rows)} examples {dict(by_family)}; dropped {dropped_text}"
