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
    configs have a top-level rope_theta, which is rewritten too."""
    src = Path(path).resolve()
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"{src.name}-theta{theta:g}-"))
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    # multimodal wrappers keep the language model's settings under text_config
    target = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    if isinstance(target.get("rope_parameters"), dict):
        target["rope_parameters"]["rope_theta"] = float(theta)
    if "rope_theta" in target or not isinstance(target.get("rope_parameters"), dict):
        target["rope_theta"] = float(theta)
    if max_position_embeddings:
        target["max_position_embeddings"] = int(max_position_embeddings)
    for item in src.iterdir():
        link = out / item.name
        if item.name != "config.json" and not link.exists():
            link.symlink_to(item)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
