"""Sanity checks on brainstormed task definitions, as `generate.validate` checks examples.

A task definition is one English sentence ("Given a claim, retrieve documents that refute it."). Small
generators also return list numbers, bare words and fragments ("0", "answer", "3. Given a"); every example
written for such a task is wasted. `check_task()` returns None for a usable task, else a short reason code:
not_string, no_letters, too_short, too_long, degenerate, wrong_script, fragment (cut off mid-phrase: it ends on
a comma or an open bracket, leaves a bracket open, or stops on "for", "the", "my" without a full stop).
"""

from __future__ import annotations

import re

from synthembed.tasks.text import count_words, is_degenerate

MIN_WORDS = 4  # "Match a word to its definition." is five; "Classify sentiment" is too little to write from
MAX_WORDS = 80  # a paragraph, not a task sentence
MIN_LATIN_SHARE = 0.5  # of letters: task definitions are asked for in English
MIN_DISTINCT_WORDS = 0.4  # share of distinct words in a task of 6+ words; below it the generator looped
_NUMBERING = re.compile(r"^\s*(?:(?:task|item)\s*)?(?:[-*•+]|\(?\d{1,3}[.):]|\[\d{1,3}\]|#\d{1,3}:?)\s*", re.I)
_QUOTES = "\"'“”‘’`"
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_LETTER = re.compile(r"[^\W\d_]")
_DANGLING = set("a an the of for to in on at by with from into than and or but nor my your our their its his her "
                "is are was were be that which whose as".split())
_OPEN_END = tuple(",:;([{&/-–—")
_TRAILING_PUNCT = re.compile(r"[^\w']+$")


def clean_task(text: str) -> str:
    """Strip list numbering, bullets and quotes the generator wrapped around the sentence."""
    text = text.strip()
    while True:
        stripped = _NUMBERING.sub("", text, count=1).strip().strip(_QUOTES).strip()
        if stripped == text:
            return text
        text = stripped


def check_task(task) -> str | None:
    """None when `task` (already cleaned) reads as a task definition, else the reason it does not."""
    if not isinstance(task, str):
        return "not_string"
    letters = _LETTER.findall(task)
    if not letters:
        return "no_letters"
    words = count_words(task)
    if words < MIN_WORDS:
        return "too_short"
    if words > MAX_WORDS:
        return "too_long"
    tokens = task.casefold().split()
    if is_degenerate(task) or (len(tokens) >= 6 and len(set(tokens)) < MIN_DISTINCT_WORDS * len(tokens)):
        return "degenerate"
    if len(_LATIN.findall(task)) < MIN_LATIN_SHARE * len(letters):
        return "wrong_script"
    if _is_fragment(task):
        return "fragment"
    return None


def _is_fragment(task: str) -> bool:
    stripped = task.rstrip()
    if stripped.endswith(_OPEN_END) or any(task.count(a) > task.count(b) for a, b in ("()", "[]", "{}")):
        return True
    if stripped.endswith((".", "?", "!")):  # "... the tag it belongs to." is a whole sentence
        return False
    words = _TRAILING_PUNCT.sub("", stripped).split()
    return bool(words) and words[-1].casefold() in _DANGLING
