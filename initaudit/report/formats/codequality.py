"""``--format codequality``: GitLab's Code Quality report (a subset of the Code Climate issue format).

GitLab reads ``description``, ``check_name``, a unique ``fingerprint``, ``severity``
(info, minor, major, critical, blocker) and ``location.path`` / ``location.lines.begin``
with the path relative to the project root; the fingerprint is the one SARIF uses.
"""
from __future__ import annotations

import json
from typing import Any

from initaudit.codes import RULES
from initaudit.report.comparison import DiffReport
from initaudit.report.fingerprint import located_findings, relative_path, unreadable_fingerprint
from initaudit.report.formats._diff import diff_findings
from initaudit.report.model import Report

SEVERITY = {"fail": "major", "warn": "minor", "info": "info"}


def render(report: Report) -> str:
    issues: list[dict[str, Any]] = []
    for model in report.unreadable:
        issues.append({"description": f"could not be read: {model.error}", "check_name": "IA001 unreadable-model",
                       "fingerprint": unreadable_fingerprint(model), "severity": "critical",
                       "location": {"path": relative_path(model.path), "lines": {"begin": 1}}})
    for item in located_findings(report):
        f = item.finding
        where = item.layer.name if item.layer else "model"
        name = RULES[f.code].name if f.code in RULES else f.code
        issues.append({"description": f"{where}: {f.message}", "check_name": f"{f.code} {name}",
                       "fingerprint": item.fingerprint(), "severity": SEVERITY[f.severity],
                       "location": {"path": relative_path(item.model.path), "lines": {"begin": 1}}})
    return json.dumps(issues, indent=2, ensure_ascii=False) + "\n"


def render_diff(report: DiffReport) -> str:
    """One issue per finding of the diff, located in model B's file, with the fingerprint SARIF uses."""
    issues = []
    path = relative_path(report.b.path)
    for item in diff_findings(report):
        f = item.finding
        name = RULES[f.code].name if f.code in RULES else f.code
        issues.append({"description": f.message, "check_name": f"{f.code} {name}",
                       "fingerprint": item.fingerprint(report), "severity": SEVERITY[f.severity],
                       "location": {"path": path, "lines": {"begin": 1}}})
    return json.dumps(issues, indent=2, ensure_ascii=False) + "\n"
