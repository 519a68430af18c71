"""Task families and languages against the paper's specification (shared/paper/PROMPTS.md) and frontier data."""

from __future__ import annotations

import json
import random
import re

import pytest

from synthembed.generate.validate import check
from synthembed.tasks.check import check_task, clean_task
from synthembed.tasks.families import FAMILIES, LANGUAGE_FIELDS, sample_params
from synthembed.tasks.languages import HIGH_RESOURCE, ISO_CODES, XLMR_LANGUAGES, default_weights, resolve
from synthembed.testing.replay_data import TASK_POOLS
from tests.conftest import FRONTIER, SHARED

PROMPTS_MD = SHARED / "paper" / "PROMPTS.md"

# How PROMPTS.md qualifies a value list ("difficulty (STS, bitext)") -> the family it applies to.
QUALIFIER_FAMILY = {"retrieval": "short-long", "classification": "long-short", "sts": "sts", "bitext": "bitext"}


@pytest.fixture(scope="module")
def spec() -> str:
    if not PROMPTS_MD.is_file():
        pytest.skip(f"specification not found at {PROMPTS_MD}")
    return PROMPTS_MD.read_text(encoding="utf-8")


def _parse_values(raw: str) -> tuple:
    if '"' in raw:
        return tuple(re.findall(r'"([^"]*)"', raw))
    return tuple(float(v) if "." in v else int(v) for v in (x.strip() for x in raw.split(",")))


def _value_lists(text: str) -> dict[tuple[str, str | None], tuple]:
    """(placeholder, qualifier or None) -> values, from the '## Placeholder value lists' section."""
    section = text.split("## Placeholder value lists", 1)[1].split("\n## ", 1)[0]
    lists = {}
    for line in section.splitlines():
        if not line.startswith("- "):
            continue
        for part in line[2:].split(";"):
            name, qualifier, raw = re.fullmatch(r"\s*(\w+)(?: \(([^)]*)\))?:\s*(.+?)\s*", part).groups()
            lists[(name, qualifier)] = _parse_values(raw)
    return lists


def _spec_lists(text: str, family: str) -> dict[str, tuple]:
    """The value list of every placeholder the spec gives this family."""
    fields = _prompt_fields(text)[family]
    lists = _value_lists(text)
    result = {}
    for name in fields:
        candidates = {q: v for (n, q), v in lists.items() if n == name}
        if None in candidates:
            result[name] = candidates[None]
            continue
        matching = [
            v
            for q, v in candidates.items()
            if any(QUALIFIER_FAMILY.get(p.strip().split()[0].lower()) == family for p in q.split(","))
        ]
        if matching:
            assert len(matching) == 1, (family, name)
            result[name] = matching[0]
    if family == "long-short":  # the paper's num_words for classification, given in prose
        raw = re.search(r"with num_words in (.*?)\(", text, re.DOTALL).group(1)
        result["num_words"] = _parse_values(raw)
    return result


def _prompt_fields(text: str) -> dict[str, set[str]]:
    """Placeholders each generation prompt uses, languages and task excluded."""
    section = text.split("## Generation prompts", 1)[1]
    fields = {}
    for line in section.splitlines():
        m = re.match(r'([a-z-]+)(?: \([^)]*\))?: "', line)
        if m:
            fields[m.group(1)] = set(re.findall(r"\{(\w+)\}", line)) - {"task", *LANGUAGE_FIELDS}
    assert "the same as short-short" in section  # long-long differs only in the length guideline
    fields["long-long"] = set(fields["short-short"])
    fields["long-short"] |= {"num_words"}  # the paper's version; distilabel drops it
    return fields


def test_families_in_paper_order():
    assert list(FAMILIES) == ["short-long", "long-short", "short-short", "long-long", "sts", "bitext"]
    assert [f.symmetric for f in FAMILIES.values()] == [False] * 4 + [True] * 2
    assert FAMILIES["short-long"].keys == ("user_query", "positive_document", "hard_negative_document")
    assert FAMILIES["long-short"].keys == ("input_text", "label", "misleading_label")
    for name in ("short-short", "long-long"):
        assert FAMILIES[name].keys == ("input", "positive_document")
    for name in ("sts", "bitext"):
        assert FAMILIES[name].keys == ("S1", "S2", "S3")


