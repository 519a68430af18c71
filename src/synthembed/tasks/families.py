"""The six task families of the synthetic-data recipe, as data.

Reference: Liang Wang, Nan Yang, Xiaolong Huang, Linjun Yang, Rangan Majumder, Furu Wei, "Improving Text
Embeddings with Large Language Models", arXiv 2401.00368 (ACL 2024), appendix prompt tables.

Each family carries the JSON keys its prompt asks for, the placeholder value lists (sampled uniformly per
example), the example-writing prompt and, for the asymmetric families, the brainstorm prompt that builds the
task pool. The prompt wording is our own; the keys, placeholders, value lists and every guideline follow the
paper. Two choices where implementations disagree (see shared/paper/PROMPTS.md):
  - long-short keeps the paper's `num_words` (distilabel drops it);
  - STS low scores are 2.5/3/3.5 and bitext low scores 1.5/2/2.5 (some reproductions mix them up).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
import string
from dataclasses import dataclass, field

# Shared value lists, in the paper's order. Numbers stay numbers so params round-trip through JSON unchanged.
QUERY_TYPE = ("extremely long-tail", "long-tail", "common")
QUERY_LENGTH = ("less than 5 words", "5 to 15 words", "at least 10 words")
CLARITY = ("clear", "understandable with some effort", "ambiguous")
DIFFICULTY_ASYMMETRIC = ("high school", "college", "PhD")
DIFFICULTY_SYMMETRIC = ("elementary school", "high school", "college")
NUM_WORDS_RETRIEVAL = (50, 100, 200, 300, 400, 500)
NUM_WORDS_CLASSIFICATION = ("less than 10", "at least 10", "at least 50", "at least 100", "at least 200")
UNIT = ("sentence", "phrase", "passage")
HIGH_SCORE = (4, 4.5, 5)
LOW_SCORE_STS = (2.5, 3, 3.5)
LOW_SCORE_BITEXT = (1.5, 2, 2.5)

# Fields filled by the caller rather than sampled here.
LANGUAGE_FIELDS = ("language", "source_language", "target_language")

_JSON_ONLY = "Reply with a JSON object only; give no explanation and output nothing else. Be creative!"
_LIST_ONLY = (
    "Always reply with a python list of strings only, with about 20 elements, where each element is one "
    "distinct {what} described in a single sentence. Give no explanation and output nothing else. Be creative!"
)


ROLES = ("query", "positive", "negative")


@dataclass(frozen=True)
class Family:
    """One family, each fact stated once: conversion to training pairs (data.pairs) and validation
    (generate.validate) read the roles from here."""
    name: str
    query: str  # the JSON key of each role (S1, S2, S3 for the symmetric families)
    positive: str
    negative: str | None  # the hard negative; None: in-batch negatives only
    placeholders: dict[str, tuple] = field(hash=False)  # dict is unhashable; name identifies a family anyway
    template: str
    brainstorm: str | None
    symmetric: bool
    length_bounded: tuple[str, ...] = ()  # roles whose length the `num_words` placeholder sets
    # fixed lengths the prompt asks of every role: "very short" (short-short), "at least 300 words" (long-long)
    max_words: int | None = None
    min_words: int | None = None
    query_not_in_positive: bool = False  # the positive must not paste the query in (query -> document tasks)

    @property
    def keys(self) -> tuple[str, ...]:
        """The JSON keys the prompt asks for, in role order."""
        return tuple(getattr(self, role) for role in ROLES if getattr(self, role))

    @property
    def distinct(self) -> tuple[str, str] | None:
        """Keys whose texts must differ: a hard negative equal to its positive teaches nothing."""
        return (self.positive, self.negative) if self.negative else None

    @property
    def not_copied(self) -> tuple[str, str] | None:
        """(query key, document key) where the document must not contain the query verbatim."""
        return (self.query, self.positive) if self.query_not_in_positive else None

    @property
    def bounded_keys(self) -> tuple[str, ...]:
        """Keys whose length `num_words` bounds."""
        return tuple(getattr(self, role) for role in self.length_bounded)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every str.format field of the template, in order of first appearance ("task" included)."""
        seen: dict[str, None] = {}
        for _, name, _, _ in string.Formatter().parse(self.template):
            if name:
                seen.setdefault(name, None)
        return tuple(seen)

    @property
    def language_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f in LANGUAGE_FIELDS)

    def render(self, task: str | None, params: dict) -> str:
        """The example-writing prompt for one task and one draw of placeholders plus language(s)."""
        if self.symmetric:
            if task:  # sts/bitext are one-step prompts; a task here means the caller mixed families up
                raise ValueError(f"family {self.name!r} takes no task, got {task!r}")
        elif not task or not str(task).strip():
            raise ValueError(f"family {self.name!r} needs a task definition")
        values = dict(params)
        if not self.symmetric:
            values["task"] = str(task).strip()
        missing = [f for f in self.fields if f not in values or values[f] is None]
        if missing:
            raise ValueError(
                f"family {self.name!r} is missing params {missing}; it needs "
                f"{[f for f in self.fields if f != 'task']}"
            )
        return self.template.format(**values)


