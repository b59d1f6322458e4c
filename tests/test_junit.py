"""``--format junit`` against the strict Ant JUnit schema (its rules, written out below), the run's time,
timestamp and host, and where findings that do not fail the run go."""
from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit
from initaudit.cli.main import main
from initaudit.report.formats import render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$")  # the schema's: no zone


def _token(value: str | None) -> bool:
    return value is not None


def _int(value: str | None) -> bool:
    return value is not None and re.fullmatch(r"[+-]?[0-9]+", value.strip()) is not None


def _decimal(value: str | None) -> bool:
    if value is None or not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", value.strip()):
        return False
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True


def _nonempty_token(value: str | None) -> bool:
    return value is not None and " ".join(value.split()) != ""


SUITE_ATTRIBUTES = {  # attribute: (required, check)
    "name": (True, _nonempty_token), "timestamp": (True, lambda v: v is not None and bool(TIMESTAMP.match(v))),
    "hostname": (True, _nonempty_token), "tests": (True, _int), "failures": (True, _int), "errors": (True, _int),
    "skipped": (False, _int), "time": (True, _decimal),
    "package": (True, _token), "id": (True, _int),     # the aggregated document's additions (testsuites)
}
CASE_ATTRIBUTES = {"name": (True, _token), "classname": (True, _token), "time": (True, _decimal)}


def ant_schema_problems(text: str) -> list[str]:
    """The strict Ant JUnit schema (windyroad JUnit.xsd, the one Jenkins' and most readers' derive from):
    <testsuites> holds only <testsuite> elements and no attributes; a suite in it has the attributes
    above, then exactly <properties> (of <property name value>), any <testcase>, <system-out>,
    <system-err>, in that order; a test case has name, classname, time and at most one of <skipped>,
    <error>, <failure>, the last two with a required type; nothing else anywhere."""
    problems = []
    root = ET.fromstring(text)
    if root.tag != "testsuites":
        return [f"root is <{root.tag}>"]
    if root.attrib:
        problems.append(f"<testsuites> has attributes {sorted(root.attrib)}")
    if (root.text or "").strip():
        problems.append("<testsuites> has text")
    for s, suite in enumerate(root):
        where = f"testsuite {s}"
        if suite.tag != "testsuite":
            problems.append(f"<testsuites> holds <{suite.tag}>")
            continue
        problems += _attributes(where, suite, SUITE_ATTRIBUTES)
        if suite.get("id") is not None and suite.get("id") != str(s):
            problems.append(f"{where}: id {suite.get('id')} (the schema counts from 0)")
        tags = [child.tag for child in suite]
        if not re.fullmatch(r"properties( testcase)* system-out system-err", " ".join(tags)):
            problems.append(f"{where}: children {tags}")
        for child in suite:
            if child.tag == "properties":
                for prop in child:
                    if prop.tag != "property" or set(prop.attrib) != {"name", "value"} or not prop.get("name"):
                        problems.append(f"{where}: bad property {prop.tag} {prop.attrib}")
            elif child.tag == "testcase":
                problems += _attributes(f"{where} {child.get('name')!r}", child, CASE_ATTRIBUTES)
                inner = [c.tag for c in child]
                if len(inner) > 1 or any(t not in ("skipped", "error", "failure") for t in inner):
                    problems.append(f"{where}: test case {child.get('name')!r} holds {inner}")
                for outcome in child:
                    if outcome.tag in ("error", "failure") and (
                            outcome.get("type") is None or set(outcome.attrib) - {"type", "message"}):
                        problems.append(f"{where}: <{outcome.tag}> attributes {outcome.attrib}")
            elif len(child):
                problems.append(f"{where}: <{child.tag}> has elements")
        cases = suite.findall("testcase")
        for key, tag in (("failures", "failure"), ("errors", "error")):
            count = sum(1 for c in cases if c.find(tag) is not None)
            if _int(suite.get(key)) and int(suite.get(key)) != count:
                problems.append(f"{where}: {key}={suite.get(key)} but {count} test cases say so")
        if _int(suite.get("tests")) and int(suite.get("tests")) != len(cases):
            problems.append(f"{where}: tests={suite.get('tests')} but {len(cases)} test cases")
    return problems


def _attributes(where: str, element: ET.Element, rules: dict) -> list[str]:
    problems = [f"{where}: unknown attribute {a}" for a in element.attrib if a not in rules]
    for name, (required, check) in rules.items():
        value = element.get(name)
        if value is None:
            if required:
                problems.append(f"{where}: {name} missing")
        elif not check(value):
            problems.append(f"{where}: {name}={value!r}")
    return problems


