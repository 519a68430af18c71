"""The query format and the per-task query instructions of the E5-mistral paper (mteb_instructions.json,
shipped with the package), shared by the embedder, training data, the held-out split and evaluation.

Lookup order: a user override; the task's own entry (exact name, then case- and punctuation-insensitive, also
with the type appended, so "banking77" finds "Banking77Classification"; "CQADupstack*" style patterns); then
the instruction for the task's type (STS, BitextMining, Summarization); else None (no instruction).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cache
from importlib import resources

QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {text}"


def format_query(text: str, instruction: str | None, template: str = QUERY_TEMPLATE) -> str:
    """The paper's query side; without an instruction a query is embedded as it is."""
    return template.format(instruction=instruction, text=text) if instruction else text


# spellings of task types -> the paper's type names
_TYPE_ALIASES = {"sts": "STS", "bitextmining": "BitextMining", "bitext": "BitextMining",
                 "summarization": "Summarization"}


@cache
def _table() -> dict[str, dict[str, str]]:
    text = resources.files("synthembed.formats").joinpath("mteb_instructions.json").read_text(encoding="utf-8")
    return json.loads(text)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def task_instructions() -> dict[str, str]:
    """Task name (or pattern) -> instruction, over all task categories of the paper."""
    return {name: text for category, entries in _table().items() if not category.startswith("_")
            for name, text in entries.items()}


def instruction_for(task_name: str, task_type: str | None = None, override: str | None = None) -> str | None:
    """The query instruction for a task; `override` wins ("" means: no instruction)."""
    if override is not None:
        return override or None
    known = task_instructions()
    if task_name in known:
        return known[task_name]
    wanted = {_norm(task_name)} | ({_norm(task_name + task_type)} if task_type else set())
    for name, text in known.items():
        if _norm(name) in wanted:
            return text
    for name, text in known.items():
        if any(c in name for c in "*?[") and fnmatch.fnmatch(task_name.lower(), name.lower()):
            return text
    return type_instruction(task_type) if task_type else None


def type_instruction(task_type: str) -> str | None:
    """The instruction the paper gives a whole task type (STS, BitextMining, Summarization), else None."""
    return _table()["_by_type"].get(_TYPE_ALIASES.get(_norm(task_type), task_type))
