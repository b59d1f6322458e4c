"""Every output format, fed by the same report: structure, escaping, exit-code consistency."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit
from initaudit.report.formats import REPORTERS, render
from initaudit.report.formats import html as html_reporter

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
NASTY = 'w<&>"\'ünï'


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nasty")
    rng = np.random.default_rng(0)
    m = model([helper.make_node("MatMul", ["x", NASTY], ["y"], name="<node>")],
              [tensor(NASTY, rng.normal(0, 1, (64, 32)).astype(np.float32))])
    nasty = initaudit.audit(save(m, folder))
    empty = initaudit.audit(save(model([helper.make_node("Relu", ["x"], ["y"])], []), folder, "empty.onnx"))
    lenet = initaudit.audit([SAMPLES / "lenet_torch_default.onnx", SAMPLES / "lenet_xavier.onnx"], jobs=1)
    return {"nasty": nasty, "empty": empty, "lenet": lenet}


@pytest.mark.parametrize("fmt", sorted(REPORTERS))
@pytest.mark.parametrize("case", ["nasty", "empty", "lenet"])
def test_every_format_renders_every_report(reports, fmt, case):
    text = render(reports[case], fmt)
    assert text.endswith("\n") and (len(text) > 20 or (fmt == "codequality" and text == "[]\n"))


def test_html_escapes_names_and_draws_the_chart(reports):
    page = render(reports["nasty"], "html")
    assert NASTY not in page and "w&lt;&amp;&gt;&quot;&#x27;ünï" in page
    assert "<node>" not in page and "<svg" in page
    # one script, the fixed one: no model data ever reaches it
    assert page.count("<script") == 1 and f"<script>{html_reporter.SCRIPT}</script>" in page
    lenet = render(reports["lenet"], "html")
    assert lenet.count("<circle") == 10 and "multiply by" in lenet and "kaiming" not in lenet


def test_sarif_structure(reports):
    log = json.loads(render(reports["lenet"], "sarif"))
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert {"IA101", "IA102", "IA104"} <= set(rule_ids)
    for result in run["results"]:
        assert result["ruleId"] in rule_ids and rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
    assert sum(r["level"] == "error" for r in run["results"]) == 4


def junit_total(text: str, attribute: str) -> int:
    """A count over the suites (the strict Ant schema gives ``<testsuites>`` no totals of its own)."""
    return sum(int(suite.get(attribute)) for suite in ET.fromstring(text).iter("testsuite"))


def test_junit_failures_follow_fail_on(reports, tmp_path):
    text = render(reports["lenet"], "junit")
    # 10 weights and the model-level IA104 (signal drift, warn) of lenet_torch_default
    assert junit_total(text, "tests") == 11 and junit_total(text, "failures") == 4
    strict = initaudit.audit(SAMPLES / "lenet_torch_default.onnx", fail_on="warn")
    assert strict.exit_code == 1 and junit_total(render(strict, "junit"), "failures") == 6
    never = initaudit.audit(SAMPLES / "lenet_torch_default.onnx", fail_on="never")
    assert junit_total(render(never, "junit"), "failures") == 0


def test_markdown_table_and_fixes(reports):
    text = render(reports["lenet"], "markdown")
    assert "| conv1.weight |" in text and "**FAIL**" in text
    assert "PyTorch `torch.nn.init.xavier_uniform_(w)`" in text


def test_markdown_escapes_a_pipe_in_a_name(tmp_path):
    m = model([helper.make_node("MatMul", ["x", "a|b"], ["y"])],
              [tensor("a|b", np.random.default_rng(1).normal(0, 0.2, (16, 8)).astype(np.float32))])
    text = render(initaudit.audit(save(m, tmp_path)), "markdown")
    assert "a\\|b" in text and "| a|b |" not in text


def test_table_colour_only_when_asked(reports):
    plain = render(reports["lenet"], "table")
    assert "\033[" not in plain
    assert "\033[31;1mfail" in render(reports["lenet"], "table", color=True)


def test_pool_aware_lenet():
    layers = {l.name: l for l in initaudit.audit(SAMPLES / "lenet_xavier.onnx", pool_aware=True).models[0].layers}
    conv1 = layers["conv1.weight"]
    assert (conv1.fan_in, conv1.fan_out, conv1.pool_area) == (75, 37, 4)
    assert conv1.target_var == pytest.approx(2 / 112)
    assert (layers["fc1.weight"].fan_out, layers["fc1.weight"].pool_area) == (120, 1)


def test_pool_of_the_next_layer_is_not_ours(tmp_path):
    rng = np.random.default_rng(1)
    m = model([helper.make_node("Conv", ["x", "a"], ["h"]), helper.make_node("Conv", ["h", "b"], ["h2"]),
               helper.make_node("MaxPool", ["h2"], ["y"], kernel_shape=[2, 2])],
              [tensor("a", rng.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32)),
               tensor("b", rng.normal(0, 0.1, (4, 4, 3, 3)).astype(np.float32))])
    layers = initaudit.audit(save(m, tmp_path), pool_aware=True).models[0].layers
    assert [(l.name, l.pool_area) for l in layers] == [("a", 1), ("b", 4)]


@pytest.mark.parametrize("fail_on", ["warn", "fail", "never"])
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.onnx")))
def test_junit_fails_exactly_when_the_exit_code_does(sample, fail_on):
    report = initaudit.audit(SAMPLES / sample, fail_on=fail_on)
    failures = junit_total(render(report, "junit"), "failures")
    assert (failures > 0) == (report.exit_code == 1)
