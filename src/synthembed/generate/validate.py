"""Cheap sanity checks on one parsed synthetic example, before it enters the training set.

`check()` returns None for a usable example, else a short reason code (first failing rule):
missing_key, not_string, empty_field, degenerate, positive_equals_negative, query_copied, too_short,
too_long, wrong_language. The rules are deliberately lenient: losing good data costs more
than keeping an odd example, so each rule only fires on clear failures.
"""

from __future__ import annotations

import re
from functools import lru_cache

from synthembed.tasks.families import FAMILIES, Family
from synthembed.tasks.text import count_words, is_degenerate

MIN_FRACTION = 0.4  # documents must reach this share of the requested word count
MIN_COPY_WORDS = 5  # keyword queries of <= 4 words are fine as a document title


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold().strip(" .!?。！？")


_PUNCT = "\"'.,;:!?()[]{}<>«»“”‘’„…¿¡-–—/*#。、，！？：；（）「」『』"


def _bare(s: str) -> str:
    """Casefolded words without edge punctuation, for verbatim-containment tests."""
    return " ".join(w for w in (t.strip(_PUNCT) for t in s.casefold().split()) if w)


# --- length rules --------------------------------------------------------------------------
_BOUND_RE = re.compile(r"(less than|fewer than|at most|at least|more than)?\s*(\d+)", re.I)


def _length_reason(family: Family, out: dict, params: dict) -> str | None:
    words = [count_words(out[k]) for k in family.keys]
    if family.max_words and max(words) > family.max_words:
        return "too_long"
    if family.min_words and min(words) < MIN_FRACTION * family.min_words:
        return "too_short"
    # num_words: an int (retrieval documents) or a phrase like "less than 10" / "at least 50".
    m = _BOUND_RE.search(str(params.get("num_words", ""))) if family.bounded_keys else None
    if m is None:
        return None
    n, upper = int(m.group(2)), (m.group(1) or "").lower() in ("less than", "fewer than", "at most")
    for key in family.bounded_keys:
        words = count_words(out[key])
        if upper and words > 2 * n + 5:  # generous: "less than 10" still allows a long sentence
            return "too_long"
        if not upper and words < MIN_FRACTION * n:
            return "too_short"
    return None


