"""``--format sarif``: SARIF 2.1.0 that GitHub code scanning accepts and tracks across runs.

What code scanning needs beyond the schema (its "SARIF support" page): a ``ruleId``
per result, ``level`` note/warning/error, one location whose ``artifactLocation.uri``
is relative to the repository root and a ``region.startLine``, ``partialFingerprints``
that stay the same from run to run, and at most 25,000 results per run.  Paths are
written relative to the working directory (run initaudit from the repository root)
under ``uriBaseId`` ``%SRCROOT%``; the fingerprint comes from that path, the graph,
the tensor name and the rule (``initaudit.fingerprint``), never from the machine.
"""
from __future__ import annotations

import json
from typing import Any

from initaudit.codes import RULES, Rule
from initaudit.report.fingerprint import file_uri, is_inside, located_findings, relative_path, unreadable_fingerprint
from initaudit.report.model import Report
from initaudit.version import __version__

LEVEL = {"fail": "error", "warn": "warning", "info": "note"}
SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
MAX_RESULTS = 25_000            # GitHub rejects a run with more
HELP_URI = "https://pypi.org/project/initaudit/#rule-codes"
FINGERPRINT_KEY = "initauditFinding/v1"
SRCROOT = "%SRCROOT%"


def _rule(code: str) -> dict[str, Any]:
    r = RULES.get(code) or Rule(code, code.lower(), "warn", code, code, "-", "See `initaudit rules`.")
    markdown = (f"**{r.code} {r.name}** ({r.severity})\n\n{r.summary}\n\n**Why it matters.** {r.why}\n\n"
                f"**Example.** {r.example}\n\n**How to fix.** {r.fix}\n\n`initaudit rules {r.code}` prints this page.")
    return {
        "id": code,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": r.why},
        "help": {"text": f"{r.summary}\n\nHow to fix: {r.fix}\n\nExample: {r.example}", "markdown": markdown},
        "helpUri": HELP_URI,
        "defaultConfiguration": {"level": LEVEL[r.severity]},
        "properties": {"tags": ["onnx", "weight-initialization"], "precision": "high",
                       "problem.severity": {"fail": "error", "warn": "warning", "info": "recommendation"}[r.severity]},
    }


class _Artifacts:
    """One ``artifacts`` entry per model file; locations refer to it by index."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}

    def location(self, path: str) -> dict[str, Any]:
        relative = relative_path(path)
        if relative not in self.index:
            self.index[relative] = len(self.entries)
            where = ({"uri": relative, "uriBaseId": SRCROOT} if is_inside(relative) else {"uri": file_uri(path)})
            self.entries.append({"location": where, "roles": ["analysisTarget"]})
        artifact = {**self.entries[self.index[relative]]["location"], "index": self.index[relative]}
        return {"artifactLocation": artifact, "region": {"startLine": 1}}


def _logical(graph: str, node: str, tensor: str) -> list[dict[str, Any]]:
    out = [{"name": graph, "fullyQualifiedName": graph, "kind": "namespace"}]
    if node:
        out.append({"name": node, "fullyQualifiedName": f"{graph}/{node}", "kind": "function"})
    out.append({"name": tensor, "fullyQualifiedName": f"{graph}::{tensor}", "kind": "variable"})
    return out


def render(report: Report) -> str:
    artifacts = _Artifacts()
    results: list[dict[str, Any]] = []
    for model in report.unreadable:
        results.append({
            "ruleId": "IA001", "level": "error",
            "message": {"text": f"{relative_path(model.path)} could not be read: {model.error}"},
            "locations": [{"physicalLocation": artifacts.location(model.path)}],
            "partialFingerprints": {FINGERPRINT_KEY: unreadable_fingerprint(model)},
        })
    for item in located_findings(report):
        finding, layer = item.finding, item.layer
        location: dict[str, Any] = {"physicalLocation": artifacts.location(item.model.path)}
        if layer is not None:
            location["logicalLocations"] = _logical(layer.graph, layer.node, layer.name)
            text = f"{layer.name} ({layer.op or 'unknown op'}, graph {layer.graph}): {finding.message}"
        else:
            text = f"model: {finding.message}"
        result: dict[str, Any] = {
            "ruleId": finding.code, "level": LEVEL[finding.severity], "message": {"text": text},
            "locations": [location], "partialFingerprints": {FINGERPRINT_KEY: item.fingerprint()},
        }
        if report.baseline is not None:
            result["baselineState"] = "new" if report.counts(*item.position) else "unchanged"
        results.append(result)

    results.sort(key=lambda r: SEVERITY_RANK[r["level"]])  # stable: most severe first, report order within
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if len(results) > MAX_RESULTS:
        left_out = len(results) - MAX_RESULTS
        results = results[:MAX_RESULTS]
        invocation["toolExecutionNotifications"] = [{
            "level": "warning",
            "message": {"text": f"{left_out} less severe results were left out: code scanning accepts at most "
                                f"{MAX_RESULTS} per run; the JSON report has them all"},
        }]
    used = sorted({r["ruleId"] for r in results})
    for r in results:
        r["ruleIndex"] = used.index(r["ruleId"])
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "initaudit", "version": __version__, "semanticVersion": __version__,
                            "informationUri": "https://pypi.org/project/initaudit/",
                            "rules": [_rule(code) for code in used]}},
        "automationDetails": {"id": "initaudit/"},
        "originalUriBaseIds": {SRCROOT: {"uri": file_uri(".").rstrip("/") + "/"}},
        "artifacts": artifacts.entries,
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    log = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    if len(results) > 1000:  # keep large logs small (code scanning takes at most 10 MB, gzipped)
        return json.dumps(log, ensure_ascii=False, separators=(",", ":")) + "\n"
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