def test_the_schema_check_can_fail():
    """The documents the issue's users had: no time, timestamp or hostname, totals on the root, output
    inside a test case."""
    old = ('<testsuites name="initaudit" tests="1" failures="0" errors="0"><testsuite name="m.onnx" tests="1" '
           'failures="0" errors="0"><testcase classname="m.onnx" name="w"><system-out>IA102</system-out>'
           '</testcase></testsuite></testsuites>')
    problems = ant_schema_problems(old)
    for needle in ("<testsuites> has attributes", "timestamp missing", "hostname missing", "time missing",
                   "package missing", "children ['testcase']", "holds ['system-out']", "'w': time missing"):
        assert any(needle in p for p in problems), needle


@pytest.fixture()
def batch(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", tmp_path / "models" / "lenet.onnx")
    shutil.copy(SAMPLES / "lenet_xavier.onnx", tmp_path / "models" / "xavier.onnx")
    (tmp_path / "models" / "zz_cut.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:3000])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("fail_on", ["warn", "fail", "never"])
def test_every_report_follows_the_strict_ant_schema(batch, fail_on):
    report = initaudit.audit("models", jobs=1, errors="report", fail_on=fail_on)
    assert ant_schema_problems(render(report, "junit")) == []


def test_the_command_line_records_when_where_and_how_long(batch, capsys):
    before = datetime.now(UTC).replace(microsecond=0)
    assert main(["models", "-j", "1", "-f", "junit", "-o", "out.xml"]) == 2
    after = datetime.now(UTC)
    text = (batch / "out.xml").read_text(encoding="utf-8")
    assert ant_schema_problems(text) == []
    suites = ET.fromstring(text).findall("testsuite")
    assert [s.get("name") for s in suites] == ["models/lenet.onnx", "models/xavier.onnx", "models/zz_cut.onnx"]
    assert [s.get("package") for s in suites] == ["models"] * 3 and [s.get("id") for s in suites] == ["0", "1", "2"]
    import socket

    for suite in suites:
        stamp = datetime.strptime(suite.get("timestamp"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        assert before <= stamp <= after  # the run's start, in UTC
        assert suite.get("hostname") == (socket.gethostname() or "localhost")
        assert 0 <= float(suite.get("time")) < 60
    assert float(suites[0].get("time")) > 0  # an audited model takes some time; it is measured, not made up
    elapsed = (after - before).total_seconds() + 1
    assert sum(float(s.get("time")) for s in suites) <= elapsed
    assert main(["models", "-j", "1", "-f", "table", "--also", "junit:also.xml"]) == 2
    assert ant_schema_problems((batch / "also.xml").read_text(encoding="utf-8")) == []


def test_a_warning_is_in_the_suites_output_unless_fail_on_warn_makes_it_a_failure(batch):
    """lenet_torch_default: IA102 on conv2.weight and the model-level IA104 are warnings."""
    report = initaudit.audit("models/lenet.onnx", jobs=1)
    suite = ET.fromstring(render(report, "junit")).find("testsuite")
    out = suite.find("system-out").text
    assert out.splitlines() == [line for line in out.splitlines() if ": IA10" in line]
    assert [line.split(": ")[0:2] for line in out.splitlines()] == [["conv2.weight", "IA102 warn"],
                                                                     ["(model)", "IA104 warn"]]
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["initaudit.warn"] == "2" and props["initaudit.fail-on"] == "fail"
    assert props["initaudit.target"] == "xavier" and props["initaudit.profile"] == "init"
    conv2 = next(c for c in suite.findall("testcase") if c.get("name") == "conv2.weight")
    assert list(conv2) == []  # passes: a warning is not a failure
    strict = ET.fromstring(render(initaudit.audit("models/lenet.onnx", jobs=1, fail_on="warn"), "junit"))
    suite = strict.find("testsuite")
    conv2 = next(c for c in suite.findall("testcase") if c.get("name") == "conv2.weight")
    assert conv2.find("failure").get("type") == "IA102" and suite.get("failures") == "6"
    assert suite.find("system-out").text is None  # every finding failed: none left to list


def test_control_characters_in_a_tensor_name_still_make_xml(tmp_path):
    name = "w\x01\x1b[31m"
    rng = np.random.default_rng(0)
    m = model([helper.make_node("MatMul", ["x", name], ["y"])], [tensor(name, rng.normal(0, 1, (64, 32)).astype(np.float32))])
    text = render(initaudit.audit(save(m, tmp_path)), "junit")
    case = ET.fromstring(text).find("testsuite/testcase")
    assert case.get("name") == "w\\x01\\x1b[31m" and ant_schema_problems(text) == []
