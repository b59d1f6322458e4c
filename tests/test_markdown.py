"""``--format markdown`` (report/formats/markdown.py): a report that always fits a GitHub comment."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

import initaudit
from initaudit.report.formats import render
from initaudit.report.formats.markdown import _render
from initaudit.report.model import Report

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
GITHUB_COMMENT = 65_536   # characters GitHub takes in a comment body (its documented maximum)


@pytest.fixture(scope="module")
def lenet():
    """lenet_torch_default: 5 layers, 4 of them failing, with findings and fixes."""
    return initaudit.audit(SAMPLES / "lenet_torch_default.onnx", jobs=1).models[0]


def many(model, models: int, copies: int = 1) -> Report:
    """``models`` copies of one model report, each under its own long path and with its layers repeated."""
    out = []
    for m in range(models):
        layers = tuple(dataclasses.replace(layer, name=f"block{c}.{layer.name}")
                       for c in range(copies) for layer in model.layers)
        out.append(dataclasses.replace(model, path=f"models/team-{m:04d}/checkpoints/variant-{m}/model.onnx",
                                       layers=layers))
    return Report(tuple(out))


def compact(report: Report) -> str:
    """The most compact form: ok layers counted, no flagged row or finding listed."""
    return _render(report, False, 0)[0]


def test_hundreds_of_models_are_cut_with_a_note_and_never_exceed_the_limit(lenet):
    """500 models × 40 layers (16,000 flagged): even one line per model is longer than a comment."""
    report = many(lenet, 500, copies=10)
    assert len(compact(report)) > 2 * GITHUB_COMMENT
    start = time.perf_counter()
    text = render(report, "markdown")
    assert time.perf_counter() - start < 5.0  # 0.2 s measured (19 s when every form rendered every model)
    assert len(text) <= GITHUB_COMMENT
    assert text.endswith("… cut to fit a comment; the JSON and HTML reports have everything.\n")
    assert text.startswith("## initaudit: `models/team-0000/checkpoints/variant-0/model.onnx`")
    body = text.rsplit("\n\n… cut to fit", 1)[0]
    # the cut is at a line's end: every line kept is a whole line of the most compact form
    assert compact(report).startswith(body + "\n")


@pytest.mark.parametrize("models", [1, 40, 200, 900])
def test_the_report_fits_at_every_size(lenet, models):
    text = render(many(lenet, models, copies=5), "markdown")
    assert len(text) <= GITHUB_COMMENT
    assert text.count("## initaudit: ") >= 1


def test_a_limit_smaller_than_the_note_is_still_kept(lenet):
    for limit in (0, 10, 80, 500):
        assert len(render(many(lenet, 50), "markdown", limit=limit)) <= limit
