"""``initaudit diff`` in every format: each output parses and validates as the audit's tests check that format
(JSON, SARIF schema and GitHub's rules, the strict Ant JUnit schema, the workflow commands the Actions runner
reads, well-formed and escaped HTML), the damaged layer first wherever layers are ranked and carrying its
finding, and the HTML chart holding one bar per matched layer.

The pairs: LeNet (PyTorch's legacy export) against its static QDQ per-channel int8 quantization (healthy);
the same quantization with one layer's DequantizeLinear scale multiplied by 4 and its tensor renamed to a
hostile name (IA601); a float copy with every weight perturbed but one (IA602); two small models where B
has one weight more (IA605).  Expected figures come from numpy (float64) on the files' own values."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor
from onnx import helper, numpy_helper
from test_github import _unescape, runner_commands
from test_junit import ant_schema_problems
from test_sarif import _schema_errors, github_problems

from initaudit.pipeline.diff import diff
from initaudit.report.comparison import DiffReport
from initaudit.report.formats import REPORTERS, render
from initaudit.report.formats import html as html_reporter
from initaudit.report.formats.markdown import LIMIT

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FLOAT = FIXTURES / "torch" / "lenet_default.legacy.onnx"
QDQ = FIXTURES / "quantized" / "lenet_default.qdq.onnx"
#: B's name for the damaged layer: markup, a workflow command after a newline, a property separator, a percent.
HOSTILE = "<script>alert(1)</script>\n::error file=x.onnx::injected, 100%"
#: B's file name for the damaged pair: a newline and a command of its own.
HOSTILE_FILE = "evil\n::warning file=y::z.onnx"
DAMAGED = "fc2.weight"
SCALED = 4.0


def _rename(m: onnx.ModelProto, old: str, new: str) -> None:
    for init in m.graph.initializer:
        if init.name == old:
            init.name = new
    for node in m.graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def _initializer(m: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == name))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("diff-formats")


@pytest.fixture(scope="module")
def expected(folder) -> dict[str, float]:
    """SQNR (dB) and relative change of the damaged layer, from the files with numpy: B dequantized per
    output row (axis 0) with its scale times 4."""
    a = _initializer(onnx.load(FLOAT), DAMAGED).astype(np.float64)
    q = onnx.load(QDQ)
    codes = _initializer(q, "fc2.weight_quantized").astype(np.float64)
    scale = _initializer(q, "fc2.weight_scale").astype(np.float64) * SCALED
    zero = _initializer(q, "fc2.weight_zero_point").astype(np.float64)
    b = (codes - zero[:, None]) * scale[:, None]
    noise = float(np.sum((b - a) ** 2))
    signal = float(np.sum(a ** 2))
    return {"sqnr_db": 10 * math.log10(signal / noise), "rel_change": math.sqrt(noise / signal)}


@pytest.fixture(scope="module")
def pairs(folder) -> dict[str, DiffReport]:
    q = onnx.load(QDQ)
    scale = next(i for i in q.graph.initializer if i.name == "fc2.weight_scale")
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(SCALED), scale.name))
    _rename(q, "fc2.weight_quantized", HOSTILE)
    damaged = folder / HOSTILE_FILE
    onnx.save(q, damaged)

    rng = np.random.default_rng(0)
    tuned = onnx.load(FLOAT)
    for init in tuned.graph.initializer:
        if init.name.endswith("weight") and init.name != "conv2.weight":  # conv2 left as it was: IA602
            a = numpy_helper.to_array(init)
            noisy = (a + rng.normal(0, 0.05 * a.std(), a.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(tuned, folder / "tuned.onnx")

    w1, w2, w3 = (rng.normal(0, 0.1, (32, 32)).astype(np.float32) for _ in range(3))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    save(model(nodes, [tensor("w1", w1), tensor("w2", w2)]), folder, "small_a.onnx")
    extra = [*nodes[:1], helper.make_node("MatMul", ["h", "w2"], ["g"], name="mm2"),
             helper.make_node("MatMul", ["g", "w3\n::error::x"], ["y"], name="mm3")]
    save(model(extra, [tensor("w1", w1 * 1.01), tensor("w2", w2 * 0.99), tensor("w3\n::error::x", w3)]), folder,
         "small_b.onnx")
    return {"healthy": diff(FLOAT, QDQ, jobs=1), "damaged": diff(FLOAT, damaged, jobs=1),
            "tuned": diff(FLOAT, folder / "tuned.onnx", jobs=1),
            "tuned_warn": diff(FLOAT, folder / "tuned.onnx", jobs=1, fail_on="warn"),
            "unmatched": diff(folder / "small_a.onnx", folder / "small_b.onnx", jobs=1)}


@pytest.fixture()
def here(folder, monkeypatch) -> Path:
    """The models' folder as the working directory (the repository root a CI job runs from)."""
    monkeypatch.chdir(folder)
    return folder


