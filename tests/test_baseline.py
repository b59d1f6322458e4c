"""Baselines: adopt initaudit on a model with known findings, fail only on new ones, survive re-exports."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, tensor, xavier_uniform
from onnx import helper

from initaudit.cli.main import main

RNG = np.random.default_rng(7)
GOOD = {"w1": xavier_uniform(RNG, (64, 64), 64, 64), "w2": xavier_uniform(RNG, (64, 64), 64, 64)}
BAD = {"w1": RNG.normal(0, 1.0, (64, 64)).astype(np.float32), "w2": RNG.normal(0, 1.0, (64, 64)).astype(np.float32)}
ZERO = np.zeros((64, 64), np.float32)


def _export(path: Path, weights: dict[str, np.ndarray], names: dict[str, str], node_prefix: str,
            producer: str = "exporter-a") -> None:
    """A three-MatMul chain; ``names`` maps each logical weight to its tensor name in this export."""
    order = ["w1", "w2", "w3"]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", names[w]], ["y" if i == 2 else f"h{i + 1}"],
                              name=f"{node_prefix}{i}") for i, w in enumerate(order)]
    inits = [tensor(names[w], weights[w]) for w in reversed(order)]  # another initializer order, too
    m = model(nodes, inits)
    m.producer_name = producer
    path.write_bytes(m.SerializeToString())


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_adopt_then_survive_a_re_export(project, capsys):
    path = project / "models" / "net.onnx"
    weights = {"w1": GOOD["w1"], "w2": BAD["w2"], "w3": ZERO}  # two findings today: w2 IA101, w3 IA202
    _export(path, weights, {"w1": "w1", "w2": "w2", "w3": "w3"}, "/MatMul_")
    assert run(capsys, path)[0] == 1
    code, _, err = run(capsys, path, "--write-baseline", "initaudit-baseline.json")
    assert code == 0 and "recorded 2 findings" in err
    recorded = json.loads((project / "initaudit-baseline.json").read_text())["findings"]
    assert {(e["layer"], e["code"]) for e in recorded} == {("w2", "IA101"), ("w3", "IA202")}
    assert {e["model"] for e in recorded} == {"models/net.onnx"}

    # the same weights re-exported: nodes renumbered, an anonymous name for w3, another producer
    _export(path, weights, {"w1": "w1", "w2": "w2", "w3": "onnx::MatMul_93"}, "node_", producer="exporter-b")
    code, out, _ = run(capsys, path, "--baseline", "initaudit-baseline.json")
    assert code == 0 and "baseline initaudit-baseline.json: 0 new, 2 unchanged, 0 gone" in out


def test_new_findings_fail_gone_ones_are_listed(project, capsys):
    path = project / "models" / "net.onnx"
    names = {"w1": "w1", "w2": "w2", "w3": "w3"}
    _export(path, {"w1": GOOD["w1"], "w2": BAD["w2"], "w3": ZERO}, names, "n")
    run(capsys, path, "--write-baseline", "base.json")
    _export(path, {"w1": BAD["w1"], "w2": GOOD["w2"], "w3": ZERO}, names, "n")  # w1 broke, w2 was fixed
    code, out, _ = run(capsys, path, "--baseline", "base.json")
    assert code == 1
    assert "baseline base.json: 1 new, 1 unchanged, 1 gone" in out and "gone: models/net.onnx w2 IA101" in out
    code, out, _ = run(capsys, path, "--baseline", "base.json", "--format", "json")
    data = json.loads(out)
    states = {(layer["name"], f["code"]): f["baseline"] for layer in data["layers"] for f in layer["findings"]}
    assert states == {("w1", "IA101"): "new", ("w3", "IA202"): "unchanged"}
    assert data["baseline"]["new"] == 1 and [g["layer"] for g in data["baseline"]["gone"]] == ["w2"]
    assert data["exit_code"] == 1
    code, out, _ = run(capsys, path, "--baseline", "base.json", "--format", "sarif")
    results = json.loads(out)["runs"][0]["results"]
    assert sorted(r["baselineState"] for r in results) == ["new", "unchanged"]
    code, out, _ = run(capsys, path, "--baseline", "base.json", "--format", "html")
    assert "baseline base.json: 1 new, 1 unchanged, 1 gone" in out and "gone: models/net.onnx w2 IA101" in out
    code, out, _ = run(capsys, path, "--baseline", "base.json", "--format", "junit")
    assert sum(int(suite.get("failures")) for suite in ET.fromstring(out).iter("testsuite")) == 1


def test_baseline_matches_by_fingerprint_not_position(project, capsys):
    path = project / "models" / "net.onnx"
    _export(path, {"w1": BAD["w1"], "w2": GOOD["w2"], "w3": ZERO}, {"w1": "w1", "w2": "w2", "w3": "w3"}, "n")
    run(capsys, path, "--write-baseline", "base.json")
    # the findings swap places (w1 fine now, w2 bad): same count and positions of findings, still one new
    _export(path, {"w1": GOOD["w1"], "w2": BAD["w2"], "w3": ZERO}, {"w1": "w1", "w2": "w2", "w3": "w3"}, "n")
    code, out, _ = run(capsys, path, "--baseline", "base.json")
    assert code == 1 and "1 new, 1 unchanged, 1 gone" in out


def test_baseline_works_from_another_working_directory(project, capsys, monkeypatch):
    path = project / "models" / "net.onnx"
    _export(path, {"w1": GOOD["w1"], "w2": BAD["w2"], "w3": ZERO}, {"w1": "w1", "w2": "w2", "w3": "w3"}, "n")
    run(capsys, path, "--write-baseline", "base.json")
    monkeypatch.chdir(project / "models")
    code, out, _ = run(capsys, "net.onnx", "--baseline", "../base.json")
    assert code == 0 and "0 new, 2 unchanged, 0 gone" in out


@pytest.mark.parametrize("content", [None, "not json", '{"findings": []}'])
def test_bad_baseline_file_is_one_line_exit_2(project, capsys, content):
    if content is not None:
        (project / "base.json").write_text(content)
    path = project / "models" / "net.onnx"
    _export(path, {"w1": GOOD["w1"], "w2": GOOD["w2"], "w3": GOOD["w1"]}, {"w1": "a", "w2": "b", "w3": "c"}, "n")
    code, out, err = run(capsys, path, "--baseline", "base.json")
    assert code == 2 and out == "" and err.count("\n") == 1 and "base.json" in err


def test_a_finding_still_matches_when_an_earlier_finding_of_its_layer_is_fixed(project, capsys):
    """w2 today: N(0.3, 1) on 64×64, a mean shift (IA204, listed first) and 8× Xavier's std (IA101, second).
    Its mean is then fixed (N(0, 1), new values): IA101 moves to the first place of the layer's list and its
    content changed, so only a fingerprint independent of the finding's position can still match it."""
    path = project / "models" / "net.onnx"
    names = {"w1": "w1", "w2": "w2", "w3": "w3"}
    rng = np.random.default_rng(8)
    shifted = rng.normal(0.3, 1.0, (64, 64)).astype(np.float32)
    _export(path, {"w1": GOOD["w1"], "w2": shifted, "w3": GOOD["w2"]}, names, "n")
    run(capsys, path, "--write-baseline", "base.json")
    recorded = json.loads((project / "base.json").read_text())["findings"]
    assert [(e["layer"], e["code"]) for e in recorded] == [("w2", "IA204"), ("w2", "IA101")]
    centred = rng.normal(0.0, 1.0, (64, 64)).astype(np.float32)
    _export(path, {"w1": GOOD["w1"], "w2": centred, "w3": GOOD["w2"]}, names, "n")
    code, out, _ = run(capsys, path, "--baseline", "base.json", "--format", "json")
    data = json.loads(out)
    states = {(layer["name"], f["code"]): f["baseline"] for layer in data["layers"] for f in layer["findings"]}
    assert states == {("w2", "IA101"): "unchanged"}
    assert code == 0 and [(g["layer"], g["code"]) for g in data["baseline"]["gone"]] == [("w2", "IA204")]
