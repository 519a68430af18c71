"""Evaluation data: one dataclass per task type and its loader; every error names file:line:field.

Layouts: STS pairs in CSV/TSV/JSONL (stsbenchmark's headerless TSV and stsb-multi-mt's headerless CSV are the
real cases), line-aligned bitext files (Tatoeba), CSV/JSONL tables for classification, clustering, pair
classification and reranking. BEIR directories (retrieval) are read by `beir.load_beir`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from synthembed.formats.jsonl import DataError, read_jsonl


@dataclass
class RetrievalData:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


@dataclass
class STSData:
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]  # gold similarity on the file's own scale (e.g. 0..5)


@dataclass
class BitextData:
    source: list[str]  # line i of source translates line i of target
    target: list[str]


@dataclass
class LabeledTexts:
    texts: list[str]
    labels: list[str]


@dataclass
class ClassificationData:
    train: LabeledTexts
    test: LabeledTexts


@dataclass
class ClusteringData:
    sets: list[LabeledTexts]  # each set is clustered on its own (MTEB's legacy layout); often just one


@dataclass
class PairData:
    texts1: list[str]
    texts2: list[str]
    labels: list[int]  # 1 = similar/duplicate, 0 = not


@dataclass
class RerankingData:
    queries: list[str]
    positives: list[list[str]]
    negatives: list[list[str]]


# --- generic rows ----------------------------------------------------------------------------------------

def require_text(path: Path, lineno: int, row: dict, field: str) -> str:
    """row[field] as a non-empty string, else a DataError naming file:line:field."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}:{lineno}: field '{field}' is missing or empty")
    return value


def _rows(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line, row) from a JSONL file or a CSV/TSV file with a header naming `fields`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        yield from read_jsonl(path, fields)
        return
    with open(path, encoding="utf-8", newline="") as handle:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = [f for f in fields if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: field '{missing[0]}' is not in the header {reader.fieldnames}; "
                            f"name the columns with the field options")
        for row in reader:
            yield reader.line_num, row