def test_the_pairs_are_what_they_should_be(pairs, expected):
    """The premise of every test below, from the JSON report and numpy."""
    damaged = json.loads(render(pairs["damaged"], "json"))
    fc2 = next(layer for layer in damaged["layers"] if layer["a"] == DAMAGED)
    assert fc2["b"] == HOSTILE and [f["code"] for f in fc2["findings"]] == ["IA601"]
    assert fc2["sqnr_db"] == pytest.approx(expected["sqnr_db"], abs=1e-6)
    assert fc2["rel_change"] == pytest.approx(expected["rel_change"], rel=1e-9)
    assert pairs["healthy"].findings == () and pairs["healthy"].exit_code == 0
    assert [f.code for f in pairs["tuned"].findings] == ["IA602"] and pairs["tuned"].exit_code == 0
    assert pairs["tuned_warn"].exit_code == 1
    assert [(u.side, u.name) for u in pairs["unmatched"].unmatched] == [("b", "w3\n::error::x")]
    assert [f.code for f in pairs["unmatched"].findings] == ["IA605"]


@pytest.mark.parametrize("fmt", sorted(REPORTERS))
@pytest.mark.parametrize("case", ["healthy", "damaged", "tuned", "unmatched"])
def test_every_format_renders_every_pair(pairs, here, fmt, case):
    text = render(pairs[case], fmt)
    assert text.endswith("\n") and (len(text) > 20 or (fmt == "codequality" and text == "[]\n"))
    if fmt in ("json", "sarif", "codequality"):
        json.loads(text)
    if fmt == "junit":
        assert ant_schema_problems(text) == []


# ---- Markdown


def _markdown_rows(text: str, heading: str) -> list[list[str]]:
    block = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def test_markdown_ranks_the_damaged_layer_first_with_its_finding(pairs, expected):
    text = render(pairs["damaged"], "markdown")
    rows = _markdown_rows(text, "Matched layers, worst first")
    assert len(rows) == 5
    assert rows[0][0] == DAMAGED and rows[0][-1] == "**FAIL**"
    assert rows[0][5] == f"{expected['sqnr_db']:.1f} dB" and rows[0][1] == HOSTILE.replace("\n", " ")
    assert all(row[-1] == "ok" for row in rows[1:])
    findings = text.split("### Findings\n", 1)[1]
    assert findings.strip().startswith(f"- `IA601` fail: {DAMAGED} → ")
    assert "\n::error" not in text  # the name's newline does not break a line of the comment


def test_markdown_lists_the_unmatched_and_the_identical(pairs):
    unmatched = _markdown_rows(render(pairs["unmatched"], "markdown"), "Found in one model only")
    assert unmatched == [["B", "w3 ::error::x", "MatMul", "[32,32]", "float", "**warn**"]]
    rows = _markdown_rows(render(pairs["tuned"], "markdown"), "Matched layers, worst first")
    assert rows[0][0] == "conv2.weight" and rows[0][5] == "identical" and rows[0][-1] == "**warn**"


def test_markdown_stays_within_a_comment(pairs):
    """600 layers of long names: the table is cut to fit, worst first kept, and says how many it left out."""
    report = pairs["damaged"]
    worst = report.worst_first()[0]
    many = [dataclasses.replace(p, a=f"{p.a}.{'x' * 80}.{i}") for i in range(120) for p in report.layers
            if p is not worst]
    big = dataclasses.replace(report, layers=(*many, worst))
    text = render(big, "markdown")
    assert len(text) <= LIMIT
    rows = _markdown_rows(text, "Matched layers, worst first")
    assert rows[0][0] == DAMAGED and 0 < len(rows) < len(big.layers)
    assert f"… and {len(big.layers) - len(rows)} more matched layers" in text
    assert len(render(big, "markdown", limit=5000)) <= 5000


# ---- HTML


VOID = {"meta", "br", "wbr", "input", "img", "hr", "link"}


