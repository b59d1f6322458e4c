"""What pyproject.toml declares is what is tested: the lowest-versions constraints equal its floors, and
every package the code and the tests import is declared."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(>=|==)\s*([0-9][0-9.]*)\s*(?:;\s*(.+?))?\s*$")
#: Import name → distribution name, where they differ.
DISTRIBUTION = {"google": "protobuf"}


def _parse(line: str) -> tuple[str, str, tuple[int, ...], str]:
    match = REQUIREMENT.match(line)
    assert match, f"not a plain 'name>=version[; marker]' requirement: {line!r}"
    name, op, version, marker = match.groups()
    numbers = tuple(int(part) for part in version.split("."))
    numbers += (0,) * (3 - len(numbers))
    return name.lower(), op, numbers, (marker or "").replace('"', "'").replace(" ", "")


def _declared(extras: tuple[str, ...] = ()) -> list[str]:
    return list(PROJECT["dependencies"]) + [r for extra in extras for r in PROJECT["optional-dependencies"][extra]]


def test_lowest_constraints_are_the_declared_floors():
    floors = {(name, version, marker) for name, op, version, marker in map(_parse, _declared(("test",)))
              if op == ">="}
    assert len(floors) == len(_declared(("test",))), "every requirement has a floor"
    lines = [line for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pins = {(name, version, marker) for name, op, version, marker in map(_parse, lines) if op == "=="}
    assert len(pins) == len(lines) and pins == floors


def _third_party_imports(folder: Path) -> set[str]:
    local = {"initaudit", "tests", "modelkit", "conftest"} | {path.stem for path in folder.glob("*.py")}
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {name.split(".")[0] for name in names}
    return {name for name in found - local if name not in sys.stdlib_module_names}


def _declared_names(extras: tuple[str, ...] = ()) -> set[str]:
    return {_parse(line)[0] for line in _declared(extras)}


def test_every_package_the_code_imports_is_a_dependency():
    imported = {DISTRIBUTION.get(name, name) for name in _third_party_imports(ROOT / "initaudit")}
    optional = _declared_names(("fast",)) - _declared_names()  # imported by accel.py only, inside a try
    assert optional == {"llvmlite"}
    assert imported <= _declared_names() | optional, imported - _declared_names() - optional


def test_every_package_the_tests_import_is_declared():
    imported = {DISTRIBUTION.get(name, name) for name in _third_party_imports(ROOT / "tests")}
    assert imported <= _declared_names(("test",)), imported - _declared_names(("test",))


def test_claimed_pythons_are_the_tested_ones():
    claimed = {c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)}
    script = (ROOT / "scripts" / "matrix.py").read_text()
    tested = set(re.search(r"PYTHONS = \(([^)]*)\)", script).group(1).replace('"', "").replace(",", " ").split())
    assert claimed == tested and PROJECT["requires-python"] == f">={min(claimed, key=lambda v: int(v[2:]))}"
