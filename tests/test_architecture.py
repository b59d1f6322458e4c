"""The package's layout holds: stages import one way (read → trace → measure → judge → report →
pipeline → cli), no import cycle (``TYPE_CHECKING`` imports counted), a handful of modules at the
root.  Read from the source with ``ast``, so an import added anywhere is seen (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "initaudit"
#: Lowest first: a module may import from its own stage or a lower one.
STAGES = ("codes", "findings", "errors", "version", "read", "trace", "measure", "judge", "report", "pipeline", "cli")
ROOT_MODULES = {"__init__", "__main__", "version", "errors", "findings", "codes"}


def _module(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package modules it imports (from-imports resolved, submodules included)."""
    modules = {_module(p, package_dir): p for p in package_dir.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if not base.startswith("initaudit"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("initaudit."))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_from_a_lower_stage_to_a_higher_one():
    upward = [(m, t) for m, targets in _imports().items() for t in targets
              if _stage(m) in STAGES and _stage(t) in STAGES and STAGES.index(_stage(t)) > STAGES.index(_stage(m))]
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_package_has_no_import_cycle():
    assert _cycles(_imports()) == []


def test_the_root_holds_only_the_face_and_the_shared_vocabulary():
    assert {p.stem for p in PACKAGE.glob("*.py")} == ROOT_MODULES
    stages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert stages == set(STAGES[4:])


def test_the_import_reader_sees_an_upward_import_and_a_type_checking_one(tmp_path):
    """The layering tests can fail: a judge module importing the pipeline, at run time or only for
    type checking, is an arrow of the graph they check."""
    fake = tmp_path / "initaudit"
    for path in PACKAGE.rglob("*.py"):
        target = fake / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (fake / "judge" / "bands.py").write_text("from initaudit.pipeline.options import AuditOptions\n"
                                             "from initaudit.judge.verdict import matches\n", encoding="utf-8")
    (fake / "judge" / "drift.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from ..report.model import LayerReport\n", encoding="utf-8")
    graph = _imports(fake)
    assert "initaudit.pipeline.options" in graph["initaudit.judge.bands"]
    assert "initaudit.report.model" in graph["initaudit.judge.drift"]
    assert ["initaudit.judge.bands", "initaudit.judge.verdict", "initaudit.judge.bands"] in _cycles(graph)
