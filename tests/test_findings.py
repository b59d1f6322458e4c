"""Findings are built through the rule-code table: an emitted code missing from ``codes.RULES`` fails,
every check's finding carries the table's severity unless the check grades it, and no stage builds a
``Finding`` by hand."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from initaudit.codes import RULES
from initaudit.findings import Finding, finding, worst_status

PACKAGE = Path(__file__).resolve().parent.parent / "initaudit"


def test_a_finding_takes_its_severity_from_the_table():
    assert finding("IA101", "far off") == Finding("IA101", "fail", "far off")
    assert finding("IA103", "packed") == Finding("IA103", "info", "packed")
    assert finding("IA402", "2 of 64 units", "info").severity == "info"


def test_a_code_missing_from_the_table_cannot_be_emitted():
    with pytest.raises(KeyError):
        finding("IA999", "no such rule")


def test_no_stage_builds_a_finding_by_hand():
    """Every ``Finding(...)`` call of the package is the one inside ``findings.finding``."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(calls) == 1 and calls[0].startswith("findings.py:")


def test_every_code_the_source_names_is_in_the_table():
    named = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name != "codes.py":
            named.update(re.findall(r'"(IA\d{3})"', path.read_text(encoding="utf-8")))
    assert named and named <= set(RULES)


@pytest.mark.parametrize("severities, status", [((), "ok"), (("info",), "ok"), (("info", "warn"), "warn"),
                                                  (("fail", "warn", "info"), "fail")])
def test_worst_status_rolls_severities_up(severities, status):
    assert worst_status([Finding("IA101", s, "") for s in severities]) == status
