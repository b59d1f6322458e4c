"""Findings: the shared vocabulary every stage speaks (a rule code, a severity, a message) and the
statuses they roll up to."""
from __future__ import annotations

from dataclasses import dataclass

from initaudit.codes import RULES

STATUS_ORDER = {"ok": 0, "warn": 1, "fail": 2, "error": 3}   # error: a model that could not be read
SEVERITY_STATUS = {"info": "ok", "warn": "warn", "fail": "fail"}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str          # info | warn | fail
    message: str


def worst_status(findings: tuple[Finding, ...] | list[Finding]) -> str:
    statuses = [SEVERITY_STATUS[f.severity] for f in findings]
    return max(statuses, key=STATUS_ORDER.__getitem__, default="ok")


def finding(code: str, message: str, severity: str | None = None) -> Finding:
    """A finding of a code in the rule-code table (``codes.RULES``), at the code's own severity
    unless the check grades it (IA402: info below 10 % dead units).  Every finding the stages emit
    is built here, so a code missing from the table fails the first test that reaches it."""
    rule = RULES[code]
    return Finding(code, severity or rule.severity, message)
