"""Pull the JSON object (generation) or the list of strings (brainstorm) out of an LLM reply.

Replies are often wrapped in prose or ``` fences, use python literals (single quotes, True,
trailing commas) or stop mid-object at the token limit. We try strict JSON first, then cheap
lenient passes, and report failures with a short `reason` code so the pipeline can count them:
"empty", "no_json", "truncated_json", "not_object", "not_list".
"""

from __future__ import annotations

import ast
import json
import re

_FENCE_RE = re.compile(r"```[ \t]*[\w-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")
_BULLET_RE = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,3}[.)]|\[\d{1,3}\])\s+(.+?)\s*$", re.M)
_QUOTED_RE = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'')
_QUOTES = "\"'“”‘’`"
_LITERAL_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\b(true|false|null)\b')
_PY_LITERALS = {"true": "True", "false": "False", "null": "None"}


class ParseError(ValueError):
    """A reply we could not use; `reason` is a short code for counting failures."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _loads(snippet: str):
    """Parse one JSON / python literal; raise ValueError when no pass accepts it."""
    try:
        return json.loads(snippet, strict=False)  # strict=False: raw newlines inside strings
    except ValueError:
        pass
    fixed = _TRAILING_COMMA_RE.sub(r"\1", snippet)
    if fixed != snippet:
        try:
            return json.loads(fixed, strict=False)
        except ValueError:
            pass
    try:  # python style: single quotes, True/False/None, trailing commas
        return ast.literal_eval(snippet)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    # JSON's true/false/null next to python quoting: rewrite the bare words, never inside strings.
    pythonic = _LITERAL_RE.sub(lambda m: _PY_LITERALS[m[1]] if m[1] else m[0], snippet)
    try:
        return ast.literal_eval(pythonic)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(str(err)) from None


def _span_end(text: str, start: int, open_ch: str, close_ch: str) -> int | None:
    """Index after the bracket closing text[start], or None when it never closes (truncated)."""
    depth, quote, prev, i, n = 0, "", "", start, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote, prev = "", ch
        elif ch == '"' or (ch == "'" and prev in "{[,:"):  # an apostrophe after a letter is prose
            quote = ch
        elif ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        if not quote and not ch.isspace():
            prev = ch
        i += 1
    return None


def _sources(text: str) -> list[str]:
    """Fenced blocks first (the model's intended payload), then the whole reply."""
    return [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]


def _candidates(text: str, open_ch: str, close_ch: str):
    """Yield (value, None) for each bracketed span that parses, or (None, "truncated")."""
    for source in _sources(text):
        pos = source.find(open_ch)
        while pos != -1:
            end = _span_end(source, pos, open_ch, close_ch)
            if end is None:
                yield None, source[pos:]
                break  # every later opener sits inside this unclosed one
            try:
                yield _loads(source[pos:end]), None
            except ValueError:
                pass
            pos = source.find(open_ch, pos + 1)


_NOTHING = object()


def _whole(text: str):
    """The reply (or a fenced block of it) parsed as one value, else _NOTHING."""
    for source in _sources(text):
        try:
            return _loads(source.strip())
        except ValueError:
            continue
    return _NOTHING


def extract_json_object(text: str) -> dict:
    """The first JSON object in `text` that parses (fenced, prose-wrapped or python-style)."""
    if not text or not text.strip():
        raise ParseError("empty")
    whole = _whole(text)
    if isinstance(whole, dict):
        return whole
    truncated = False
    for value, rest in _candidates(text, "{", "}"):
        if rest is not None:
            truncated = True
        elif isinstance(value, dict):
            return value
    if truncated:
        raise ParseError("truncated_json", "an opening brace never closes")
    if whole is not _NOTHING:
        raise ParseError("not_object", f"the reply is a {type(whole).__name__}")
    raise ParseError("no_json", text[:80])


def _clean(item) -> str:
    if isinstance(item, dict) and len(item) == 1:  # [{"task": "..."}] style
        item = next(iter(item.values()))
    if not isinstance(item, (str, int, float)) or isinstance(item, bool):
        return ""
    return str(item).strip().rstrip(",").strip().strip(_QUOTES).strip()


def _salvage(text: str) -> list[str]:
    """Items of a list literal that does not parse (cut off at the token limit, or a stray
    unescaped quote): one quoted item per line when laid out so, else every complete literal."""
    start = text.find("[")
    if start < 0:
        return []
    region = text[start + 1:]
    region = region[: region.rfind("]")] if "]" in region else region
    lines = [ln.strip().rstrip(",").strip() for ln in region.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) >= 2:  # drop a last line cut mid-string: it lacks its closing quote
        items = [_clean(ln) for ln in lines if ln[:1] in _QUOTES and ln[-1:] in _QUOTES and len(ln) > 1]
    else:
        items = [_clean(a or b) for a, b in _QUOTED_RE.findall(region)]
    return [s for s in items if s]


def extract_list(text: str) -> list[str]:
    """Brainstormed items: a JSON/python list literal, else bullet or numbered lines."""
    if not text or not text.strip():
        raise ParseError("empty")
    truncated = False
    for value, rest in _candidates(text, "[", "]"):
        if rest is not None:
            truncated = True
        elif isinstance(value, (list, tuple)):
            items = [s for s in map(_clean, value) if s]
            if items:
                return items
    bullets = [s for s in (_clean(m.group(1)) for m in _BULLET_RE.finditer(text)) if s]
    if bullets:
        return bullets
    salvaged = _salvage(text)
    if salvaged:
        return salvaged
    if truncated:
        raise ParseError("truncated_json", "an opening bracket never closes")
    raise ParseError("not_list", text[:80])
