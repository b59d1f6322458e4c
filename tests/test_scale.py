"""Reports of a 600-layer model: Markdown that fits a PR comment, HTML that stays readable."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import helper, numpy_helper

import initaudit
from initaudit.report.formats import render
from initaudit.report.formats.markdown import LIMIT

N = 600


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return make_big(tmp_path_factory.mktemp("big"))


def make_big(folder: Path) -> Path:
    """600 MatMul weights in a chain: a third right, a third at 9× the variance, a third all zero."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    for i in range(N):
        name = f"encoder.layers.{i}.feed_forward.projection.weight"
        w = xavier_uniform(rng, (16, 16), 16, 16)
        if i % 3 == 1:
            w = w * 3
        elif i % 3 == 2:
            w = np.zeros_like(w)
        nodes.append(helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", name], ["y" if i == N - 1 else f"h{i + 1}"],
                                      name=f"/encoder/layers.{i}/MatMul"))
        inits.append(tensor(name, w))
    return save(model(nodes, inits), folder, "big.onnx")


@pytest.fixture(scope="module")
def report(big):
    return initaudit.audit(big, histograms=True)


def test_markdown_fits_a_comment_and_leads_with_the_failures(report):
    full_length = len(render(report, "markdown", limit=10**9))
    text = render(report, "markdown")
    assert full_length > LIMIT and len(text) <= LIMIT  # would not fit uncut; does now
    lines = text.splitlines()
    assert lines[0].startswith("## initaudit: ") and "600 weights — 200 ok, 0 warn, 400 fail" in lines[2]
    rows = [line for line in lines if line.startswith("| encoder.")]
    assert rows and all("**FAIL**" in row for row in rows)  # failing layers come first
    assert re.search(r"… and \d+ more flagged layers", text) and "200 ok layers not listed" in text
    assert "IA101" in text and "IA202" in text


def test_markdown_small_reports_are_not_cut(report):
    small = initaudit.audit(Path(__file__).resolve().parent.parent / "sample_models" / "lenet_dead_layer.onnx")
    text = render(small, "markdown")
    assert "<details><summary>4 ok layers</summary>" in text and "…" not in text


def test_html_groups_findings_and_lists_each_layer_once(report):
    page = render(report, "html")
    grouped = page.split("<h3>Findings by rule</h3>")[1].split("<h3>")[0]
    assert grouped.count("<code>IA101</code>") == 1 and grouped.count("<code>IA202</code>") == 1
    assert "— 200 layers" in grouped
    links = re.findall(r'<a href="#(m0-\d+)"', grouped)
    assert len(links) == len(set(links)) == 400  # each flagged layer once
    assert page.count("<tr id=") == N


def test_html_axis_labels_do_not_overprint(report):
    page = render(report, "html")
    chart = page.split('aria-label="variance ratio per layer">')[1].split("</svg>")[0]
    labels = [(float(x), text) for x, text in re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="middle">(\d+)</text>',
                                                          chart)]
    assert 5 <= len(labels) <= 40
    for (x1, t1), (x2, t2) in zip(labels, labels[1:]):
        assert x2 - x1 >= 3.5 * (len(t1) + len(t2)) + 4, (t1, t2)  # half widths at 7 px a digit, and a gap


def test_html_histograms_for_flagged_layers_only(report, big):
    page = render(report, "html")
    assert page.count('aria-label="histogram of values against the target"') == 400
    layers = report.models[0].layers
    assert all((layer.histogram is None) == (layer.status == "ok") for layer in layers)
    bad = layers[1]
    h = bad.histogram
    # the bars are the layer's values: numpy's histogram of the stored tensor over the same bins
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(big)).graph.initializer}[bad.name]
    expected, _ = np.histogram(stored.astype(np.float64), bins=len(h.counts), range=(h.lo, h.hi))
    assert list(h.counts) == expected.tolist() and h.below == h.above == 0
    # drawn against the target: the range covers the target's ±4σ (σ = √(2/32) = 0.25)
    assert h.hi >= 4 * 0.25 - 1e-12 and h.lo == -h.hi