def _table_path(root: Path, stem: str) -> Path:
    for suffix in (".jsonl", ".csv", ".tsv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    raise DataError(f"{root}: no {stem}.jsonl, {stem}.csv or {stem}.tsv")


# --- STS ---------------------------------------------------------------------------------------------------

STSBENCHMARK_COLUMNS = (5, 6, 4)  # genre, file, year, id, score, sentence1, sentence2 [, source1, source2]


def load_sts(path: Path, columns: tuple[str | int, str | int, str | int] | None = None) -> STSData:
    """Pairs with a gold score. `columns` = (sentence1, sentence2, score) as names (JSONL, CSV with header) or
    0-based indices (headerless CSV/TSV). Default: names sentence1/sentence2/score for JSONL; for a headerless
    file, stsbenchmark's 7-field TSV layout when the first line has tabs, else stsb-multi-mt's CSV (0, 1, 2)."""
    path = Path(path)
    s1: list[str] = []
    s2: list[str] = []
    gold: list[float] = []
    if path.suffix == ".jsonl" or (columns and isinstance(columns[0], str)):
        names = columns or ("sentence1", "sentence2", "score")
        rows = _rows(path, tuple(names))
        records = ((n, [r[names[0]], r[names[1]], r[names[2]]]) for n, r in rows)
        labels, positional = tuple(str(c) for c in names), False
    else:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        with open(path, encoding="utf-8") as handle:
            tabbed = "\t" in handle.readline()
        idx = columns or (STSBENCHMARK_COLUMNS if tabbed else (0, 1, 2))
        records = ((n, [f[i] if i < len(f) else None for i in idx]) for n, f in _split_lines(path, tabbed))
        labels, positional = tuple(f"column {i}" for i in idx), True
    for lineno, (a, b, score) in records:
        if positional and lineno == 1 and not _is_number(score):
            continue  # a header line above positional columns
        row = dict(zip(labels, (a, b, score)))
        s1.append(require_text(path, lineno, row, labels[0]))
        s2.append(require_text(path, lineno, row, labels[1]))
        try:
            gold.append(float(score))
        except (TypeError, ValueError):
            raise DataError(f"{path}:{lineno}: field '{labels[2]}': {score!r} is not a number") from None
    if not gold:
        raise DataError(f"{path}: no pairs")
    return STSData(s1, s2, gold)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _split_lines(path: Path, tabbed: bool) -> Iterator[tuple[int, list[str]]]:
    """Headerless rows. TSV is split on tabs without quoting (stsbenchmark has stray quotes); CSV uses csv quoting."""
    with open(path, encoding="utf-8", newline="") as handle:
        if tabbed:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    yield lineno, line.rstrip("\r\n").split("\t")
        else:
            reader = csv.reader(handle)
            for fields in reader:
                if fields:
                    yield reader.line_num, fields


# --- bitext ------------------------------------------------------------------------------------------------

def load_bitext(source_file: Path, target_file: Path) -> BitextData:
    """Two line-aligned files; line i of one translates line i of the other."""
    sides = []
    for path in (Path(source_file), Path(target_file)):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        # split on "\n" only: sentences may hold other Unicode line separators
        lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty line (the files must be line-aligned, one sentence a line)")
        sides.append(lines)
    if len(sides[0]) != len(sides[1]):
        raise DataError(f"{source_file} has {len(sides[0])} lines but {target_file} has {len(sides[1])}; "
                        f"bitext files must be line-aligned")
    return BitextData(*sides)


def load_tatoeba(root: Path, lang: str) -> BitextData:
    """tatoeba.{lang}-eng.{lang} (source) and tatoeba.{lang}-eng.eng (target), as MTEB's `{lang}-eng` subset."""
    root = Path(root)
    return load_bitext(root / f"tatoeba.{lang}-eng.{lang}", root / f"tatoeba.{lang}-eng.eng")


# --- classification, clustering, pairs, reranking ------------------------------------------------------------

def load_labeled(path: Path, text: str = "text", label: str | None = None) -> LabeledTexts:
    """Rows with a text and a label; `label` defaults to 'label', or 'category' (banking77) if that is the column."""
    path = Path(path)
    if label is None:
        label = "category" if _has_column(path, "category") and not _has_column(path, "label") else "label"
    out = LabeledTexts([], [])
    for lineno, row in _rows(path, (text, label)):
        out.texts.append(require_text(path, lineno, row, text))
        value = row[label]
        if value is None or str(value).strip() == "":
            raise DataError(f"{path}:{lineno}: field '{label}' is missing or empty")
        out.labels.append(str(value))
    if not out.texts:
        raise DataError(f"{path}: no rows")
    return out


def _has_column(path: Path, name: str) -> bool:
    """Whether the first row (JSONL) or the header (CSV/TSV) has the column."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    if path.suffix == ".jsonl":
        try:
            return name in json.loads(first)
        except (json.JSONDecodeError, TypeError):
            return False
    return name in next(csv.reader([first], delimiter="\t" if path.suffix == ".tsv" else ","), [])


def load_classification(root: Path, text: str = "text", label: str | None = None,
                        train: str = "train", test: str = "test") -> ClassificationData:
    """A directory with train and test tables (CSV/TSV/JSONL), e.g. banking77's train.csv/test.csv (text,category)."""
    root = Path(root)
    return ClassificationData(load_labeled(_table_path(root, train), text, label),
                              load_labeled(_table_path(root, test), text, label))


def load_clustering(path: Path, text: str = "text", label: str = "label") -> ClusteringData:
    """Rows of (text, label) form one set; JSONL rows whose `text`/`label` fields are lists are one set each."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = list(read_jsonl(path, (text, label)))
        if rows and isinstance(rows[0][1][text], list):
            sets = []
            for lineno, row in rows:
                texts, labels = row[text], row[label]
                if not isinstance(labels, list) or len(labels) != len(texts) or not texts:
                    raise DataError(f"{path}:{lineno}: field '{label}' must list one label per text")
                if any(not isinstance(t, str) or not t.strip() for t in texts):
                    raise DataError(f"{path}:{lineno}: field '{text}' holds an empty text")
                sets.append(LabeledTexts(texts, [str(x) for x in labels]))
            return ClusteringData(sets)
    return ClusteringData([load_labeled(path, text, label)])


def load_pairs(path: Path, text1: str = "text1", text2: str = "text2", label: str = "label") -> PairData:
    """Pair classification rows: two texts and a 0/1 label (1 = duplicate/paraphrase)."""
    path = Path(path)
    out = PairData([], [], [])
    for lineno, row in _rows(path, (text1, text2, label)):
        out.texts1.append(require_text(path, lineno, row, text1))
        out.texts2.append(require_text(path, lineno, row, text2))
        value = str(row[label]).strip().lower()
        if value not in ("0", "1", "true", "false", "0.0", "1.0"):
            raise DataError(f"{path}:{lineno}: field '{label}': {row[label]!r} is not 0 or 1")
        out.labels.append(1 if value in ("1", "true", "1.0") else 0)
    if not out.labels:
        raise DataError(f"{path}: no rows")
    return out


def load_reranking(path: Path, query: str = "query", positive: str = "positive",
                   negative: str = "negative") -> RerankingData:
    """JSONL rows {query, positive: [...], negative: [...]} (MTEB's layout; 'pos'/'neg' are accepted too)."""
    path = Path(path)
    out = RerankingData([], [], [])
    for lineno, row in read_jsonl(path, (query,)):
        out.queries.append(require_text(path, lineno, row, query))
        for field, alias, dest in ((positive, "pos", out.positives), (negative, "neg", out.negatives)):
            name = field if field in row else alias
            docs = row.get(name)
            if not isinstance(docs, list) or any(not isinstance(d, str) or not d.strip() for d in docs):
                raise DataError(f"{path}:{lineno}: field '{field}' must be a list of non-empty texts")
            dest.append(docs)
    if not out.queries:
        raise DataError(f"{path}: no rows")
    return out
