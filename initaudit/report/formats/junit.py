"""``--format junit``: one test case per weight, failing as the exit code would."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER
from initaudit.report.model import Report


def render(report: Report) -> str:
    suites = ET.Element("testsuites", name="initaudit")
    total = failures = errors = 0
    for m, model in enumerate(report.models):
        suite = ET.SubElement(suites, "testsuite", name=model.path)
        if model.error is not None:  # one error test case: the model could not be audited at all
            case = ET.SubElement(suite, "testcase", classname=model.path, name="(model file)")
            ET.SubElement(case, "error", message=f"IA001: {model.error}", type="IA001").text = model.error
            suite.set("tests", "1")
            suite.set("failures", "0")
            suite.set("errors", "1")
            total += 1
            errors += 1
            continue
        n_fail = 0
        owners = [(index, layer.name, layer.findings) for index, layer in enumerate(model.layers)]
        if model.findings:  # model-level findings (IA104) count toward the exit code too
            owners.append((-1, "(model)", model.findings))
        for index, name, findings in owners:
            case = ET.SubElement(suite, "testcase", classname=model.path, name=name)
            text = "\n".join(f"{f.code} {f.severity}: {f.message}" for f in findings)
            if report.failing(m, index):  # as the exit code counts it (fail-on, baseline)
                n_fail += 1
                first = max(findings, key=lambda f: STATUS_ORDER[SEVERITY_STATUS[f.severity]])
                failure = ET.SubElement(case, "failure", message=f"{first.code}: {first.message}", type=first.code)
                failure.text = text
            elif text:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(len(owners)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        total += len(owners)
        failures += n_fail
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
