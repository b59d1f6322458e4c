"""``--format junit``: one test suite per model, one test case per weight, failing as the exit code would.

The document follows the strict Ant JUnit schema (the one Jenkins, GitLab and most report readers
derive from): ``<testsuites>`` holds only test suites, each with ``name``, ``package``, ``id``,
``timestamp`` (UTC, no zone, as the schema wants), ``hostname``, ``tests``, ``failures``,
``errors``, ``time``, then ``<properties>``, the test cases, ``<system-out>`` and ``<system-err>``;
a test case has ``name``, ``classname``, ``time`` and at most one ``<failure>`` or ``<error>``.

A warning is not a failure in JUnit unless ``--fail-on warn`` makes it one (then it is a
``<failure>``, as the exit code counts it). Findings that do not fail the run are in the suite's
``<system-out>``, one line each (``layer: CODE severity: message``), and counted in its properties
(``initaudit.warn``, ``initaudit.info``): the schema allows no output inside a test case. A suite's
``time`` is the model's audit time as the command line measured it (weights are not timed one by
one: their test cases say 0).
"""
from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime

from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER, Finding
from initaudit.report.comparison import DiffReport
from initaudit.report.formats._diff import failing, label
from initaudit.report.model import ModelReport, Report
from initaudit.version import __version__


def hostname() -> str:
    """The machine's name, or ``localhost`` (the schema's word for an unknown host)."""
    try:
        return socket.gethostname().strip() or "localhost"
    except OSError:
        return "localhost"


_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _legal(text: str) -> str:
    """XML 1.0 has no way to write most control characters, even escaped: a tensor name holding one
    gets ``\\xNN`` instead, so the document still parses."""
    return _ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _package(path: str) -> str:
    folder = os.path.dirname(path).replace(os.sep, "/")
    return folder or "."


def _properties(suite: ET.Element, report: Report, model: ModelReport, quiet: list[Finding]) -> None:
    props = ET.SubElement(suite, "properties")
    values = [("initaudit.version", __version__), ("initaudit.fail-on", report.fail_on)]
    if model.error is None:
        values += [("initaudit.target", model.target), ("initaudit.convention", model.convention),
                   ("initaudit.profile", model.profile)]
        values += [(f"initaudit.{severity}", str(sum(f.severity == severity for f in quiet)))
                   for severity in ("warn", "info")]
    for name, value in values:
        ET.SubElement(props, "property", name=name, value=value)


def render(report: Report, timestamp: datetime | None = None, durations: Sequence[float] = (),
           host: str | None = None) -> str:
    """The JUnit XML of a report; ``timestamp`` (when the run started) and ``durations`` (seconds per
    model, in report order) come from the command line, which measures them."""
    started = (timestamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    host = host or hostname()
    suites = ET.Element("testsuites")
    for m, model in enumerate(report.models):
        seconds = durations[m] if m < len(durations) else 0.0
        suite = ET.SubElement(suites, "testsuite", name=model.path, package=_package(model.path), id=str(m),
                              timestamp=started, hostname=host)
        quiet: list[Finding] = []
        lines: list[str] = []
        cases: list[ET.Element] = []
        n_fail = n_error = 0
        if model.error is not None:  # one error test case: the model could not be audited at all
            case = ET.Element("testcase", name="(model file)", classname=model.path, time="0")
            ET.SubElement(case, "error", message=f"IA001: {model.error}", type="IA001").text = model.error
            cases.append(case)
            n_error = 1
        else:
            owners = [(index, layer.name, layer.findings) for index, layer in enumerate(model.layers)]
            if model.findings:  # model-level findings (IA104) count toward the exit code too
                owners.append((-1, "(model)", model.findings))
            for index, name, findings in owners:
                case = ET.Element("testcase", name=name, classname=model.path, time="0")
                text = "\n".join(f"{f.code} {f.severity}: {f.message}" for f in findings)
                if report.failing(m, index):  # as the exit code counts it (fail-on, baseline)
                    n_fail += 1
                    first = max(findings, key=lambda f: STATUS_ORDER[SEVERITY_STATUS[f.severity]])
                    failure = ET.SubElement(case, "failure", message=f"{first.code}: {first.message}",
                                            type=first.code)
                    failure.text = text
                else:
                    quiet.extend(findings)
                    lines += [f"{name}: {f.code} {f.severity}: {f.message}" for f in findings]
                cases.append(case)
        _properties(suite, report, model, quiet)
        suite.extend(cases)
        ET.SubElement(suite, "system-out").text = "\n".join(lines) + "\n" if lines else ""
        ET.SubElement(suite, "system-err").text = ""
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(n_fail))
        suite.set("errors", str(n_error))
        suite.set("time", f"{max(seconds, 0.0):.3f}")
    return _document(suites)


def _document(suites: ET.Element) -> str:
    """The XML text, every attribute and text made legal XML 1.0."""
    for element in suites.iter():
        element.attrib = {key: _legal(value) for key, value in element.attrib.items()}
        if element.text:
            element.text = _legal(element.text)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render_diff(report: DiffReport, timestamp: datetime | None = None, duration: float = 0.0,
                host: str | None = None) -> str:
    """The diff as one test suite (named by B, the model under review): one test case per matched layer
    and per layer found on one side only, failing as the exit code counts it (``--fail-on``); the
    findings that do not fail the run in ``<system-out>``."""
    started = (timestamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name=report.b.path, package=_package(report.b.path), id="0",
                          timestamp=started, hostname=host or hostname())
    quiet: list[Finding] = []
    lines: list[str] = []
    cases: list[ET.Element] = []
    n_fail = 0
    for item in report.items:
        name = label(item)
        case = ET.Element("testcase", name=name, classname=report.b.path, time="0")
        if failing(report, item):
            n_fail += 1
            first = max(item.findings, key=lambda f: STATUS_ORDER[SEVERITY_STATUS[f.severity]])
            failure = ET.SubElement(case, "failure", message=f"{first.code}: {first.message}", type=first.code)
            failure.text = "\n".join(f"{f.code} {f.severity}: {f.message}" for f in item.findings)
        else:
            quiet.extend(item.findings)
            lines += [f"{name}: {f.code} {f.severity}: {f.message}" for f in item.findings]
        cases.append(case)
    props = ET.SubElement(suite, "properties")
    values = [("initaudit.version", __version__), ("initaudit.fail-on", report.fail_on),
              ("initaudit.diff.a", report.a.path), ("initaudit.diff.b", report.b.path)]
    values += [(f"initaudit.{severity}", str(sum(f.severity == severity for f in quiet))) for severity in ("warn", "info")]
    for key, value in values:
        ET.SubElement(props, "property", name=key, value=value)
    suite.extend(cases)
    ET.SubElement(suite, "system-out").text = "\n".join(lines) + "\n" if lines else ""
    ET.SubElement(suite, "system-err").text = ""
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(n_fail))
    suite.set("errors", "0")
    suite.set("time", f"{max(duration, 0.0):.3f}")
    return _document(suites)
