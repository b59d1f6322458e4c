"""``--format sarif``: SARIF 2.1.0 for code-scanning dashboards."""
from __future__ import annotations

import json

from .. import __version__
from ..report import Report
from ..rules import RULES

LEVEL = {"fail": "error", "warn": "warning", "info": "note"}


def render(report: Report) -> str:
    used = sorted({f.code for m in report.models for layer in m.layers for f in layer.findings}
                  | {f.code for m in report.models for f in m.findings}
                  | ({"IA001"} if report.unreadable else set()))
    rules = [{
        "id": code,
        "name": RULES[code].name,
        "shortDescription": {"text": RULES[code].summary},
        "fullDescription": {"text": RULES[code].why},
        "help": {"text": f"{RULES[code].fix}\nExample: {RULES[code].example}"},
        "defaultConfiguration": {"level": LEVEL[RULES[code].severity]},
    } for code in used]
    results = []
    for model in report.models:
        location = {"physicalLocation": {"artifactLocation": {"uri": model.path}}}
        if model.error is not None:
            results.append({"ruleId": "IA001", "ruleIndex": used.index("IA001"), "level": "error",
                            "message": {"text": f"{model.path} could not be read: {model.error}"},
                            "locations": [location]})
        for finding in model.findings:
            results.append({"ruleId": finding.code, "ruleIndex": used.index(finding.code),
                            "level": LEVEL[finding.severity], "message": {"text": finding.message},
                            "locations": [location]})
        for layer in model.layers:
            for finding in layer.findings:
                results.append({
                    "ruleId": finding.code, "ruleIndex": used.index(finding.code),
                    "level": LEVEL[finding.severity],
                    "message": {"text": f"{layer.name}: {finding.message}"},
                    "locations": [{**location, "logicalLocations": [{
                        "name": layer.name, "fullyQualifiedName": f"{layer.graph}/{layer.name}", "kind": "member"}]}],
                })
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "initaudit", "version": __version__, "semanticVersion": __version__,
                                "informationUri": "https://pypi.org/project/initaudit/", "rules": rules}},
            "results": results,
        }],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