# --- main entry ----------------------------------------------------------------------------
def check(family: str, output: dict, params: dict, *, language: str | None = None,
          check_language: bool = True) -> str | None:
    """None when `output` is a usable example of `family`, else a short reason code.

    The language comes from `language`, else params["language"]; bitext reads
    params["source_language"] (S1) and params["target_language"] (S2, S3).
    `check_language=False` skips the language-ID rule (the only one that loads models).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}")
    spec = FAMILIES[family]
    keys = spec.keys
    if any(k not in output for k in keys):
        return "missing_key"
    if any(not isinstance(output[k], str) for k in keys):
        return "not_string"
    if any(not output[k].strip() for k in keys):
        return "empty_field"
    if any(is_degenerate(output[k]) or _echoes_key(output[k], keys) for k in keys):
        return "degenerate"
    if spec.distinct:
        a, b = spec.distinct
        if _norm(output[a]) == _norm(output[b]):
            return "positive_equals_negative"
    if spec.not_copied:
        q, d = spec.not_copied
        query = _bare(output[q])
        if count_words(output[q]) >= MIN_COPY_WORDS and query and query in _bare(output[d]):
            return "query_copied"
    reason = _length_reason(spec, output, params)
    if reason or not check_language:
        return reason
    lang = language or params.get("language")
    if family == "bitext":
        groups = [(params.get("source_language") or lang, [output["S1"]]),
                  (params.get("target_language"), [output["S2"], output["S3"]])]
    else:
        groups = [(lang, [output[k] for k in keys])]
    if any(name and _wrong_language(texts, name) for name, texts in groups):
        return "wrong_language"
    return None


_KEY_ECHO = re.compile(r"^\s*S[123](?![a-z])")  # "S2S3", "S1: ...": a value that restates its key


def _echoes_key(text: str, keys: tuple[str, ...]) -> bool:
    """The value repeats the JSON keys instead of content ("https://.../positive_document.json", "S2S3")."""
    return any("_" in k and k in text for k in keys) or ("S1" in keys and bool(_KEY_ECHO.match(text)))


# --- language identification ---------------------------------------------------------------
# (1) Script: a text with almost no letters of the expected script is foreign; cheap, exact, and
# works for languages lingua lacks. (2) lingua, only for scripts several languages share. Each
# field is judged alone, and the group is foreign only when no judged field looks like the
# expected language and at least one is confidently another. Capitalised words are dropped
# first: foreign names and acronyms in an English sentence otherwise sway lingua.
_SCRIPTS = {
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff", "cyrillic": "\u0400-\u052f",
    "greek": "\u0370-\u03ff\u1f00-\u1fff", "hebrew": "\u0590-\u05ff",
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
    "devanagari": "\u0900-\u097f", "bengali": "\u0980-\u09ff", "gurmukhi": "\u0a00-\u0a7f",
    "gujarati": "\u0a80-\u0aff", "oriya": "\u0b00-\u0b7f", "tamil": "\u0b80-\u0bff", "telugu": "\u0c00-\u0c7f",
    "kannada": "\u0c80-\u0cff", "malayalam": "\u0d00-\u0d7f", "sinhala": "\u0d80-\u0dff", "thai": "\u0e00-\u0e7f",
    "lao": "\u0e80-\u0eff", "tibetan": "\u0f00-\u0fff", "myanmar": "\u1000-\u109f", "georgian": "\u10a0-\u10ff",
    "armenian": "\u0530-\u058f", "ethiopic": "\u1200-\u139f", "khmer": "\u1780-\u17ff",
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af", "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
    "kana": "\u3040-\u30ff",
}
_NON_LATIN = {
    "cyrillic": "russian ukrainian belarusian bulgarian macedonian kazakh mongolian kyrgyz tajik",
    "cyrillic latin": "serbian", "greek": "greek", "arabic": "arabic persian farsi urdu pashto sindhi uyghur",
    "hebrew": "hebrew yiddish", "devanagari": "hindi marathi nepali sanskrit", "bengali": "bengali assamese",
    "gurmukhi arabic": "punjabi panjabi", "gujarati": "gujarati", "oriya": "oriya odia", "tamil": "tamil",
    "telugu": "telugu", "kannada": "kannada", "malayalam": "malayalam", "sinhala": "sinhala", "thai": "thai",
    "lao": "lao", "tibetan": "tibetan", "myanmar": "burmese", "georgian": "georgian", "armenian": "armenian",
    "ethiopic": "amharic tigrinya", "khmer": "khmer", "hangul": "korean", "han": "chinese", "han kana": "japanese",
}
_SCRIPT_OF = {lang: tuple(scripts.split()) for scripts, langs in _NON_LATIN.items() for lang in langs.split()}
_LATIN_EXTRA = {"galician", "breton", "western frisian", "frisian", "scottish gaelic", "gaelic", "hausa", "javanese",
                "sundanese", "malagasy", "oromo", "uzbek"}
_SHARED = {"latin", "cyrillic", "arabic", "devanagari"}  # scripts where lingua must tell languages apart
_ALIASES = {"SLOVENIAN": "SLOVENE", "NORWEGIAN": "BOKMAL", "NORWEGIAN_BOKMAL": "BOKMAL",
            "NORWEGIAN_NYNORSK": "NYNORSK", "FILIPINO": "TAGALOG", "FARSI": "PERSIAN", "PANJABI": "PUNJABI",
            "MANDARIN": "CHINESE", "LUGANDA": "GANDA", "SESOTHO": "SOTHO", "MODERN_GREEK": "GREEK"}
# Close relatives: lingua confuses them on short texts, and a generator may legitimately mix them.
_RELATED = ["MALAY INDONESIAN", "BOKMAL NYNORSK DANISH SWEDISH", "CROATIAN SERBIAN BOSNIAN SLOVENE MACEDONIAN",
            "CZECH SLOVAK", "SPANISH CATALAN PORTUGUESE", "HINDI MARATHI", "AFRIKAANS DUTCH", "PERSIAN URDU",
            "RUSSIAN UKRAINIAN BELARUSIAN BULGARIAN MACEDONIAN", "SERBIAN MACEDONIAN BULGARIAN"]
_ALLOWED: dict[str, set[str]] = {}
for _group in _RELATED:
    for _name in _group.split():
        _ALLOWED.setdefault(_name, set()).update(_group.split())
# lingua's candidates: the expected language, its relatives, and the languages a generator
# plausibly slips into. Leaving rare languages out stops lingua "finding" Latin, Tagalog or
# Yoruba in a short English phrase full of foreign names.
_COMMON = ("ENGLISH GERMAN FRENCH SPANISH CHINESE RUSSIAN JAPANESE ARABIC ITALIAN PORTUGUESE DUTCH POLISH "
           "TURKISH VIETNAMESE INDONESIAN HINDI KOREAN").split()

LANGID_MIN_LETTERS = 20  # shorter fields are not judged
LANGID_MAX_CHARS = 300  # lingua sees at most this much of each field (speed)
SCRIPT_MIN_SHARE = 0.2  # below this share of expected-script letters a text is foreign
EXPECTED_MAX_CONF = 0.05  # a field is foreign when lingua gives the expected language less than this
OTHER_MIN_CONF = 0.5  # ... and another, unrelated language at least this
SHORT_TEXT_CHARS = 120  # below this lingua's low-accuracy mode is unreliable, so use its
HIGH_ACCURACY_SHORT_TEXTS = True  # high-accuracy models (~15 MB each, loaded lazily) or skip

_LETTER_RE = re.compile(r"[^\W\d_]")
_CJK_ANY_RE = re.compile(f"[{_SCRIPTS['han']}{_SCRIPTS['kana']}]")
_KANA_RE = re.compile(f"[{_SCRIPTS['kana']}]")
_CAPITALISED_RE = re.compile(r"\b[^\W\d_]*[A-Z\u00c0-\u00de\u0400-\u042f][\w'’-]*")


@lru_cache(maxsize=None)
def _script_re(scripts: tuple[str, ...]) -> re.Pattern:
    return re.compile("[" + "".join(_SCRIPTS[s] for s in scripts) + "]")


@lru_cache(maxsize=None)
def _lingua_language(name: str):
    from lingua import Language

    key = re.sub(r"\s+", "_", name.strip().upper())
    return getattr(Language, _ALIASES.get(key, key), None)


@lru_cache(maxsize=None)
def _detectors(language):
    """(high, low) accuracy detectors; lingua shares loaded models between detectors."""
    from lingua import Language, LanguageDetectorBuilder

    names = set(_COMMON) | _ALLOWED.get(language.name, set()) | {language.name}
    builder = LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in sorted(names)))
    return builder.build(), builder.with_low_accuracy_mode().build()


def _scripts_for(name: str) -> tuple[str, ...] | None:
    key = name.strip().lower()
    if key in _SCRIPT_OF:
        return _SCRIPT_OF[key]
    if key in _LATIN_EXTRA or _lingua_language(name) is not None:
        return ("latin",)
    return None


def _wrong_language(texts: list[str], name: str) -> bool:
    scripts = _scripts_for(name)
    if scripts is None:
        return False  # a language we know nothing about: never reject
    joined = " ".join(texts)
    letters = len(_LETTER_RE.findall(joined))
    if letters < LANGID_MIN_LETTERS:
        return False
    cjk = len(_CJK_ANY_RE.findall(joined))
    weight = 3 if {"han", "kana"} & set(scripts) else 1  # one CJK character carries about a word
    if len(_script_re(scripts).findall(joined)) * weight < SCRIPT_MIN_SHARE * (letters + 2 * cjk):
        return True
    if scripts == ("han",):  # Chinese never needs kana; a kana-rich text is Japanese
        return len(_KANA_RE.findall(joined)) > SCRIPT_MIN_SHARE * cjk
    language = _lingua_language(name)
    if language is None or not _SHARED & set(scripts):
        return False
    allowed = _ALLOWED.get(language.name, set()) | {language.name}
    high, low = _detectors(language)
    fields = [_CAPITALISED_RE.sub(" ", t[:LANGID_MAX_CHARS]) for t in texts]
    fields = [t for t in fields if len(_LETTER_RE.findall(t)) >= LANGID_MIN_LETTERS] or [" ".join(fields)]
    # Long fields are judged reliably; short ones (queries, labels) only when nothing else is there.
    long_fields = [t for t in fields if len(t) >= SHORT_TEXT_CHARS]
    foreign = False
    for text in long_fields or (fields if HIGH_ACCURACY_SHORT_TEXTS else []):
        if len(_LETTER_RE.findall(text)) < LANGID_MIN_LETTERS:
            continue
        values = (low if long_fields else high).compute_language_confidence_values(text)
        mine = next((v.value for v in values if v.language == language), 0.0)
        if values[0].language.name in allowed or mine >= EXPECTED_MAX_CONF:
            return False  # one field plausibly in the expected language is enough
        foreign = foreign or values[0].value >= OTHER_MIN_CONF
    return foreign