def test_family_roles_drive_validation():
    """The roles validation reads: the pair that must differ, the query that must not be pasted into the
    positive, the fields `num_words` bounds."""
    roles = {name: (f.distinct, f.not_copied, f.bounded_keys) for name, f in FAMILIES.items()}
    assert roles == {
        "short-long": (("positive_document", "hard_negative_document"), ("user_query", "positive_document"),
                       ("positive_document", "hard_negative_document")),
        "long-short": (("label", "misleading_label"), None, ("input_text",)),
        "short-short": (None, ("input", "positive_document"), ()),
        "long-long": (None, ("input", "positive_document"), ()),
        "sts": (("S2", "S3"), None, ()),
        "bitext": (("S2", "S3"), None, ()),
    }
    row = {"user_query": "q", "positive_document": "same text", "hard_negative_document": "Same text."}
    assert check("short-long", row, {}, check_language=False) == "positive_equals_negative"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_placeholders_match_spec(spec, name):
    family = FAMILIES[name]
    expected = _spec_lists(spec, name)
    assert set(family.placeholders) == set(_prompt_fields(spec)[name])
    assert set(expected) == set(family.placeholders)
    for placeholder, values in family.placeholders.items():
        assert values == expected[placeholder], (name, placeholder)
        assert [type(v) for v in values] == [type(v) for v in expected[placeholder]], (name, placeholder)


def test_spec_distinctions_kept(spec):
    # The two places where implementations disagree; pinned here so a refactor cannot silently merge them.
    assert FAMILIES["sts"].placeholders["low_score"] == (2.5, 3, 3.5)
    assert FAMILIES["bitext"].placeholders["low_score"] == (1.5, 2, 2.5)
    assert FAMILIES["short-long"].placeholders["difficulty"] != FAMILIES["sts"].placeholders["difficulty"]
    assert "num_words" in FAMILIES["long-short"].placeholders


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("seed", range(5))
def test_template_renders(name, seed):
    family = FAMILIES[name]
    rng = random.Random(seed)
    params = sample_params(family, rng)
    if name == "bitext":
        params.update(source_language="English", target_language="Swahili")
    else:
        params["language"] = rng.choice(XLMR_LANGUAGES)
    task = None if family.symmetric else "Given a recipe title, retrieve the full recipe."
    prompt = family.render(task, params)
    for key in family.keys:
        assert f'"{key}"' in prompt
    for value in params.values():
        assert str(value) in prompt
    if task:
        assert task in prompt
    assert "JSON object only" in prompt
    assert "{" not in prompt and "}" not in prompt
    expected_fields = set(family.placeholders) | (set() if family.symmetric else {"task"})
    expected_fields |= {"source_language", "target_language"} if name == "bitext" else {"language"}
    assert set(family.fields) == expected_fields


def test_long_guidelines():
    assert "at least 300 words" in FAMILIES["long-long"].template
    assert "very short" in FAMILIES["short-short"].template
    assert "at least {num_words} words" in FAMILIES["short-long"].template


@pytest.mark.parametrize("name", list(FAMILIES))
def test_brainstorm_prompts(name):
    family = FAMILIES[name]
    if family.symmetric:
        assert family.brainstorm is None
        return
    assert "python list of strings only" in family.brainstorm
    assert "about 20 elements" in family.brainstorm
    assert "{" not in family.brainstorm


def test_render_errors():
    family = FAMILIES["short-long"]
    params = sample_params(family, random.Random(0))
    with pytest.raises(ValueError, match="language"):
        family.render("some task", params)
    params["language"] = "English"
    del params["num_words"]
    with pytest.raises(ValueError, match="num_words"):
        family.render("some task", params)
    with pytest.raises(ValueError, match="task"):
        family.render(None, {**params, "num_words": 50})
    bitext = FAMILIES["bitext"]
    params = {**sample_params(bitext, random.Random(0)), "language": "English"}
    with pytest.raises(ValueError, match="source_language"):
        bitext.render(None, params)
    with pytest.raises(ValueError, match="no task"):
        bitext.render("a task", {**params, "source_language": "English", "target_language": "German"})


def test_sample_params_deterministic():
    for family in FAMILIES.values():
        draws = [sample_params(family, random.Random(seed)) for seed in (1, 1, 2)]
        assert draws[0] == draws[1]
        assert list(draws[0]) == list(family.placeholders)
        for key, value in draws[0].items():
            assert value in family.placeholders[key]
    many = {sample_params(FAMILIES["short-long"], random.Random(s))["num_words"] for s in range(200)}
    assert many == set(FAMILIES["short-long"].placeholders["num_words"])


def test_languages():
    assert len(XLMR_LANGUAGES) == 93 == len(set(XLMR_LANGUAGES))  # the paper's count
    assert set(ISO_CODES) == set(XLMR_LANGUAGES)
    assert len(set(ISO_CODES.values())) == len(ISO_CODES)
    assert len(HIGH_RESOURCE) == 13 == len(set(HIGH_RESOURCE))
    assert set(HIGH_RESOURCE) <= set(XLMR_LANGUAGES) and "English" not in HIGH_RESOURCE
    for query in ("de", "German", "german", " GERMAN ", "DE", "de-AT"):
        assert resolve(query) == "German"
    assert resolve("zh_Hant") == "Chinese" and resolve("farsi") == "Persian"
    with pytest.raises(ValueError, match="German"):
        resolve("Klingon")
    with pytest.raises(ValueError):
        resolve("xx-YY")


