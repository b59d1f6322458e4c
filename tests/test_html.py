"""The HTML report's structure (report/formats/html.py, _html_review.py), without a browser: the review-first
headline for trained models, flagged layers first with the ok ones folded, a reason column, findings grouped
by severity with each rule's own evidence, histograms capped, names breakable only at separators."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from signoffkit import layer_name, planted, signoff_model

import initaudit
from initaudit.report.formats import render
from initaudit.report.formats.html import name_html

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("html")


@pytest.fixture(scope="module")
def trained60(folder):
    return render(initaudit.audit(signoff_model(folder, 60), jobs=1, profile="trained", histograms=True), "html")


def _row(page: str, number: int) -> str:
    return re.search(rf'<tr id="m0-{number}" .*?</tr>', page).group(0)  # type: ignore[union-attr]


def _cells(row: str) -> list[tuple[str, str]]:
    """(class, text) of each cell, markup removed."""
    return [(cls, re.sub(r"<[^>]+>", "", text)) for cls, text in re.findall(r'<td class="([^"]*)"[^>]*>(.*?)</td>', row)]


def test_a_trained_model_leads_with_the_review_and_keeps_the_ratio_secondary(trained60, folder):
    assert 'aria-label="trained-model review per layer"' in trained60
    assert 'aria-label="variance ratio per layer"' not in trained60
    head = re.findall(r'<th data-key="(\w+)"', trained60)
    assert head == ["n", "layer", "op", "shape", "status", "reason", "never_trained", "dead", "scale", "int8", "fp16",
                    "ratio"]
    assert "<small>warn from 10%</small>" in trained60 and "<small>flag below -6 dB</small>" in trained60
    # --profile auto deciding trained gets the same headline; the init profile keeps its chart
    auto = render(initaudit.audit(signoff_model(folder, 60), jobs=1, profile="auto"), "html")
    assert 'aria-label="trained-model review per layer"' in auto
    init = render(initaudit.audit(SAMPLES / "lenet_torch_default.onnx", jobs=1), "html")
    assert 'aria-label="variance ratio per layer"' in init and "trained-model review per layer" not in init


def test_each_check_cell_carries_the_colour_of_its_finding(trained60):
    # layer i = 6: 4 of 32 units dead (warn); i = 8: 1 of 32 (info); i = 3: never trained (fail)
    dead_warn, dead_info, fresh = _cells(_row(trained60, 7)), _cells(_row(trained60, 9)), _cells(_row(trained60, 4))
    assert dead_warn[7] == ("l e warn", "4 of 32 (12%)") and dead_warn[5][1] == "IA402 dead-units"
    assert dead_info[7] == ("l e info", "1 of 32 (3%)") and dead_info[4] == ("v ok", "ok")
    assert fresh[6][0] == "l e fail" and fresh[6][1].startswith("z ") and "σ₁" in fresh[6][1]
    assert fresh[4] == ("v fail", "fail") and fresh[11][0] == "v secondary"
    scale = _cells(_row(trained60, 10))   # i = 9: 1000× its peers
    assert scale[8][0] == "l e warn" and re.fullmatch(r"\d+× the median of \d+ \(z \+\d+\.\d\)", scale[8][1])
    outlier = _cells(_row(trained60, 20))  # i = 19: one value 5000× the rms
    assert outlier[9][0] == "l e warn" and outlier[9][1].endswith(" dB") and float(outlier[9][1][:-3]) < -6


def test_flagged_layers_first_and_the_ok_ones_folded(trained60):
    order = [int(n) for n in re.findall(r'<tr id="m0-(\d+)"', trained60)]
    status = dict(re.findall(r'<tr id="m0-(\d+)" data-status="(\w+)"', trained60))
    fails = [i + 1 for i in range(60) if planted(i) == "IA401"]
    warns = [i + 1 for i in range(60) if planted(i) in ("IA402", "IA403", "IA404") and not i % 10 == 8]
    assert order[:18] == fails + warns and sorted(order) == list(range(1, 61))
    assert all(status[str(n)] == "ok" for n in order[18:])
    assert '<table class="layers folded"' in trained60               # folded even without the script
    assert '<option value="flagged" selected>' in trained60 and "show the 42 ok layers too" in trained60
    clean = render(initaudit.audit(SAMPLES / "lenet_xavier.onnx", jobs=1), "html")
    assert '<table class="layers"' in clean and "folded" not in clean.split("<table")[2][:40]  # nothing to fold


def test_findings_grouped_by_severity_with_each_rules_evidence(trained60):
    section = trained60.split("<h3>Findings by rule</h3>")[1].split("</section>")[0]
    heads = re.findall(r'<h4 class="(\w+)">(\w+): (\d+) rules?, (\d+) findings?</h4>', section)
    assert heads == [("fail", "fail", "1", "6"), ("warn", "warn", "3", "12"), ("info", "info", "1", "6")]
    warn = section.split('<h4 class="warn">')[1].split("<h4")[0]
    info = section.split('<h4 class="info">')[1]
    # six layers: each listed with its message (at most 12 are)
    assert re.findall(r'<a href="#m0-(\d+)">', info) == [str(i + 1) for i in range(60) if i % 10 == 8]
    assert info.count("1 of 32 output units (3%) are dead") == 6
    assert "<code>IA402</code> dead-units</b> <span class=\"warn\">warn</span> — 6 layers" in warn
    assert "<code>IA402</code> dead-units</b> <span class=\"info\">info</span> — 6 layers" in info


def test_many_findings_list_names_with_their_own_evidence(folder):
    page = render(initaudit.audit(signoff_model(folder, 600), jobs=1, profile="trained", histograms=True), "html")
    section = page.split("<h3>Findings by rule</h3>")[1].split("</section>")[0]
    dead = section.split("<code>IA402</code> dead-units</b> <span class=\"warn\">")[1].split('<div class="rule">')[0]
    assert dead.count("<li>") == 60 and dead.count('<span class="muted">4/32 dead</span>') == 60
    assert "×</span>" not in dead                                        # not the Xavier ratio
    never = section.split("<code>IA401</code>")[1].split('<div class="rule">')[0]
    assert len(re.findall(r'<span class="muted">z [+-]\d+\.\d\d</span>', never)) == 60
    scale = section.split("<code>IA403</code>")[1].split('<div class="rule">')[0]
    assert len(re.findall(r'<span class="muted">[\d.e+]+× median</span>', scale)) == 30
    # 180 flagged layers with a histogram: 24 drawn, the rest behind one click
    cards = page.split('<section class="histograms">')[1]
    shown, folded = cards.split('<details class="more">')
    assert shown.count('class="card"') == 24 and folded.count('class="card"') == 156
    assert "<summary>156 more histograms of flagged layers</summary>" in folded
    notes = re.findall(r'<div class="note">(\d+) (values?) outside the drawn range</div>', page)
    assert notes and all((n == "1") == (word == "value") for n, word in notes)


def test_names_break_only_at_separators():
    assert name_html("encoder.layers.0/attn_q-proj:0") == "encoder.<wbr>layers.<wbr>0/<wbr>attn_<wbr>q-<wbr>proj:<wbr>0"
    assert name_html('w<&>"x') == "w&lt;&amp;&gt;&quot;x"
    assert name_html(layer_name(0)).count("<wbr>") == layer_name(0).count("/") + layer_name(0).count(".") \
        + layer_name(0).count("_")
