"""Load an embedder by short name (the offline real models) or by directory."""

from __future__ import annotations

from pathlib import Path

from synthembed.formats.offline import resolve
from synthembed.model.embedder import HFEmbedder
from synthembed.model.rope import with_rope_theta


def load_embedder(name_or_path: str | Path, rope_theta: float | None = None, **options) -> HFEmbedder:
    """`options` go to HFEmbedder (pooling, max_length, query_template, dtype, device). `rope_theta`: load a copy
    with that RoPE base (the paper's long-context experiment); its name says so, so reports keep both apart."""
    path = resolve(name_or_path)
    name = options.pop("name", None) or display_name(name_or_path)
    if rope_theta:
        path = with_rope_theta(path, rope_theta)
        name = f"{name}-rope-theta" + f"{rope_theta:g}".replace("e+", "e")
    return HFEmbedder(path, name=name, **options)


def display_name(name_or_path: str | Path) -> str:
    """The name reports show: a short name as given, a folder by its name; training exports to `<run>/model`,
    so such a folder goes by its run's name."""
    path = Path(str(name_or_path))
    return path.parent.name if path.name == "model" and path.parent.name else path.name
