"""A model folder with another RoPE base, for longer context than the model was trained on (the paper's
long-context experiment): training (`rope_theta:`) and the passkey evaluation use it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def with_rope_theta(path: str | Path, theta: float, out_dir: str | Path | None = None,
                    max_position_embeddings: int | None = None) -> Path:
    """A copy of the model folder `path` with the RoPE base set to `theta`: config.json rewritten, everything else
    symlinked (the weights are not copied). transformers 5 keeps the base in rope_parameters["rope_theta"]; older
    configs have a top-level rope_theta, which is rewritten too. A model without RoPE is refused (ValueError)."""
    src = Path(path).resolve()
    config = json.loads((src / "config.json").read_text())
    # multimodal wrappers keep the language model's settings under text_config
    target = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    set_rope_theta(target, float(theta), src / "config.json")
    if max_position_embeddings:
        target["max_position_embeddings"] = int(max_position_embeddings)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"{src.name}-theta{theta:g}-"))
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        link = out / item.name
        if item.name != "config.json" and not link.exists():
            link.symlink_to(item)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def set_rope_theta(config: dict, theta: float, where: Path) -> None:
    """Set the RoPE base in a config dict in place. Per-layer-type parameters (Gemma 3: sliding_attention,
    full_attention) get it on every global type: sliding-window layers never see distances beyond their window,
    which is why Gemma 3 itself gives them a small base."""
    params = config.get("rope_parameters")
    if "rope_theta" not in config and not isinstance(params, dict):
        raise ValueError(f"{where}: {config.get('model_type', 'this model')} has no RoPE base (no rope_theta or "
                         f"rope_parameters) to change; a RoPE base needs a rotary-position model such as Mistral, "
                         f"Llama, Qwen or Gemma")
    if isinstance(params, dict):
        nested = [key for key, value in params.items() if isinstance(value, dict)]
        for key in nested:
            if key != "sliding_attention":
                params[key]["rope_theta"] = theta
        if not nested:
            params["rope_theta"] = theta
    if "rope_theta" in config:
        config["rope_theta"] = theta
