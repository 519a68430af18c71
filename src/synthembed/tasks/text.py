"""Measures of a text that task screening (tasks.check) and example validation (generate.validate) share: word
counts that also hold for scripts written without spaces, and degenerate text (a small model looping)."""

from __future__ import annotations

import re
import zlib

# Scripts written without spaces: estimate words from characters (CJK ~1.5 chars per word,
# Thai/Lao/Khmer/Burmese/Tibetan ~4).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SEA = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff"
_CJK_RE = re.compile(f"[{_CJK}]")
_SEA_RE = re.compile(f"[{_SEA}]")
_UNSPACED_RE = re.compile(f"[{_CJK}{_SEA}]+")
_WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> float:
    spaced = _UNSPACED_RE.sub(" ", text)
    return (sum(1 for tok in spaced.split() if _WORD_RE.search(tok))
            + len(_CJK_RE.findall(text)) / 1.5 + len(_SEA_RE.findall(text)) / 4.0)


DEGENERATE_MIN_CHARS = 24
DEGENERATE_MAX_RATIO = 0.15  # prose compresses to ~0.4-0.6 of its size; "S1111..." loops to well under 0.1
MIN_LETTER_SHARE = 0.15  # of non-space characters in values of 16+; "45 + 30h = 150, so h = 3.5" has 0.21


def is_degenerate(text: str) -> bool:
    """Looping, one-character or letterless text (a small model stuck), judged by compression and letter share."""
    stripped = text.strip()
    raw = stripped.encode()
    if len(raw) >= DEGENERATE_MIN_CHARS and (len(zlib.compress(raw, 9)) / len(raw) < DEGENERATE_MAX_RATIO
                                             or len(set(stripped)) <= 3):
        return True
    visible = [c for c in stripped if not c.isspace()]
    return len(stripped) >= 16 and sum(c.isalpha() for c in visible) < MIN_LETTER_SHARE * len(visible)
