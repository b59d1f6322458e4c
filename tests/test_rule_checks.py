"""Each rule's check, asserted so that removing or loosening it fails a test.

Expected values are worked out independently: counts by hand, variances with numpy in float64,
the bands' noise quantiles from the chi-square law integrated numerically (not from the
Wilson–Hilferty formula the code uses).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import TensorProto, helper

import initaudit

RNG = np.random.default_rng(1234)


def only_layer(tmp_path, m, name="w", **options):
    layers = {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), **options).models[0].layers}
    return layers[name]


def codes(layer) -> list[str]:
    return [f.code for f in layer.findings]


def matmul_model(w: np.ndarray):
    return model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])


def xavier_matrix(rows: int, cols: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (rows + cols))
    return RNG.uniform(-bound, bound, (rows, cols)).astype(np.float32)


# --- IA3xx ---------------------------------------------------------------------------------------------------------


def test_ia304_scale_computed_at_run_time(tmp_path):
    q = RNG.integers(-128, 128, (16, 8)).astype(np.int8)
    m = model([helper.make_node("DequantizeLinear", ["w", "scale"], ["w_f"]),
               helper.make_node("MatMul", ["x", "w_f"], ["y"])], [tensor("w", q)],
              inputs=[("x", TensorProto.FLOAT, None), ("scale", TensorProto.FLOAT, [])])
    layer = only_layer(tmp_path, m)
    (finding,) = [f for f in layer.findings if f.code == "IA304"]
    assert finding.severity == "warn" and "scale computed at run time" in finding.message


# --- recurrent parts -----------------------------------------------------------------------------------------------


def _gates(directions: int, hidden: int, n_in: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (n_in + hidden))  # Xavier per gate: fans (I, H)
    return RNG.uniform(-bound, bound, (directions, 4 * hidden, n_in)).astype(np.float32)


def test_lstm_one_weak_gate_fails_although_the_average_is_ok(tmp_path):
    hidden, n_in = 20, 10
    w = _gates(1, hidden, n_in)
    w[0, 2 * hidden:3 * hidden] *= 0.6  # gate f (ONNX order i, o, f, c) at 0.36× the variance
    r = _gates(1, hidden, hidden)
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=hidden)], [tensor("w", w), tensor("r", r)])
    layer = only_layer(tmp_path, m)
    target = 2.0 / (n_in + hidden)
    assert layer.ratio == pytest.approx(var64(w) / target, rel=1e-6) and 0.8 < layer.ratio < 1.25
    assert [p.name for p in layer.parts] == ["forward.i", "forward.o", "forward.f", "forward.c"]
    weak = layer.parts[2]
    assert weak.ratio == pytest.approx(var64(w[0, 40:60]) / target, rel=1e-6)
    assert weak.status == "fail"
    part_findings = [f for f in layer.findings if f.code == "IA101" and "forward.f" in f.message]
    assert len(part_findings) == 1 and layer.status == "fail"


def var64(values) -> float:
    return float(np.asarray(values, np.float64).var())


# --- Transpose without perm ----------------------------------------------------------------------------------------


def test_transpose_without_perm_reverses_the_axes(tmp_path):
    kernel = RNG.normal(0, 0.1, (3, 5, 2, 8)).astype(np.float32)  # reversed: [8, 2, 5, 3] = OIHW
    m = model([helper.make_node("Transpose", ["w"], ["w_t"]), helper.make_node("Conv", ["x", "w_t"], ["y"])],
              [tensor("w", kernel)])
    layer = only_layer(tmp_path, m)
    assert layer.layout == "WHIO"  # stored axis 0 is the consumer's W, 1 its H, 2 its I, 3 its O
    assert (layer.fan_in, layer.fan_out) == (2 * 15, 8 * 15)
