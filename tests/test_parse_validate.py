"""Reply parsing and example validation (synthembed.generate.parse / .validate)."""

from __future__ import annotations

import json

import pytest

from synthembed.generate.parse import ParseError, extract_json_object, extract_list
from synthembed.generate.validate import check
from synthembed.tasks.text import count_words
from tests.conftest import FRONTIER


# --- parse -----------------------------------------------------------------------------------
def test_fenced_json():
    reply = '```json\n{"user_query": "tide tables", "positive_document": "High tide..."}\n```'
    assert extract_json_object(reply)["user_query"] == "tide tables"


def test_prose_around_json_and_trailing_comma():
    reply = 'Sure! Here is the example:\n{"S1": "It\'s raining.", "S2": "It rains.", "S3": "Sun.",}\nLet me know!'
    assert extract_json_object(reply) == {"S1": "It's raining.", "S2": "It rains.", "S3": "Sun."}


def test_python_style_dict():
    reply = "{'input_text': 'The battery died after a week.', 'label': 'negative', 'misleading_label': 'neutral'}"
    assert extract_json_object(reply)["label"] == "negative"
    mixed = "{'a': true, 'b': null, 'c': 'the null hypothesis is true'}"
    assert extract_json_object(mixed) == {"a": True, "b": None, "c": "the null hypothesis is true"}


def test_skips_braces_in_prose():
    reply = "I'll fill {the user's query} as asked: {\"input\": \"cat\", \"positive_document\": \"a small feline\"}"
    assert extract_json_object(reply)["input"] == "cat"


@pytest.mark.parametrize("reply, reason", [
    ('{"user_query": "how do tides work", "positive_document": "Tides are the rise and fa', "truncated_json"),
    ('```json\n{"S1": "a", "S2": {"x": 1}, "S3": "b', "truncated_json"),
    ("", "empty"),
    ("   \n ", "empty"),
    ("I cannot help with that request.", "no_json"),
    ('["not", "an", "object"]', "not_object"),
])
def test_parse_failures(reply, reason):
    with pytest.raises(ParseError) as err:
        extract_json_object(reply)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("reply, expected", [
    ('["Retrieve recipes for a dish name.", "Find laws that answer a tenant question."]',
     ["Retrieve recipes for a dish name.", "Find laws that answer a tenant question."]),
    ("```python\n['Match a word with its definition.', 'Pair a title with its abstract.',]\n```",
     ["Match a word with its definition.", "Pair a title with its abstract."]),
    ("Here are some tasks:\n- Classify reviews by sentiment.\n- Detect spam emails.\n3. \"Tag news by topic.\"",
     ["Classify reviews by sentiment.", "Detect spam emails.", "Tag news by topic."]),
    ('{"tasks": ["Task one.", "Task two."]}', ["Task one.", "Task two."]),
    # Cut off at the token limit: keep the items that completed.
    ('[\n  "Retrieve papers citing a claim.",\n  "Find FAQ answers.",\n  "Match product que',
     ["Retrieve papers citing a claim.", "Find FAQ answers."]),
])
def test_extract_list(reply, expected):
    assert extract_list(reply) == expected


@pytest.mark.parametrize("reply, reason", [("", "empty"), ("No tasks today.", "not_list"), ("[", "truncated_json")])
def test_extract_list_failures(reply, reason):
    with pytest.raises(ParseError) as err:
        extract_list(reply)
    assert err.value.reason == reason


# --- validate --------------------------------------------------------------------------------
DOC_POS = ("Sourdough starters are kept alive by regular feeding with flour and water. A starter that smells of "
           "acetone is hungry rather than spoiled; discard most of it and feed it twice a day at room temperature "
           "until it doubles within six hours. Mould with fuzzy or coloured patches, however, means the culture "
           "should be thrown away and started again from fresh flour.")
DOC_NEG = ("Commercial instant yeast is sold in sealed packets and keeps for about a year in a cool cupboard. "
           "Once opened, store it in the fridge and use it within four months. Proof a spoonful in warm water "
           "with a pinch of sugar: if it does not foam within ten minutes, the yeast has lost its strength and "
           "should be replaced before you bake.")
SL = {"user_query": "why does my sourdough starter smell like nail polish", "positive_document": DOC_POS,
      "hard_negative_document": DOC_NEG}
SL_PARAMS = {"num_words": 50, "language": "English"}


def test_valid_examples_pass():
    assert check("short-long", SL, SL_PARAMS) is None
    out = {"input_text": "The screen cracked the first time I dropped it on carpet.", "label": "negative",
           "misleading_label": "neutral"}
    assert check("long-short", out, {"language": "English", "num_words": "less than 20"}) is None


def test_missing_key_not_string_empty():
    no_negative = {k: v for k, v in SL.items() if k != "hard_negative_document"}
    assert check("short-long", no_negative, SL_PARAMS) == "missing_key"
    assert check("sts", {"S1": "A dog runs.", "S2": ["A dog is running."], "S3": "A cat sleeps."}, {}) == "not_string"
    assert check("short-short", {"input": "ephemeral", "positive_document": "  \n"}, {}) == "empty_field"


@pytest.mark.parametrize("family, out", [
    ("short-long", {**SL, "hard_negative_document": "  " + DOC_POS.upper()}),
    ("long-short", {"input_text": "Great value, arrived on time.", "label": "Positive",
                    "misleading_label": "positive."}),
    ("bitext", {"S1": "The train leaves at nine.", "S2": "Der Zug fährt um neun ab.",
                "S3": "der zug fährt um neun ab."}),
])
def test_positive_equals_negative(family, out):
    params = {"language": "English", "source_language": "English", "target_language": "German"}
    assert check(family, out, params) == "positive_equals_negative"


