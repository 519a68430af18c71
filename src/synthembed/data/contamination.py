"""Contamination check: generated examples whose text overlaps an evaluation set.

An example is flagged when it shares a word n-gram (default 13, as in GPT-3's decontamination) with any
evaluation text, or contains a whole evaluation text shorter than that (STS pairs, Tatoeba sentences) of at
least MIN_WORDS words. Words are lowercased \\w+ runs; CJK characters count one word each.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from synthembed.data.examples import read_examples
from synthembed.tasks.families import FAMILIES

MIN_WORDS = 5
WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+")
TEXT_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".txt"}


@dataclass
class Index:
    ngram: int
    grams: dict[int, int] = field(default_factory=dict)  # n-gram hash -> source id
    short: dict[int, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))  # length -> hash -> source
    sources: list[str] = field(default_factory=list)

    def add(self, text: str, source: int) -> None:
        words = tokens(text)
        if len(words) >= self.ngram:
            for gram in _windows(words, self.ngram):
                self.grams.setdefault(hash(gram), source)
        elif len(words) >= MIN_WORDS:
            self.short[len(words)].setdefault(hash(tuple(words)), source)

    def match(self, text: str) -> str | None:
        words = tokens(text)
        for gram in _windows(words, self.ngram):
            if (src := self.grams.get(hash(gram))) is not None:
                return self.sources[src]
        for length, table in self.short.items():
            for gram in _windows(words, length):
                if (src := table.get(hash(gram))) is not None:
                    return self.sources[src]
        return None


def tokens(text: str) -> list[str]:
    return WORDS.findall(text.lower())


def _windows(words: list[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(words) - n + 1):
        yield tuple(words[i : i + n])


def evaluation_texts(path: Path) -> Iterator[str]:
    """Every text of a file: string values of JSON rows, cells of CSV/TSV, lines of anything else."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    yield from (v for v in (row.values() if isinstance(row, dict) else [row]) if isinstance(v, str))
    elif path.suffix in {".csv", ".tsv"}:
        csv.field_size_limit(sys.maxsize)
        with open(path, encoding="utf-8", newline="") as handle:
            sample = handle.read(4096)
            handle.seek(0)
            delimiter = "\t" if path.suffix == ".tsv" or sample.count("\t") > sample.count(",") else ","
            for row in csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL):
                yield from row
    else:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from (line.strip() for line in handle)


def _files(path: Path) -> Iterator[Path]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: evaluation data not found")
    if path.is_file():
        yield path
        return
    for file in sorted(path.rglob("*")):
        readable = file.suffix in TEXT_SUFFIXES or file.name.startswith("tatoeba.")
        if file.is_file() and readable and file.name.upper() not in {"README.MD", "SOURCE.MD", "LICENSE.TXT"}:
            yield file


def build_index(paths: list[Path], ngram: int) -> Index:
    index = Index(ngram)
    for root in paths:
        for file in _files(Path(root)):
            index.sources.append(str(file))
            for text in evaluation_texts(file):
                index.add(text, len(index.sources) - 1)
    return index


def contamination_report(examples: Path, against: list[Path], ngram: int = 13, out: Path | None = None) -> dict:
    index = build_index(against, ngram)
    flagged, checked = [], 0
    for _, row in read_examples(examples):
        checked += 1
        for key in FAMILIES[row["family"]].keys:
            source = index.match(row[key])
            if source is not None:
                flagged.append({"id": row["id"], "field": key, "source": source, "text": row[key][:200]})
                break
    result = {"checked": checked, "flagged": len(flagged), "ngram": ngram,
              "by_source": dict(Counter(f["source"] for f in flagged).most_common()), "examples": flagged}
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def print_report(result: dict, console: Console) -> None:
    share = result["flagged"] / result["checked"] if result["checked"] else 0.0
    console.print(f"{result['flagged']} of {result['checked']} examples ({share:.2%}) overlap the evaluation data"
                  f" ({result['ngram']}-gram or whole short text)")
    if result["flagged"]:
        table = Table("id", "field", "source", "text")
        for f in result["examples"][:20]:
            table.add_row(f["id"], f["field"], f["source"], f["text"][:80])
        console.print(table)