def test_default_weights():
    weights = default_weights()
    assert list(weights) == list(XLMR_LANGUAGES)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["English"] == 0.431
    assert all(weights[lang] == pytest.approx(0.029) for lang in HIGH_RESOURCE)
    rest = [w for lang, w in weights.items() if lang != "English" and lang not in HIGH_RESOURCE]
    assert len(rest) == 79 and max(rest) == pytest.approx(min(rest)) == pytest.approx(0.192 / 79)

    custom = default_weights(["en", "German", "Swahili"])
    assert list(custom) == ["English", "German", "Swahili"]
    assert sum(custom.values()) == pytest.approx(1.0)
    assert custom["English"] / custom["German"] == pytest.approx(0.431 / 0.029)
    assert custom["German"] / custom["Swahili"] == pytest.approx(weights["German"] / weights["Swahili"])
    assert default_weights(["Swahili", "Xhosa"]) == {"Swahili": pytest.approx(0.5), "Xhosa": pytest.approx(0.5)}
    with pytest.raises(ValueError):
        default_weights(["German", "de"])


def _frontier_rows():
    if not FRONTIER.is_dir():
        pytest.skip(f"frontier data not found at {FRONTIER}")
    rows = []
    for path in sorted(FRONTIER.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        pytest.skip(f"no frontier rows in {FRONTIER}")
    return rows


def test_frontier_params_use_our_lists():
    rows = _frontier_rows()
    for row in rows:
        family = FAMILIES[row["family"]]
        assert set(row["output"]) == set(family.keys)
        assert (row["task"] is None) == family.symmetric
        assert row["language"] in XLMR_LANGUAGES
        for key, value in row["params"].items():
            if key in LANGUAGE_FIELDS:
                assert value in XLMR_LANGUAGES, (row["family"], key, value)
                continue
            allowed = family.placeholders[key]
            if row["family"] == "short-long" and key == "num_words":
                # Known deviation documented in the frontier SOURCE.md: documents of 50/100/150 words only,
                # to keep that set small; 150 is not one of the paper's values.
                allowed = (*allowed, 150)
            assert value in allowed, (row["family"], key, value)
        # Frontier classification follows distilabel (no num_words); everything else carries every placeholder.
        expected = set(family.placeholders) - ({"num_words"} if row["family"] == "long-short" else set())
        assert expected <= set(row["params"]), (row["family"], row["params"])
        if row["family"] == "bitext":
            assert row["language"] == row["params"]["source_language"]


# --- brainstormed task definitions ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, cleaned, reason", [
    ("0", "0", "no_letters"),
    ("3.", "", "no_letters"),
    ("answer", "answer", "too_short"),
    ("1. Given a", "Given a", "too_short"),
    ("给定一个问题，检索相关的文档并给出答案。", "给定一个问题，检索相关的文档并给出答案。", "wrong_script"),
    ("retrieve " * 8, "retrieve " * 8, "degenerate"),
    ("Given a topic, " + "write about it at length " * 20, None, "too_long"),
    ('Task 3: "Given a recipe name, retrieve its list of ingredients."',
     "Given a recipe name, retrieve its list of ingredients.", None),
    ("- Classify an email as spam or not spam.", "Classify an email as spam or not spam.", None),
    ("[2] Match a word to its definition.", "Match a word to its definition.", None),
    ("Natural Language Processing (NLP) for", None, "fragment"),  # what SmolLM2-135M brainstorms
    ("List Comprehension Sorting Results [in a", None, "fragment"),
    ("Using Natural Language In Prediction Mode;", None, "fragment"),
    ("Given a post, retrieve the topic tag it belongs to.", None, None),
])
def test_task_definitions_are_cleaned_and_junk_is_named(raw, cleaned, reason):
    task = clean_task(raw)
    assert cleaned is None or task == cleaned.strip()
    assert check_task(task) == reason


def test_built_in_and_frontier_task_pools_pass():
    pools = [TASK_POOLS]
    if (FRONTIER / "task_pools.json").is_file():  # real brainstorms, where present
        pools.append(json.loads((FRONTIER / "task_pools.json").read_text()))
    rejected = [(t, check_task(clean_task(t))) for pool in pools for tasks in pool.values() for t in tasks
                if check_task(clean_task(t))]
    assert rejected == []
