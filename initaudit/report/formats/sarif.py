"""``--format sarif``: SARIF 2.1.0 that GitHub code scanning accepts and tracks across runs.

What code scanning needs beyond the schema (its "SARIF support" page): a ``ruleId``
per result, ``level`` note/warning/error, one location whose ``artifactLocation.uri``
is relative to the repository root and a ``region.startLine``, ``partialFingerprints``
that stay the same from run to run, and at most 25,000 results per run.  Paths are
written relative to the working directory (run initaudit from the repository root)
under ``uriBaseId`` ``%SRCROOT%``; a model outside it is relative to its own folder,
under a base id of its own (``MODELDIR1``…) that ``originalUriBaseIds`` resolves, so
no location is an absolute ``file://`` URI.  The fingerprint comes from the path, the
graph, the tensor name and the rule (``initaudit.fingerprint``), never from the machine.

``automationDetails.id`` is written only for ``--sarif-category``: upload-sarif fills it
from its own ``category`` (or the workflow, job and matrix) only when the log has none,
so a fixed id would make matrix jobs overwrite each other's alerts.  ``helpUri`` and
``informationUri`` are this project's pages (``[project.urls]`` of pyproject.toml), and
each rule's ``precision`` says how often its findings are real: ``medium`` for the
estimates and the comparisons with the rest of the model, ``high`` for measured facts.
"""
from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from initaudit.codes import RULES, Rule
from initaudit.report.comparison import DiffReport, LayerPair, Unmatched
from initaudit.report.fingerprint import file_uri, is_inside, located_findings, relative_path, unreadable_fingerprint
from initaudit.report.formats._diff import diff_findings
from initaudit.report.model import Report
from initaudit.version import __version__

LEVEL = {"fail": "error", "warn": "warning", "info": "note"}
SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
MAX_RESULTS = 25_000            # GitHub rejects a run with more
#: Where the project is published (its page, and its rule-code page ``/blob/main/docs/rules.md``): None
#: until it is, so that no informationUri or helpUri leads nowhere; each rule's help text is in the file.
HOMEPAGE: str | None = None
FINGERPRINT_KEY = "initauditFinding/v1"
SRCROOT = "%SRCROOT%"
OUTSIDE = "MODELDIR"            # base ids of the folders of models outside the working directory
#: GitHub's precision levels (very-high, high, medium, low): how often a rule's findings are true.
#: IA104 is an estimate (residual sums, attention and pooling ignored); IA403 and IA501 compare a
#: layer with the rest of its model, whose majority can itself be the odd one out.
#: The rule codes of ``initaudit diff`` (tagged ``model-diff`` rather than ``weight-initialization``).
DIFF_FAMILY = "IA6"
PRECISION = {"IA104": "medium", "IA403": "medium", "IA501": "medium"}


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
        **({"helpUri": f"{HOMEPAGE}/blob/main/docs/rules.md"} if HOMEPAGE else {}),
        "defaultConfiguration": {"level": LEVEL[r.severity]},
        "properties": {"tags": ["onnx", "model-diff" if code.startswith(DIFF_FAMILY) else "weight-initialization"], "precision": PRECISION.get(code, "high"),
                       "problem.severity": {"fail": "error", "warn": "warning", "info": "recommendation"}[r.severity]},
    }


class _Artifacts:
    """One ``artifacts`` entry per model file; locations refer to it by index.

    A model inside the working directory is a path under ``%SRCROOT%``; one outside it is its file
    name under ``MODELDIR<n>``, one base id per folder, resolved in ``originalUriBaseIds``."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}
        self.bases: dict[str, str] = {}      # base id → folder URI, for models outside the working directory

    def _where(self, path: str, relative: str) -> dict[str, Any]:
        if is_inside(relative):
            return {"uri": quote(relative), "uriBaseId": SRCROOT}
        folder = file_uri(os.path.dirname(os.path.abspath(path))).rstrip("/") + "/"
        base = next((b for b, uri in self.bases.items() if uri == folder), None)
        if base is None:
            base = f"{OUTSIDE}{len(self.bases) + 1}"
            self.bases[base] = folder
        return {"uri": quote(os.path.basename(path)), "uriBaseId": base}

    def location(self, path: str) -> dict[str, Any]:
        relative = relative_path(path)
        if relative not in self.index:
            self.index[relative] = len(self.entries)
            self.entries.append({"location": self._where(path, relative), "roles": ["analysisTarget"]})
        artifact = {**self.entries[self.index[relative]]["location"], "index": self.index[relative]}
        return {"artifactLocation": artifact, "region": {"startLine": 1}}


def automation_id(category: str) -> str:
    """A category as code scanning keys it: ``category/`` (the part before the last slash is the
    category, the rest a run id), as upload-sarif writes its own ``category`` input."""
    category = category.strip()
    return category if category.endswith("/") else category + "/"


def _logical(graph: str, node: str, tensor: str) -> list[dict[str, Any]]:
    out = [{"name": graph, "fullyQualifiedName": graph, "kind": "namespace"}]
    if node:
        out.append({"name": node, "fullyQualifiedName": f"{graph}/{node}", "kind": "function"})
    out.append({"name": tensor, "fullyQualifiedName": f"{graph}::{tensor}", "kind": "variable"})
    return out


def render(report: Report, category: str | None = None) -> str:
    """The SARIF log; ``category`` (``--sarif-category``) becomes ``automationDetails.id``."""
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

    return _log(results, artifacts, category)


def _log(results: list[dict[str, Any]], artifacts: _Artifacts, category: str | None) -> str:
    """The log of these results: most severe first, capped, each with its rule's index and metadata."""
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
                            **({"informationUri": HOMEPAGE} if HOMEPAGE else {}),
                            "rules": [_rule(code) for code in used]}},
    }
    if category is not None and category.strip():
        run["automationDetails"] = {"id": automation_id(category)}
    run.update({
        "originalUriBaseIds": {SRCROOT: {"uri": file_uri(".").rstrip("/") + "/"},
                               **{base: {"uri": uri} for base, uri in artifacts.bases.items()}},
        "artifacts": artifacts.entries,
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
    })
    log = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    if len(results) > 1000:  # keep large logs small (code scanning takes at most 10 MB, gzipped)
        return json.dumps(log, ensure_ascii=False, separators=(",", ":")) + "\n"
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _diff_logical(item: LayerPair | Unmatched) -> list[dict[str, Any]]:
    """The tensors a diff finding is about: B's (and A's, when its name differs), or the one side's."""
    if isinstance(item, Unmatched):
        side = item.side.upper()
        return [{"name": item.name, "fullyQualifiedName": f"{side}::{item.name}", "kind": "variable"}]
    out = [{"name": item.b, "fullyQualifiedName": f"B::{item.b}", "kind": "variable"}]
    if item.a != item.b:
        out.append({"name": item.a, "fullyQualifiedName": f"A::{item.a}", "kind": "variable"})
    return out


def render_diff(report: DiffReport, category: str | None = None) -> str:
    """The diff's findings as a SARIF log: each located in model B's file (what the change under review
    produced), named by its tensors; rules, levels and fingerprints as the audit writes them."""
    artifacts = _Artifacts()
    results: list[dict[str, Any]] = []
    for item in diff_findings(report):
        f = item.finding
        results.append({
            "ruleId": f.code, "level": LEVEL[f.severity], "message": {"text": f.message},
            "locations": [{"physicalLocation": artifacts.location(report.b.path),
                           "logicalLocations": _diff_logical(item.item)}],
            "partialFingerprints": {FINGERPRINT_KEY: item.fingerprint(report)},
        })
    return _log(results, artifacts, category)