class _WellFormed(HTMLParser):
    """Every element closed in order (void ones excepted); the text outside tags collected."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _page(report: DiffReport) -> tuple[str, _WellFormed]:
    page = render(report, "html")
    parser = _WellFormed()
    parser.feed(page)
    parser.close()
    return page, parser


def _svg(page: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*?</svg>", page, re.S).group(0))  # type: ignore[union-attr]


def _bars(svg: ET.Element, panel: str) -> list[ET.Element]:
    return [e for e in svg.iter("{http://www.w3.org/2000/svg}rect")
            if e.get("class", "").split()[:2] == ["bar", panel]]


@pytest.mark.parametrize("case", ["healthy", "damaged", "tuned", "unmatched"])
def test_html_is_well_formed_escaped_and_self_contained(pairs, case):
    page, parser = _page(pairs[case])
    assert parser.problems == [] and parser.stack == []
    assert page.count("<script") == 1 and f"<script>{html_reporter.SCRIPT}</script>" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    if case == "damaged":
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert any("<script>alert(1)</script>" in text for text in parser.text)  # shown as text, whole


def test_html_table_is_worst_first_and_the_damaged_row_carries_its_finding(pairs, expected):
    page, _ = _page(pairs["damaged"])
    rows = re.findall(r'<tr id="d-(\d+)" data-status="(\w+)">(.*?)</tr>', page, re.S)
    assert len(rows) == 5
    number, status, cells = rows[0]
    assert status == "fail" and number == "4"  # fc2 is the 4th weight in graph order
    assert f'data-v="{DAMAGED}"' in cells and "IA601 quantization-damage" in cells
    sqnr = float(re.search(r'data-v="([^"]*)">-?[0-9.]+ dB</td>', cells).group(1))  # type: ignore[union-attr]
    assert sqnr == pytest.approx(expected["sqnr_db"], abs=1e-6)
    assert [s for _, s, _ in rows[1:]] == ["ok"] * 4
    assert 'href="#d-4"' in page.split("Findings by rule", 1)[1]


def test_html_chart_has_one_bar_per_matched_layer_in_graph_order(pairs, expected):
    for case in ("healthy", "damaged", "tuned", "unmatched"):
        report = pairs[case]
        svg = _svg(render(report, "html"))
        for panel in ("sqnr", "rel"):
            bars = _bars(svg, panel)
            assert len(bars) == len(report.layers), (case, panel)
            titles = [b.find("{http://www.w3.org/2000/svg}title").text for b in bars]  # type: ignore[union-attr]
            assert [t.split(" ", 1)[0] for t in titles] == [f"#{n}" for n in range(1, len(report.layers) + 1)]
    damaged = pairs["damaged"]
    svg = _svg(render(damaged, "html"))
    sqnr = _bars(svg, "sqnr")
    assert [b.get("class").split()[-1] for b in sqnr] == ["ok", "ok", "ok", "fail", "ok"]
    assert sqnr[3].get("fill") == html_reporter.COLOR["fail"] and sqnr[0].get("fill") != html_reporter.COLOR["ok"]
    # bar heights follow the figures: every changed layer's height / |SQNR| is one scale (px per dB)
    figures = [p.change.sqnr_db for p in damaged.layers if p.change is not None]
    scales = [float(b.get("height")) / abs(value) for b, value in zip(sqnr, figures)]
    assert max(scales) - min(scales) < 0.2 / min(abs(v) for v in figures)
    assert figures[3] == pytest.approx(expected["sqnr_db"], abs=1e-6)
    zero = float(sqnr[0].get("y")) + float(sqnr[0].get("height"))  # the 0 dB line: healthy bars stand on it
    assert float(sqnr[3].get("y")) == pytest.approx(zero, abs=0.11)  # a negative SQNR hangs below it
    rel = _bars(svg, "rel")
    assert max(rel, key=lambda b: float(b.get("height"))) is rel[3]


def test_html_chart_marks_the_identical_layer(pairs):
    svg = _svg(render(pairs["tuned"], "html"))
    names = [p.a for p in pairs["tuned"].layers]
    identical = [i for i, b in enumerate(_bars(svg, "sqnr")) if "identical" in b.get("class").split()]
    assert [names[i] for i in identical] == ["conv2.weight"]
    assert _bars(svg, "sqnr")[identical[0]].get("class").split()[-1] == "warn"
    assert float(_bars(svg, "rel")[identical[0]].get("height")) == 0


# ---- SARIF


def test_sarif_validates_and_github_accepts_it(pairs, here):
    for case in ("healthy", "damaged", "tuned", "unmatched"):
        log = json.loads(render(pairs[case], "sarif"))
        assert _schema_errors(log) == [] and github_problems(log) == [], case
    assert json.loads(render(pairs["healthy"], "sarif"))["runs"][0]["results"] == []


def test_sarif_results_are_the_findings_located_in_b(pairs, here):
    run = json.loads(render(pairs["damaged"], "sarif"))["runs"][0]
    [result] = run["results"]
    assert result["ruleId"] == "IA601" and result["level"] == "error"
    assert result["message"]["text"] == pairs["damaged"].findings[0].message
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact["uriBaseId"] == "%SRCROOT%" and artifact["uri"] == "evil%0A%3A%3Awarning%20file%3Dy%3A%3Az.onnx"
    logical = {loc["fullyQualifiedName"] for loc in result["locations"][0]["logicalLocations"]}
    assert logical == {f"B::{HOSTILE}", f"A::{DAMAGED}"}
    [rule] = run["tool"]["driver"]["rules"]
    assert rule["id"] == "IA601" and rule["name"] == "quantization-damage"
    assert rule["defaultConfiguration"]["level"] == "error" and "model-diff" in rule["properties"]["tags"]
    unmatched = json.loads(render(pairs["unmatched"], "sarif"))["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in unmatched] == [("IA605", "warning")]


def test_sarif_fingerprints_hold_across_runs_and_messages(pairs, here):
    def prints(report):
        return [r["partialFingerprints"] for r in json.loads(render(report, "sarif"))["runs"][0]["results"]]

    report = pairs["damaged"]
    reworded = dataclasses.replace(report, layers=tuple(
        dataclasses.replace(p, node_b=p.node_b + "_renumbered",
                            findings=tuple(dataclasses.replace(f, message=f.message + " 1.5 dB")
                                           for f in p.findings)) for p in report.layers))
    assert prints(report) == prints(reworded) == prints(pairs["damaged"])
    other = prints(pairs["tuned"]) + prints(pairs["unmatched"]) + prints(report)
    assert len({json.dumps(p) for p in other}) == len(other)


# ---- JUnit


def _cases(text: str) -> list[ET.Element]:
    return ET.fromstring(text).find("testsuite").findall("testcase")  # type: ignore[union-attr]


def test_junit_has_a_case_per_matched_and_unmatched_layer(pairs):
    for case in ("healthy", "damaged", "tuned", "tuned_warn", "unmatched"):
        text = render(pairs[case], "junit")
        assert ant_schema_problems(text) == [], case
        assert len(_cases(text)) == len(pairs[case].layers) + len(pairs[case].unmatched)
    names = [c.get("name") for c in _cases(render(pairs["unmatched"], "junit"))]
    assert names == ["w1", "w2", "only in B: w3\n::error::x"]


def test_junit_fails_as_the_exit_code_counts(pairs):
    damaged = _cases(render(pairs["damaged"], "junit"))
    failed = [c for c in damaged if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [f"{DAMAGED} → {HOSTILE}"]
    assert failed[0].find("failure").get("type") == "IA601"  # type: ignore[union-attr]
    # the warning: in the suite's output at --fail-on fail, a failure at --fail-on warn
    quiet = ET.fromstring(render(pairs["tuned"], "junit")).find("testsuite")
    assert quiet.get("failures") == "0"  # type: ignore[union-attr]
    assert quiet.find("system-out").text.startswith("conv2.weight: IA602 warn: ")  # type: ignore[union-attr]
    loud = ET.fromstring(render(pairs["tuned_warn"], "junit")).find("testsuite")
    assert loud.get("failures") == "1" and not (loud.find("system-out").text or "")  # type: ignore[union-attr]
    [case] = [c for c in loud.findall("testcase") if c.find("failure") is not None]  # type: ignore[union-attr]
    assert case.get("name") == "conv2.weight"


# ---- GitHub


def test_github_annotations_parse_and_no_name_makes_a_command(pairs, here):
    text = render(pairs["damaged"], "github")
    commands = runner_commands(text)
    assert [name for name, _, _ in commands] == ["error"]
    _, props, message = commands[0]
    assert props == {"file": HOSTILE_FILE, "title": f"IA601 quantization-damage: {DAMAGED} → {HOSTILE}"}
    assert message == pairs["damaged"].findings[0].message
    lines = re.split(r"\r\n|\r|\n", text.rstrip("\n"))
    assert len(lines) == 2 and lines[1].startswith("initaudit: ") and runner_commands(lines[1]) == []
    assert _unescape(lines[1][len("initaudit: "):]).endswith("4 ok, 0 warn, 1 fail")
    unmatched = runner_commands(render(pairs["unmatched"], "github"))
    assert [(n, p["title"]) for n, p, _ in unmatched] == [("warning", "IA605 only-in-b: only in B: w3\n::error::x")]
    healthy = render(pairs["healthy"], "github")
    assert runner_commands(healthy) == [] and healthy.count("\n") == 1 and healthy.startswith("initaudit: ")


# ---- GitLab Code Quality


def test_codequality_has_an_entry_per_finding_with_stable_fingerprints(pairs, here):
    assert json.loads(render(pairs["healthy"], "codequality")) == []
    [issue] = json.loads(render(pairs["damaged"], "codequality"))
    assert issue["check_name"] == "IA601 quantization-damage" and issue["severity"] == "major"
    assert issue["location"] == {"path": HOSTILE_FILE, "lines": {"begin": 1}}
    assert issue["description"] == pairs["damaged"].findings[0].message
    sarif = json.loads(render(pairs["damaged"], "sarif"))["runs"][0]["results"][0]
    assert issue["fingerprint"] == next(iter(sarif["partialFingerprints"].values()))
    [tuned] = json.loads(render(pairs["tuned"], "codequality"))
    assert tuned["severity"] == "minor" and tuned["fingerprint"] != issue["fingerprint"]
