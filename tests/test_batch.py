"""A batch with unreadable models: every readable one is audited, every unreadable one is reported."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import initaudit
from initaudit.cli.main import main
from initaudit.errors import InitauditError
from initaudit.report.formats import REPORTERS, render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
REASONS = {"a_truncated.onnx": "not", "b_text.onnx": "not", "c_empty.onnx": "not an ONNX model"}


@pytest.fixture()
def batch(tmp_path):
    """Two good models around three unreadable ones, in file-name order."""
    (tmp_path / "0_good.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes())
    (tmp_path / "a_truncated.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:5000])
    (tmp_path / "b_text.onnx").write_text("this is not a model\n" * 10)
    (tmp_path / "c_empty.onnx").write_bytes(b"")
    (tmp_path / "z_dead.onnx").write_bytes((SAMPLES / "lenet_dead_layer.onnx").read_bytes())
    return tmp_path


@pytest.mark.parametrize("jobs", [1, 2])
def test_library_reports_every_model(batch, jobs):
    report = initaudit.audit(batch, jobs=jobs, errors="report")
    names = [Path(m.path).name for m in report.models]
    assert names == ["0_good.onnx", "a_truncated.onnx", "b_text.onnx", "c_empty.onnx", "z_dead.onnx"]
    assert [len(m.layers) for m in report.models] == [5, 0, 0, 0, 5]  # .layers works on every entry
    assert [m.status for m in report.models] == ["ok", "error", "error", "error", "fail"]
    for model in report.unreadable:
        assert REASONS[Path(model.path).name] in model.error and "\n" not in model.error
        assert not model.error.startswith(model.path)
    assert report.exit_code == 2
    with pytest.raises(InitauditError, match="a_truncated.onnx"):
        initaudit.audit(batch, jobs=jobs)  # the default still raises


def test_exit_code_2_even_when_nothing_else_fails(batch):
    (batch / "z_dead.onnx").unlink()
    assert initaudit.audit(batch, jobs=1, errors="report", fail_on="never").exit_code == 2


def test_every_format_carries_the_unreadable_models(batch, capsys):
    report = initaudit.audit(batch, jobs=1, errors="report")
    data = json.loads(render(report, "json"))
    entries = {Path(m["model"]["path"]).name: m for m in data["models"]}
    for name, needle in REASONS.items():
        entry = entries[name]
        assert entry["status"] == "error" and needle in entry["error"] and entry["layers"] == []
        assert entry["findings"] == [{"code": "IA001", "severity": "fail", "message": entry["error"]}]
    assert entries["z_dead.onnx"]["summary"]["fail"] == 1 and data["exit_code"] == 2

    suites = ET.fromstring(render(report, "junit"))
    totals = {key: sum(int(s.get(key)) for s in suites.iter("testsuite")) for key in ("errors", "failures", "tests")}
    assert totals == {"errors": 3, "failures": 1, "tests": 13}
    errors = suites.findall(".//testcase/error")
    assert len(errors) == 3 and {e.get("type") for e in errors} == {"IA001"}

    sarif = json.loads(render(report, "sarif"))
    unreadable = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "IA001"]
    assert len(unreadable) == 3 and all(r["level"] == "error" for r in unreadable)

    table = render(report, "table")
    for name in REASONS:
        assert sum(name in line and "could not be read (IA001)" in line for line in table.splitlines()) == 1
    assert table.count("5 weights") == 2
    for fmt in ("markdown", "html"):
        text = render(report, fmt)
        assert text.count("IA001") == 3, fmt
    assert set(REPORTERS) >= {"json", "junit", "sarif", "table", "markdown", "html"}


def test_cli_batch(batch, capsys):
    code = main([str(batch), "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 3 and all(line.startswith("initaudit: error: ") for line in err.splitlines())
    assert out.count("5 weights") == 2 and out.count("could not be read") == 3
