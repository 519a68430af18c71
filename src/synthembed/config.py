"""Typed configs: YAML files plus `key=value` overrides, errors that name the field and what is allowed."""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from synthembed.tasks.families import FAMILIES
from synthembed.tasks.languages import resolve


class ConfigError(ValueError):
    """A config file or override that is wrong; the message names the field and what is allowed."""


# The top level of a config file: the pipeline's settings (PipelineConfig's fields; a test keeps them equal).
SECTIONS = ("output_dir", "generate", "holdout", "train", "evaluate")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value, info: ValidationInfo):
        """pydantic reads `batch_size: true` as 1; a YAML boolean where a number belongs is a mistake."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _boolean_for_number(value, field.annotation):
            raise ValueError("expected a number, got a boolean (true/false)")
        return value


class Price(Strict):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class GenerateConfig(Strict):
    output_dir: Path = Path("runs/generate")
    backend: Literal["local", "openai"] = "local"
    model: str = "smollm2-135m"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    num_examples: int = Field(50, ge=1)
    families: dict[str, float] = Field(default_factory=lambda: {name: 1.0 for name in FAMILIES})
    languages: list[str] | None = None  # None: the XLM-R list
    language_weights: dict[str, float] | None = None  # None: English-heavy default weighting
    placeholders: dict[str, dict[str, list]] = Field(default_factory=dict)  # family -> placeholder -> values
    brainstorm_calls: int = Field(2, ge=1)  # per asymmetric family, ~20 tasks each
    task_pool: Path | None = None  # reuse a tasks.json (e.g. from a brainstorm-only run) instead of brainstorming
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16)
    seed: int = 0
    concurrency: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)  # local backend
    repetition_penalty: float = Field(1.0, ge=1.0)  # local backend: > 1 discourages loops (small models)
    timeout_s: float = Field(120, gt=0)
    max_retries: int = Field(6, ge=0)
    json_mode: bool = True  # ask for a JSON-object response format where the server supports it
    max_tokens_total: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)
    price: Price | None = None  # None: looked up by model name, 0 for local models
    shard: str = "0/1"
    check_language: bool = True

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown family {unknown}; allowed: {list(FAMILIES)}")
        if not any(w > 0 for w in value.values()) or any(w < 0 for w in value.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return value

    @field_validator("placeholders")
    @classmethod
    def _known_placeholders(cls, value: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
        for family, lists in value.items():
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r}; allowed: {list(FAMILIES)}")
            for name, values in lists.items():
                allowed = list(FAMILIES[family].placeholders)
                if name not in allowed:
                    raise ValueError(f"{family} has no placeholder {name!r}; allowed: {allowed}")
                if not values:
                    raise ValueError(f"{family}.{name}: give at least one value")
        return value

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [resolve(v) for v in value]

    @field_validator("language_weights")
    @classmethod
    def _known_weighted_languages(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return None if value is None else {resolve(k): w for k, w in value.items()}

    @field_validator("shard")
    @classmethod
    def _shard_format(cls, value: str) -> str:
        index, _, count = value.partition("/")
        if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
            raise ValueError(f"shard must be 'i/N' with 0 <= i < N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _price_needed(self) -> GenerateConfig:
        if self.max_cost is not None and self.backend == "openai" and self.resolved_price() is None:
            raise ValueError(f"max_cost needs a price for model {self.model!r}: set price.input and price.output")
        return self

    @property
    def shard_index(self) -> tuple[int, int]:
        index, count = self.shard.split("/")
        return int(index), int(count)

    def resolved_price(self) -> Price | None:
        if self.price is not None:
            return self.price
        if self.backend == "local":
            return Price(input=0, output=0)
        known = PRICES.get(self.model)
        return Price(**known) if known else None


# Public list prices (USD per million tokens) of common generators; extend with `price:` in a config.
PRICES = {
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    "gpt-4.1": {"input": 2.0, "output": 8.0},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6},
    "gpt-4-turbo": {"input": 10.0, "output": 30.0},
    "gpt-3.5-turbo": {"input": 0.5, "output": 1.5},
}


def parse_overrides(pairs: list[str]) -> dict:
    """`a.b=value` pairs into a nested dict; values are parsed as YAML (numbers, lists, booleans)."""
    tree: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw else raw
    return tree


def merge_dicts(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(cls: type[Strict], path: Path | None = None, overrides: dict | None = None, section: str | None = None):
    """Build `cls` from a YAML file (optionally one section of it) and overrides; errors name file and field."""
    data: dict = {}
    where = "command line"
    if path is not None:
        where = str(path)
        data = _read_yaml(Path(path))
        if section is not None:
            data = _section(data, section, path)
    data = merge_dicts(data, overrides or {})
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, where, cls)) from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {_yaml_type(data)}")
    return data


def _section(data: dict, section: str, path: Path) -> dict:
    """One section of a pipeline-layout file; a top-level key that is no section is a typo, not ignored."""
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown top-level section {str(key)!r}{_did_you_mean(str(key), SECTIONS)}; "
                              f"allowed: {', '.join(SECTIONS)} (the {section!r} section holds this command's settings)")
    settings = data.get(section) or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: section '{section}': expected a mapping of settings, got {_yaml_type(settings)}")
    return settings


def _yaml_type(value) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)


def _did_you_mean(name: str, allowed) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _boolean_for_number(value, annotation) -> bool:
    """True if `value` holds a boolean where `annotation` wants an int or a float (pydantic would take it as 0/1)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        if isinstance(value, bool) and bool in args:
            return False
        return any(_boolean_for_number(value, arg) for arg in args)
    if isinstance(value, bool):
        return annotation in (int, float)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_boolean_for_number(v, args[1]) for v in value.values())
    if origin in (list, tuple, set) and isinstance(value, (list, tuple)) and args:
        return any(_boolean_for_number(v, args[0]) for v in value)
    return False


def _describe(err: ValidationError, where: str, cls: type[Strict]) -> str:
    lines = []
    for issue in err.errors():
        field = ".".join(str(p) for p in issue["loc"]) or "(config)"
        message = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "extra_forbidden":
            allowed = list(_model_at(cls, issue["loc"][:-1]).model_fields)
            message = f"unknown setting{_did_you_mean(str(issue['loc'][-1]), allowed)}; allowed: {', '.join(allowed)}"
        lines.append(f"{where}: field '{field}': {message}")
    return "\n".join(lines)


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model class that a validation error's location (minus its last part) points into."""
    for part in loc:
        field = cls.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue  # a list index or dict key: the element's model comes from the enclosing annotation
        models = [a for a in (field.annotation, *_nested_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return cls
        cls = models[0]
    return cls


def _nested_args(annotation) -> list:
    args = list(get_args(annotation))
    return args + [inner for arg in args for inner in _nested_args(arg)]
