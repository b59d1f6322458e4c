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
from onnx import helper

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
