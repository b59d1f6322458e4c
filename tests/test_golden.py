"""Golden files of every text format for one failing model and one unreadable file, volatile fields scrubbed
(version, absolute paths); review a diff with INITAUDIT_REGEN_GOLDEN=1 before committing it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from goldens import check_golden

import initaudit
from initaudit.report.formats import FORMATS, render
from initaudit.report.schema import schema
from initaudit.version import __version__

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _batch(tmp_path, monkeypatch, histograms: bool = False):
    (tmp_path / "models").mkdir()
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", tmp_path / "models" / "lenet.onnx")
    (tmp_path / "models" / "zz_cut.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:3000])
    monkeypatch.chdir(tmp_path)
    return initaudit.audit("models", jobs=1, errors="report", histograms=histograms)


@pytest.fixture()
def report(tmp_path, monkeypatch):
    return _batch(tmp_path, monkeypatch)


def _scrub(text: str) -> str:
    """The version, the working folder SARIF records as its base URI, and the time, host and
    durations JUnit records of the run."""
    text = text.replace(Path.cwd().resolve().as_uri() + "/", "file:///WORKDIR/")
    text = re.sub(r'timestamp="[^"]*" hostname="[^"]*"', 'timestamp="TIME" hostname="HOST"', text)
    text = re.sub(r'(<testsuite [^>]*) time="[0-9.]+"', r'\1 time="SECONDS"', text)
    return text.replace(f'"{__version__}"', '"VERSION"').replace(f"initaudit {__version__}", "initaudit VERSION")


def _contract(text: str) -> str:
    """The JSON report cut to the contract's fields (extensions come and go), floats to 6 digits."""
    data = json.loads(text)
    required = schema()["$defs"]

    def cut(value, keep=None):
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items() if keep is None or k in keep}
        return value

    for model in data["models"]:
        model["layers"] = [cut(layer, set(required["layer"]["required"])) for layer in model["layers"]]
        for layer in model["layers"]:
            layer["findings"] = [cut(f, set(required["finding"]["required"])) for f in layer["findings"]]
    keep = set(required["model_report"]["required"]) | {"status", "error", "findings"}
    data["models"] = [cut(m, keep) for m in data["models"]]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _rounded(text: str) -> str:
    """Full-precision numbers (the HTML table's sort keys) to 6 digits: their last digits follow numpy's
    summation order, which differs between numpy versions."""
    return re.sub(r"-?\d+\.\d{7,}(?:e[-+]?\d+)?", lambda m: f"{float(m.group(0)):.6g}", text)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_golden_of_every_registered_format(tmp_path, monkeypatch, fmt):
    """Each format of the reporter table, on a batch audited with what that format asks for."""
    report = _batch(tmp_path, monkeypatch, histograms=fmt.histograms)
    text = _scrub(render(report, fmt.name))
    text = _contract(text) if fmt.name == "json" else _rounded(text) if fmt.name == "html" else text
    check_golden(f"batch-{fmt.name}{fmt.extension}", text)
