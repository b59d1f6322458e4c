"""The reporter contract (``report.formats``): every registered format has its module and renders a
report; every format module is registered; the CLI offers exactly the registered formats; a format
that draws histograms gets them measured, the others do not pay for the second pass."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import initaudit
from initaudit.cli.main import main
from initaudit.report.formats import FORMATS, needs_histograms, render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FORMATS_DIR = Path(__file__).resolve().parent.parent / "initaudit" / "report" / "formats"


def test_every_format_module_is_registered_and_every_registered_format_has_a_module():
    modules = {p.stem for p in FORMATS_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert modules == {f.name for f in FORMATS}
    for fmt in FORMATS:
        parameters = inspect.signature(importlib.import_module(f"initaudit.report.formats.{fmt.name}").render).parameters
        assert list(parameters)[0] == "report" and ("color" in parameters) == fmt.color
        assert fmt.extension.startswith(".")


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_registered_format_renders_a_report(fmt):
    report = initaudit.audit(SAMPLES / "lenet_std1.onnx", jobs=1, histograms=fmt.histograms)
    text = render(report, fmt.name, color=True)
    assert text.strip() and "fc1.weight" in text


def test_only_a_format_that_draws_histograms_asks_for_them():
    assert needs_histograms(["html"]) and needs_histograms(["table", "html"])
    assert not needs_histograms([f.name for f in FORMATS if f.name != "html"])


def test_the_command_line_offers_the_registered_formats(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert "{" + ",".join(sorted(f.name for f in FORMATS)) + "}" in usage.replace("\n", "").replace(" ", "")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        render(initaudit.audit(SAMPLES / "lenet_std1.onnx", jobs=1), "pdf")


def test_only_the_reports_a_sign_off_reads_ask_for_provenance():
    from initaudit.report.formats import needs_provenance

    assert {f.name for f in FORMATS if needs_provenance([f.name])} == {"json", "markdown", "html"}
