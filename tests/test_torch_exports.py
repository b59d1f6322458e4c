"""Fans and matches on models exported by PyTorch (both exporters), against torch's own numbers.

The fixtures and ``expected.json`` come from ``scripts/make_torch_fixtures.py``;
torch itself is not needed here.  Each torch parameter is found in the ONNX file
by its values (quantiles), whatever the exporter named, transposed or reordered.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import initaudit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torch"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
QUANTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
CASES = [(name, exporter, file) for name, spec in EXPECTED["models"].items()
         for exporter, file in spec["files"].items()]


def stored_tensors(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def find(tensors: dict[str, np.ndarray], param: dict) -> list[str]:
    count = int(np.prod(param["shape"]))
    return [name for name, values in tensors.items()
            if values.size == count and values.dtype.kind == "f"
            and np.allclose(np.quantile(values, QUANTILES), param["quantiles"], rtol=1e-3, atol=1e-7)]


@pytest.mark.parametrize("name,exporter,file", CASES, ids=[f"{n}-{e}" for n, e, _ in CASES])
def test_every_parameter_listed_with_torch_fans(name, exporter, file):
    path = FIXTURES / file
    tensors = stored_tensors(path)
    reports = {conv: {layer.name: layer for layer in initaudit.audit(path, convention=conv).models[0].layers}
               for conv in ("connectivity", "pytorch")}
    for param in EXPECTED["models"][name]["params"]:
        names = find(tensors, param)
        assert names, f"{param['param']} not found in {file}"
        layer = next((reports["connectivity"][n] for n in names if n in reports["connectivity"]), None)
        assert layer is not None, f"{param['param']} ({names}) not listed for {file}"
        if param["module"] == "Embedding":
            assert layer.op == "Gather" and any(f.code == "IA901" for f in layer.findings)
            continue
        assert layer.fans["pytorch"].as_list() == param["torch_fans"], param["param"]
        if param["connectivity"]:
            assert layer.fans["connectivity"].as_list() == param["connectivity"], param["param"]
        if param["rule"]:
            under = reports[param["rule_convention"]][layer.name]
            assert param["rule"] in under.matches, (param["param"], under.matches, under.ratio)


def test_lenet_with_torch_default_init_fails_against_xavier():
    for exporter in ("legacy", "dynamo"):
        report = initaudit.audit(FIXTURES / f"lenet_default.{exporter}.onnx")
        model = report.models[0]
        assert [layer.op for layer in model.layers] == ["Conv", "Conv", "Gemm", "Gemm", "Gemm"]
        assert all("torch_default" in layer.matches for layer in model.layers)
        assert model.status == "fail" and report.exit_code == 1
        fc1 = model.layers[2]
        assert (fc1.fan_in, fc1.fan_out) == (400, 120) and fc1.status == "fail"
        assert fc1.ratio == pytest.approx(0.217, rel=0.05)  # (1/1200) / (2/520)


def test_packed_attention_projection_has_per_part_fans():
    for exporter in ("legacy", "dynamo"):
        model = initaudit.audit(FIXTURES / f"encoder_default.{exporter}.onnx").models[0]
        packed = next(layer for layer in model.layers if layer.shape == (16, 48))
        assert (packed.fan_in, packed.fan_out) == (16, 16)
        assert [p.name for p in packed.parts] == ["q", "k", "v"]
        assert any(f.code == "IA103" for f in packed.findings)
        assert all(p.ratio == pytest.approx(0.5, rel=0.2) for p in packed.parts)


def test_recurrent_gates_are_parts():
    model = initaudit.audit(FIXTURES / "recurrent_xavier.legacy.onnx").models[0]
    lstm_w = next(layer for layer in model.layers if layer.op == "LSTM" and layer.shape == (1, 80, 10))
    assert [p.name for p in lstm_w.parts] == ["forward.i", "forward.o", "forward.f", "forward.c"]
    assert all(p.stats.count == 200 for p in lstm_w.parts)
    assert (lstm_w.fan_in, lstm_w.fan_out) == (10, 20)