def sample_params(family: Family, rng: random.Random, lists: dict[str, Sequence] | None = None) -> dict:
    """One uniform draw per placeholder, in declaration order so a seeded rng gives the same dict;
    `lists` replaces some of the family's value lists (e.g. shorter documents for a cheaper run)."""
    lists = lists or {}
    return {name: rng.choice(lists.get(name, values)) for name, values in family.placeholders.items()}


_SHORT_LONG = (
    "You are given a retrieval task: {task}\n\n"
    "Write one text retrieval example for this task in JSON format. The JSON object must contain these keys:\n"
    ' - "user_query": a string, a random search query a user might issue for this retrieval task.\n'
    ' - "positive_document": a string, a document relevant to the user query.\n'
    ' - "hard_negative_document": a string, a hard negative document that only looks relevant to the query.\n\n'
    "Follow these guidelines:\n"
    ' - The "user_query" must be {query_type}, {query_length}, {clarity}, and varied in topic.\n'
    " - Write every document independently of the query and do not copy the query word for word. It is fine "
    'if parts of the "positive_document" are off-topic with respect to the query.\n'
    " - Every document must be at least {num_words} words long.\n"
    ' - The "hard_negative_document" holds some useful information, but less useful or less complete '
    'information than the "positive_document".\n'
    " - Write the query and all documents in {language}.\n"
    " - No document may explain why it is or is not relevant to the query.\n"
    " - Understanding the query and the documents takes {difficulty} level education.\n\n" + _JSON_ONLY
)

_LONG_SHORT = (
    "You are given a text classification task: {task}\n\n"
    "Write one text classification example for this task in JSON format. The JSON object must contain these "
    "keys:\n"
    ' - "input_text": a string, an input text as described by the classification task.\n'
    ' - "label": a string, the correct label for the input text.\n'
    ' - "misleading_label": a string, a wrong label that is still related to the task.\n\n'
    "Follow these guidelines:\n"
    ' - The "input_text" must be {num_words} words long and varied in expression.\n'
    ' - The "misleading_label" has to be a valid label for this task, yet a worse fit for the "input_text" '
    'than the "label".\n'
    " - Write the values of all fields in {language}.\n"
    ' - Keep the values of "label" and "misleading_label" out of the "input_text"; including them would make '
    "the task too easy.\n"
    ' - The "input_text" is {clarity} and takes {difficulty} level education to understand.\n\n' + _JSON_ONLY
)


def _matching(length_rule: str) -> str:
    return (
        "You are given a text matching task: {task}\n\n"
        "Write one example for this task in JSON format. The JSON object must contain these keys:\n"
        ' - "input": a string, a random input as described by the task.\n'
        ' - "positive_document": a string, a document that matches the "input" according to the task.\n\n'
        "Follow these guidelines:\n"
        " - Write the values of all fields in {language}.\n"
        f' - Both the "input" and the "positive_document" must be {length_rule}, and they must not share many '
        "words, otherwise the task would be too easy.\n"
        ' - The "input" and the "positive_document" must be independent of each other.\n\n' + _JSON_ONLY
    )


_SHORT_SHORT = _matching("very short (a sentence or a phrase)")
_LONG_LONG = _matching("long documents (at least 300 words)")

_STS = (
    "Write a {unit} triple whose members differ in semantic similarity, in JSON format. Similarity scores go "
    "from 1 to 5, where 1 means least similar and 5 means most similar.\n\n"
    "Follow these guidelines:\n"
    ' - The JSON keys are "S1", "S2" and "S3", and all values are strings in {language}; add no other keys.\n'
    " - All three {unit}s share some words.\n"
    " - The similarity score between S1 and S2 is {high_score}.\n"
    " - The similarity score between S1 and S3 is {low_score}.\n"
    " - Understanding the {unit}s takes {difficulty} level education, and they should be varied in topic and "
    "length.\n\n"
    'Reply with a JSON object only, with exactly the three keys "S1", "S2" and "S3"; give no explanation and '
    "output nothing else. Be creative!"
)

_BITEXT = (
    "Write a {unit} triple, one {unit} in {source_language} and two {unit}s in {target_language}, whose "
    "translations differ in quality, in JSON format.\n\n"
    'Call the triple ("S1", "S2", "S3"). Translation quality scores go from 1 to 5; higher is better.\n\n'
    "Follow these guidelines:\n"
    ' - The value of "S1" is a string in {source_language}; the values of "S2" and "S3" are strings in '
    "{target_language}.\n"
    ' - "S2" and "S3" share some words.\n'
    ' - The translation quality score of "S2" with respect to "S1" is {high_score}.\n'
    ' - The translation quality score of "S3" with respect to "S1" is {low_score}.\n'
    ' - "S3" reads grammatically and fluently, but it mistranslates some keyword or number, leaves out some '
    "information, or adds some redundant information.\n"
    ' - Understanding "S1" takes {difficulty} level education, and it should be varied in topic and length.\n\n'
    'Reply with a JSON object only, with exactly the three keys "S1", "S2" and "S3"; give no explanation and '
    "output nothing else. Be creative!"
)

