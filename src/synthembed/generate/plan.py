"""Deterministic planning: which items a run (or one shard of it) asks for, each with its own seeded draws.

Item `short-long-000042` draws its task, placeholders and language from a generator seeded by
(seed, family, index) alone, so a larger run extends a smaller one and shards never overlap. That name is the
item's place in the plan (the ledger's key for resuming); the example it yields is published as
`short-long-000042-<12 hex digits of its request key>`, unique across runs with other seeds, models or tasks.
"""

from __future__ import annotations

import hashlib
import math
import random
from urllib.parse import urlsplit
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from synthembed.config import ConfigError, GenerateConfig
from synthembed.formats.examples import normalize
from synthembed.generate.backends.base import ChatRequest
from synthembed.tasks.families import FAMILIES, Family, sample_params
from synthembed.tasks.languages import XLMR_LANGUAGES, default_weights

BRAINSTORM_ITEMS = 20  # the prompts ask for about 20 tasks a call
NEAR_DUPLICATE = 90  # rapidfuzz token-sort ratio at or above which two task definitions count as one


@dataclass(frozen=True)
class Item:
    id: str
    family: str
    task: str | None
    params: dict
    request: ChatRequest

    @property
    def language(self) -> str:
        return self.params.get("language") or self.params["source_language"]


def family_counts(weights: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` by weight with the largest-remainder rule, in the paper's family order."""
    names = [f for f in FAMILIES if weights.get(f, 0) > 0]
    norm = sum(weights[f] for f in names)
    exact = {f: total * weights[f] / norm for f in names}
    counts = {f: int(exact[f]) for f in names}
    for f in sorted(names, key=lambda f: counts[f] - exact[f])[: total - sum(counts.values())]:
        counts[f] += 1
    return counts


def language_table(cfg: GenerateConfig) -> tuple[list[str], list[float]]:
    if cfg.language_weights is not None:
        languages = list(cfg.language_weights)
        return languages, [cfg.language_weights[k] for k in languages]
    weights = default_weights(cfg.languages or XLMR_LANGUAGES)
    return list(weights), list(weights.values())


def brainstorm_requests(cfg: GenerateConfig) -> Iterator[tuple[str, int, ChatRequest]]:
    """(family, call index, request) for every asymmetric family the run asks for."""
    for name, family in FAMILIES.items():
        if family.brainstorm is None or cfg.families.get(name, 0) <= 0:
            continue
        for call in range(cfg.brainstorm_calls):
            seed = _derive_seed(cfg.seed, "brainstorm", name, call)
            yield name, call, ChatRequest(family.brainstorm, cfg.temperature, cfg.top_p, cfg.max_tokens, seed,
                                          json_list=BRAINSTORM_ITEMS if cfg.json_mode else None)


def dedupe_tasks(tasks: Sequence[str]) -> list[str]:
    """Drop exact (case/space-insensitive) and near duplicates, keeping the first of each.

    Near duplicates are compared only with kept tasks that share one of the new task's three rarest words:
    two definitions this similar share nearly all words, and the index keeps the paper's ~150k tasks fast.
    """
    kept: list[str] = []
    norms: list[str] = []
    postings: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for task in tasks:
        norm = normalize(task)
        if not norm or norm in seen:
            continue
        seen.add(norm)
        words = set(norm.split())
        rare = sorted(words, key=lambda w: (len(postings[w]), w))[:3]
        candidates = [norms[i] for i in {i for w in rare for i in postings[w]}]
        if process.extractOne(norm, candidates, scorer=fuzz.token_sort_ratio, score_cutoff=NEAR_DUPLICATE):
            continue
        for w in words:
            postings[w].append(len(kept))
        kept.append(task.strip())
        norms.append(norm)
    return kept


def check_options(cfg: GenerateConfig) -> None:
    """Check everything planning uses (weights, languages, placeholder values) before the first request."""
    url = urlsplit(cfg.base_url)
    if cfg.backend == "openai" and (url.scheme not in ("http", "https") or not url.hostname):
        raise ConfigError(f"base_url {cfg.base_url!r}: expected http(s)://HOST[:PORT]/v1")
    bad = {f: w for f, w in cfg.families.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise ConfigError(f"families: weights must be finite numbers >= 0, got {bad}")
    try:
        languages, weights = language_table(cfg)
    except ValueError as err:
        raise ConfigError(f"languages: {err}") from None
    bad = {lang: w for lang, w in zip(languages, weights) if not (math.isfinite(w) and w >= 0)}
    if bad or not any(w > 0 for w in weights):
        shown = ", ".join(f"{lang}:{w:g}" for lang, w in (bad or dict(zip(languages, weights))).items())
        raise ConfigError(f"languages: weights must be >= 0 with at least one > 0, got {shown}")
    for name, count in family_counts(cfg.families, cfg.num_examples).items():
        family = FAMILIES[name]
        try:  # one dry draw per family: a placeholder value the template cannot take fails here, not mid-run
            _plan_item(cfg, family, 0, ["a task"] if family.brainstorm else [], languages, weights)
        except (ValueError, TypeError, KeyError, IndexError) as err:
            raise ConfigError(f"placeholders.{name}: {err}") from None


def planned_count(cfg: GenerateConfig) -> int:
    """How many items this shard asks for, whether or not their family got any tasks."""
    shard, shards = cfg.shard_index
    return len(range(shard, cfg.num_examples, shards))


def example_id(item: str, key: str) -> str:
    """The published id of the example item `item` got from request `key` (old ledgers stored `item` alone)."""
    suffix = key[:12]
    return item if item.endswith("-" + suffix) else f"{item}-{suffix}"


def plan_items(cfg: GenerateConfig, pool: dict[str, list[str]]) -> list[Item]:
    """The items of this run's shard, in a stable order."""
    languages, weights = language_table(cfg)
    shard, shards = cfg.shard_index
    items = []
    ordinal = 0
    for name, count in family_counts(cfg.families, cfg.num_examples).items():
        family = FAMILIES[name]
        for index in range(count):
            ordinal += 1
            if (ordinal - 1) % shards != shard:
                continue
            if family.brainstorm is not None and not pool.get(name):
                continue  # no task survived brainstorming; reported by the caller
            items.append(_plan_item(cfg, family, index, pool.get(name, []), languages, weights))
    return items


def _plan_item(cfg, family: Family, index: int, tasks, languages, weights) -> Item:
    rng = random.Random(f"{cfg.seed}:{family.name}:{index}")
    task = rng.choice(tasks) if family.brainstorm is not None else None
    params = sample_params(family, rng, cfg.placeholders.get(family.name))
    language = rng.choices(languages, weights)[0]
    if family.name == "bitext":  # one side English, the other a sampled language, in either direction
        others = [(lang, w) for lang, w in zip(languages, weights) if lang != "English"] or [("English", 1.0)]
        other = rng.choices([o[0] for o in others], [o[1] for o in others])[0]
        source, target = ("English", other) if rng.random() < 0.5 else (other, "English")
        params.update(source_language=source, target_language=target)
    else:
        params["language"] = language
    prompt = family.render(task, params)
    seed = rng.randrange(2**31)
    request = ChatRequest(prompt, cfg.temperature, cfg.top_p, cfg.max_tokens, seed, json_object=cfg.json_mode,
                          json_keys=family.keys if cfg.json_mode else None)
    return Item(f"{family.name}-{index:06d}", family.name, task, params, request)


def _derive_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "big") >> 1
