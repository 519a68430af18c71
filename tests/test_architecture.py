"""The directions imports may run in, read from the source with ast (tools/import_graph.py); imports inside
functions count too. The flow is tasks -> generate -> data -> train -> encode/evaluate; what several stages read
(file formats, instruction templates, the offline model store) lives in `formats`, which imports no other part."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)

IMPORTS = graph.all_imports()
PARTS = {graph.part_of(graph.module_name(path)) for path in graph.SRC.rglob("*.py")} - {None}

# package -> the parts it must never import
FORBIDDEN = {
    "tasks": PARTS - {"tasks"},
    "formats": PARTS - {"formats"},
    "generate": {"model", "train", "encode", "evaluate"},
    "data": {"evaluate", "model", "generate"},
    "evaluate": {"train", "generate"},
    "train": {"evaluate", "generate"},
    "model": {"data", "generate", "train", "encode", "evaluate"},  # the backbone knows no stage that uses it
    "encode": {"train", "evaluate", "generate"},
}
# imported only inside functions: test-only extras and the replay server's client
LAZY_ONLY = ("mteb", "httpx")


def _where(imp) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.module}"


def _source(imp) -> str:
    return graph.part_of(graph.module_name(imp.path))


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_no_later_stage(part):
    wrong = [_where(i) for i in IMPORTS if _source(i) == part and graph.part_of(i.module) in FORBIDDEN[part]]
    assert not wrong, f"{part} must not import {sorted(FORBIDDEN[part])}:\n" + "\n".join(wrong)


def test_only_cli_imports_pipeline_or_cli():
    wrong = [_where(i) for i in IMPORTS if graph.part_of(i.module) in ("pipeline", "cli")
             and _source(i) not in ("cli", graph.part_of(i.module))]
    assert not wrong, "\n".join(wrong)


def test_no_cycles_between_packages_or_modules():
    assert graph.cycles(graph.edges()) == []
    assert graph.cycles(graph.edges(modules=True)) == []


def test_no_private_names_taken_from_other_modules():
    wrong = [f"{_where(i)}: {n}" for i in IMPORTS if i.module.startswith("synthembed")
             for n in i.names if n.startswith("_")]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", LAZY_ONLY)
def test_optional_packages_are_imported_lazily(package):
    wrong = [_where(i) for i in IMPORTS if i.module.split(".")[0] == package and not i.lazy]
    assert not wrong, f"{package} is imported at module level:\n" + "\n".join(wrong)


def test_rules_see_every_part():
    """The walk finds the packages the rules name, so a rule can never pass for want of files."""
    assert {"tasks", "formats", "generate", "data", "train", "encode", "evaluate", "model", "pipeline",
            "cli"} <= PARTS
    assert graph.edges()["cli", "pipeline"] >= 1


def test_walk_counts_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "synthembed"
    (src / "data").mkdir(parents=True)
    (src / "data" / "__init__.py").write_text("")
    (src / "data" / "rows.py").write_text("from . import other\n\ndef f():\n    from synthembed.evaluate import x\n")
    found = {(i.module, i.lazy) for i in graph.imports(src / "data" / "rows.py", src)}
    assert found == {("synthembed.data", False), ("synthembed.evaluate", True)}
    assert graph.edges(src) == {("data", "evaluate"): 1}
