"""A model folder with another RoPE base, for longer context than the model was trained on (the paper's
long-context experiment): training (`rope_theta:`) and the passkey evaluation use it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from synthembed.formats.offline import cache_dir


def with_rope_theta(path: str | Path, theta: float, out_dir: str | Path | None = None,
                    max_position_embeddings: int | None = None) -> Path:
    """A copy of the model folder `path` with the RoPE base set to `theta`: config.json rewritten, everything else
    symlinked (the weights are not copied). The copy lives in `out_dir`, by default a folder of synthembed's cache
    keyed by (source, theta, max_position_embeddings), so loading the same variant again reuses it (and the
    embedding cache, keyed by the model's path, stays valid). A model without RoPE is refused (ValueError)."""
    src = Path(path).resolve()
    config = json.loads((src / "config.json").read_text())
    # multimodal wrappers keep the language model's settings under text_config
    target = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    set_rope_theta(target, float(theta), _layer_types(src))
    if max_position_embeddings:
        target["max_position_embeddings"] = int(max_position_embeddings)
    out = Path(out_dir) if out_dir else variant_dir(src, theta, max_position_embeddings)
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        link = out / item.name
        if item.name != "config.json" and not link.is_symlink() and not link.exists():
            link.symlink_to(item)
    tmp = out / f".config.json.{os.getpid()}.tmp"  # atomic: another process may be loading the same variant
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, out / "config.json")
    return out


def variant_dir(src: Path, theta: float, max_position_embeddings: int | None) -> Path:
    key = hashlib.sha256(f"{src}\x1f{float(theta)!r}\x1f{max_position_embeddings}".encode()).hexdigest()[:16]
    return cache_dir() / "rope" / f"{src.name}-theta{theta:g}-{key}"


def _layer_types(src: Path) -> list[str]:
    """The attention layer types of the model as transformers loads it; refuses a model without RoPE. The loaded
    config is the judge: transformers fills rope_parameters from class defaults when config.json has no key."""
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(src).get_text_config()
    if not getattr(text, "rope_parameters", None):
        raise ValueError(f"{src / 'config.json'}: {text.model_type} has no RoPE base to change; a RoPE base needs "
                         f"a rotary-position model such as Mistral, Llama, Qwen or Gemma")
    return list(getattr(text, "layer_types", None) or [])


def set_rope_theta(config: dict, theta: float, layer_types: list[str]) -> None:
    """Set the RoPE base in a config.json dict in place. Per-layer-type parameters (Gemma 3: sliding_attention,
    full_attention, the keys that are layer types) get it on every global type: sliding-window layers never see
    distances beyond their window, which is why Gemma 3 itself gives them a small base. Without a rope_parameters
    dict, the top-level rope_theta is written, which transformers moves to the global base when it loads."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict):
        config["rope_theta"] = theta
        return
    nested = [key for key, value in params.items() if key in layer_types and isinstance(value, dict)]
    for key in nested:
        if key != "sliding_attention":
            params[key]["rope_theta"] = theta
    if not nested:
        params["rope_theta"] = theta
    if "rope_theta" in config:  # old and new keys side by side: keep them agreeing
        config["rope_theta"] = theta