def test_query_copied():
    query = "how long can a sourdough starter go without feeding"
    out = {**SL, "user_query": query, "positive_document": f"{query.capitalize()}? " + DOC_POS}
    assert check("short-long", out, SL_PARAMS) == "query_copied"
    # A short keyword query reused as the document's title is normal.
    titled = {**SL, "user_query": "sourdough starter smell", "positive_document": "Sourdough starter smell. " + DOC_POS}
    assert check("short-long", titled, SL_PARAMS) is None


def test_too_short_and_too_long():
    assert check("short-long", SL, {**SL_PARAMS, "num_words": 300}) == "too_short"
    long_doc = " ".join([DOC_POS] * 3)
    assert check("long-long", {"input": long_doc, "positive_document": DOC_NEG}, {"language": "English"}) == "too_short"
    short_short = {"input": "apple pie", "positive_document": DOC_POS}
    assert check("short-short", short_short, {"language": "English"}) == "too_long"
    out = {"input_text": DOC_POS, "label": "food safety", "misleading_label": "baking technique"}
    assert check("long-short", out, {"language": "English", "num_words": "less than 10"}) == "too_long"
    assert check("long-short", out, {"language": "English", "num_words": "at least 200"}) == "too_short"


def test_word_count_for_unspaced_scripts():
    assert count_words("the quick brown fox") == 4
    assert 8 <= count_words("机器学习是人工智能的一个分支领域") <= 12  # 16 characters
    assert count_words("Python 3.12 版本发布") >= 3


def test_wrong_language():
    # Asked for German, answered in English.
    assert check("short-long", SL, {"language": "German"}) == "wrong_language"
    assert check("short-long", SL, {"language": "German"}, check_language=False) is None
    assert check("short-long", SL, {}, language="German") == "wrong_language"
    bitext = {"S1": "The library opens at eight in the morning.", "S2": "The library opens at 8 a.m.",
              "S3": "The library closes at eight in the evening."}
    assert check("bitext", bitext, {"source_language": "English", "target_language": "Japanese"}) == "wrong_language"
    zh_asked = {"S1": "今日はとても暑いので、公園には行きません。", "S2": "暑すぎるから、今日は公園に行かない。",
                "S3": "明日は涼しいので、公園を散歩します。"}
    assert check("sts", zh_asked, {"language": "Chinese"}) == "wrong_language"  # kana: Japanese
    assert check("sts", zh_asked, {"language": "Japanese"}) is None


def test_language_check_is_lenient():
    ca = {"S1": "La biblioteca obre a les vuit del matí.", "S2": "La biblioteca s'obre a les 8 del matí.",
          "S3": "La biblioteca tanca a les vuit del vespre."}
    assert check("sts", ca, {"language": "Spanish"}) is None  # close relative: not judged
    assert check("sts", ca, {"language": "Klingon"}) is None  # unknown language: never rejected
    mixed = {"input": "Don't put all your eggs in one basket.",
             "positive_document": "Ne mets pas tous tes œufs dans le même panier."}
    assert check("short-short", mixed, {"language": "English"}) is None  # one field in English suffices


def test_unknown_family():
    with pytest.raises(ValueError):
        check("poetry", {}, {})


# --- the frontier-written examples -------------------------------------------------------------
def _frontier_rows():
    if not FRONTIER.is_dir():  # real LLM output: what the rules must accept (the built-in replies are ours)
        pytest.skip(f"{FRONTIER} is not available")
    rows = [json.loads(line) for path in sorted(FRONTIER.glob("*.jsonl")) for line in path.open(encoding="utf-8")]
    assert rows
    return rows


def _params(row):
    return {"language": row["language"], **row["params"]}


def test_all_frontier_rows_pass():
    failed = [(r["family"], r["language"], reason) for r in _frontier_rows()
              if (reason := check(r["family"], r["output"], _params(r)))]
    assert failed == []


def test_frontier_language_swaps_rejected():
    rows = [r for r in _frontier_rows() if r["family"] == "sts"]
    english = [r for r in rows if r["language"] == "English"]
    others = [r for r in rows if r["language"] != "English"]
    pairs = list(zip(english, others)) + list(zip(others, english))
    rejected = sum(check("sts", donor["output"], _params(row)) == "wrong_language" for row, donor in pairs)
    assert rejected >= 0.85 * len(pairs)


def test_looping_text_is_degenerate():
    looping = {"S1": "S1" + "1" * 120, "S2": "Een goede vertaling van de zin.", "S3": "Een slechte vertaling."}
    params = {"source_language": "Dutch", "target_language": "Dutch"}
    assert check("bitext", looping, params) == "degenerate"
    loop = "the cat the cat the cat the cat " * 10
    assert check("sts", {"S1": loop, "S2": "A cat sat here.", "S3": "A dog ran."}, {"language": "English"}) == "degenerate"


def test_values_that_echo_keys_or_hold_no_letters_are_degenerate():
    base = {"S1": "Der Hund schläft im Garten.", "S2": "Der Hund ruht im Garten.", "S3": "Die Katze spielt."}
    params = {"language": "German"}
    assert check("sts", base, params) is None
    assert check("sts", {**base, "S2": "S2S3"}, params) == "degenerate"
    assert check("sts", {**base, "S1": "2018-01-01T00:00:00.000Z, 45000.1"}, params) == "degenerate"
    pair = {"input": "A short question here", "positive_document": "A short matching phrase."}
    assert check("short-short", pair, {"language": "English"}) is None
    pair["input"] = "https://example.com/positive_document.json"
    assert check("short-short", pair, {"language": "English"}) == "degenerate"
