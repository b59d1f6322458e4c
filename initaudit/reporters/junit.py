"""``--format junit``: one test case per weight, failing as the exit code would."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..report import STATUS_ORDER, Report


def render(report: Report) -> str:
    threshold = None if report.fail_on == "never" else STATUS_ORDER[report.fail_on]
    suites = ET.Element("testsuites", name="initaudit")
    total = failures = 0
    for model in report.models:
        suite = ET.SubElement(suites, "testsuite", name=model.path)
        n_fail = 0
        for layer in model.layers:
            case = ET.SubElement(suite, "testcase", classname=model.path, name=layer.name)
            text = "\n".join(f"{f.code} {f.severity}: {f.message}" for f in layer.findings)
            if threshold is not None and STATUS_ORDER[layer.status] >= threshold:
                n_fail += 1
                first = next((f for f in layer.findings if f.severity == layer.status), layer.findings[0])
                failure = ET.SubElement(case, "failure", message=f"{first.code}: {first.message}", type=first.code)
                failure.text = text
            elif text:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(len(model.layers)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        total += len(model.layers)
        failures += n_fail
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
