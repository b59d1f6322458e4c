"""Provenance (report/provenance.py): the SHA-256 and size of the model and of each external data file, the
effective options, the config file, the command and the time, in the JSON, Markdown and HTML reports."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.cli.main import main
from initaudit.report.formats import render
from initaudit.report.provenance import with_provenance

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
RNG = np.random.default_rng(20)


def _external(m, index: int, location: str, offset: int, length: int) -> None:
    init = m.graph.initializer[index]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        init.external_data.add(key=key, value=value)


def three_files(tmp_path: Path) -> Path:
    """Three MatMul weights: two in ``a.bin`` (one after the other), one in ``data/b.bin``."""
    ws = [xavier_uniform(RNG, (16, 8), 16, 8) for _ in range(3)]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(3)]
    m = model(nodes, [tensor(f"w{i}", w) for i, w in enumerate(ws)], outputs=["y0", "y1", "y2"])
    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "a.bin").write_bytes(ws[0].tobytes() + ws[1].tobytes())
    (folder / "data" / "b.bin").write_bytes(ws[2].tobytes())
    _external(m, 0, "a.bin", 0, 512)
    _external(m, 1, "a.bin", 512, 512)
    _external(m, 2, "data/b.bin", 0, 512)
    return save(m, folder)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_is_hashed_once(tmp_path):
    path = three_files(tmp_path)
    report = with_provenance(initaudit.audit(path, jobs=1))
    files = report.models[0].files
    assert [(f.path, f.role) for f in files] == [(str(path), "model"), ("a.bin", "external data"),
                                                 ("data/b.bin", "external data")]
    for f, on_disk in zip(files, (path, path.parent / "a.bin", path.parent / "data" / "b.bin")):
        assert f.size == on_disk.stat().st_size and f.sha256 == _sha(on_disk)
    assert files[1].size == 1024 and files[2].size == 512


def test_an_inline_model_is_one_file_and_an_unreadable_one_none(tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:3000])
    report = with_provenance(initaudit.audit([SAMPLES / "lenet_xavier.onnx", cut], errors="report", jobs=1))
    good, bad = report.models
    assert [(f.role, f.size, f.sha256) for f in good.files] == [
        ("model", (SAMPLES / "lenet_xavier.onnx").stat().st_size, _sha(SAMPLES / "lenet_xavier.onnx"))]
    assert bad.files == ()


def test_the_command_line_records_the_run_in_json(tmp_path, monkeypatch):
    path = three_files(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.initaudit]\nfail-on = "warn"\ndrift-limit = 50\n')
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.json"
    before = datetime.now(UTC).replace(microsecond=0)
    assert main([str(path), "--profile", "trained", "--format", "json", "-o", str(out)]) in (0, 1)
    data = json.loads(out.read_text())
    p = data["provenance"]
    assert p["command"] == f"initaudit {path} --profile trained --format json -o {out}"
    when = datetime.strptime(p["time_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= when <= before + timedelta(seconds=60)
    assert p["config"] == str(tmp_path / "pyproject.toml")
    assert p["options"]["profile"] == "trained" and p["options"]["fail_on"] == "warn"  # flag and config
    assert p["options"]["drift_limit"] == 50 and p["options"]["target"] == "xavier"   # config and default
    assert p["initaudit"] == data["initaudit"] and set(p["versions"]) == {"python", "numpy", "onnx"}
    m = data["model"]
    assert m["sha256"] == _sha(path) and m["bytes"] == path.stat().st_size
    assert m["external_data"] == [
        {"location": "a.bin", "bytes": 1024, "sha256": _sha(path.parent / "a.bin")},
        {"location": "data/b.bin", "bytes": 512, "sha256": _sha(path.parent / "data" / "b.bin")}]


def test_no_config_and_the_table_format_hashes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(SAMPLES / "lenet_xavier.onnx"), "--format", "json", "--config", "/dev/null"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["config"] is None
    import initaudit.report.provenance as provenance

    monkeypatch.setattr(provenance, "file_sha256", lambda fd: pytest.fail("hashed for the table"))
    assert main([str(SAMPLES / "lenet_xavier.onnx")]) == 0


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_markdown_and_html_name_what_was_reviewed(tmp_path, fmt):
    path = three_files(tmp_path)
    report = with_provenance(initaudit.audit(path, jobs=1, profile="trained", histograms=fmt == "html"),
                             {"profile": "trained", "target": "xavier"}, [str(path), "--format", fmt],
                             now=datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC))
    text = render(report, fmt)
    for needle in (_sha(path), _sha(path.parent / "a.bin"), _sha(path.parent / "data" / "b.bin"),
                   f"initaudit {path} --format {fmt}", "2026-05-04T03:02:01Z", "profile trained; target xavier",
                   f"{path.stat().st_size:,} bytes", "1,024 bytes (1.0 KiB)", "initaudit-tests", "17 (IR version 9)"):
        assert needle in text, needle
    assert re.search(r"total size(?:</th><td>| \| )" + re.escape(f"{path.stat().st_size + 1536:,} bytes"), text)