# Brainstorm prompts contain no format fields, so literal text is safe; task definitions come back in English.
_BRAINSTORM_RETRIEVAL = (
    "Brainstorm a list of text retrieval tasks that could be useful.\n\n"
    "Some examples for reference:\n"
    " - Given a scientific claim as the query, retrieve documents that help confirm or refute it.\n"
    " - Find documents that answer an FAQ-style question about nutrition for children.\n\n"
    "Follow these guidelines:\n"
    " - State what the query is and what the desired documents are.\n"
    " - Each retrieval task should cover a broad range of queries and should not be overly specific.\n\n"
    + _LIST_ONLY.format(what="retrieval task")
)
_BRAINSTORM_CLASSIFICATION = (
    "Brainstorm a list of text classification tasks that could be useful.\n\n"
    "Follow these guidelines:\n"
    " - The tasks should span a diverse range of domains and task types.\n\n"
    + _LIST_ONLY.format(what="text classification task")
)
_BRAINSTORM_SHORT_MATCHING = (
    "Brainstorm a list of text matching tasks in which both the queries and the ground-truth documents are very "
    "short (one or two sentences, or even a short phrase).\n\n"
    "Some examples:\n"
    " - Given the title of a scientific paper, retrieve the titles of papers that cite it.\n"
    " - Match a word to its definition.\n"
    " - Given the name of a notable person, identify their occupation or achievement.\n\n"
    + _LIST_ONLY.format(what="task")
)
_BRAINSTORM_LONG_MATCHING = (
    "Brainstorm a list of text matching tasks in which both the queries and the ground-truth documents are long "
    "documents (hundreds of words).\n\n"
    "Some examples:\n"
    " - Given a document arguing one side of a debatable question, find a document that argues the other side.\n"
    " - Given a lengthy business proposal, retrieve competing business strategies from the same industry.\n\n"
    + _LIST_ONLY.format(what="task")
)

_FAMILY_LIST = (
    Family(
        name="short-long",
        query="user_query",
        positive="positive_document",
        negative="hard_negative_document",
        placeholders={
            "query_type": QUERY_TYPE,
            "query_length": QUERY_LENGTH,
            "clarity": CLARITY,
            "num_words": NUM_WORDS_RETRIEVAL,
            "difficulty": DIFFICULTY_ASYMMETRIC,
        },
        template=_SHORT_LONG,
        brainstorm=_BRAINSTORM_RETRIEVAL,
        symmetric=False,
        length_bounded=("positive", "negative"),
        query_not_in_positive=True,
    ),
    Family(
        name="long-short",
        query="input_text",
        positive="label",
        negative="misleading_label",
        placeholders={
            "num_words": NUM_WORDS_CLASSIFICATION,
            "clarity": CLARITY,
            "difficulty": DIFFICULTY_ASYMMETRIC,
        },
        template=_LONG_SHORT,
        brainstorm=_BRAINSTORM_CLASSIFICATION,
        symmetric=False,
        length_bounded=("query",),
    ),
    Family(
        name="short-short",
        query="input",
        positive="positive_document",
        negative=None,
        placeholders={},
        template=_SHORT_SHORT,
        brainstorm=_BRAINSTORM_SHORT_MATCHING,
        symmetric=False,
        query_not_in_positive=True,
        max_words=40,  # "a sentence or a phrase"
    ),
    Family(
        name="long-long",
        query="input",
        positive="positive_document",
        negative=None,  # no hard negative: the paper skips it for latency
        placeholders={},
        template=_LONG_LONG,
        brainstorm=_BRAINSTORM_LONG_MATCHING,
        symmetric=False,
        query_not_in_positive=True,
        min_words=300,
    ),
    Family(
        name="sts",
        query="S1",
        positive="S2",
        negative="S3",
        placeholders={
            "unit": UNIT,
            "high_score": HIGH_SCORE,
            "low_score": LOW_SCORE_STS,
            "difficulty": DIFFICULTY_SYMMETRIC,
        },
        template=_STS,
        brainstorm=None,
        symmetric=True,
    ),
    Family(
        name="bitext",
        query="S1",
        positive="S2",
        negative="S3",
        placeholders={
            "unit": UNIT,
            "high_score": HIGH_SCORE,
            "low_score": LOW_SCORE_BITEXT,
            "difficulty": DIFFICULTY_SYMMETRIC,
        },
        template=_BITEXT,
        brainstorm=None,
        symmetric=True,
    ),
)

FAMILIES: dict[str, Family] = {family.name: family for family in _FAMILY_LIST}
