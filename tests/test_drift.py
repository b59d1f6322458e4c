"""Signal propagation (``judge/drift.py``, IA104): the estimated activation variance along the longest chain
of layers, against the drift limit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torch"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def test_signal_drift_flags_a_vanishing_model():
    model_report = initaudit.audit(SAMPLES / "lenet_torch_default.onnx").models[0]
    (finding,) = model_report.findings
    assert finding.code == "IA104" and "shrink" in finding.message
    # five layers at ≈ 1/6 (conv, fc with ReLU: fan_in·1/(3·fan_in)·½) and one at 1/3
    assert model_report.signal_gain == pytest.approx(1 / (6**4 * 3), rel=0.15)
    assert initaudit.audit(SAMPLES / "lenet_torch_default.onnx", drift_limit=1e4).models[0].findings == ()
    he_like = initaudit.audit(FIXTURES / "resblock_kaiming.legacy.onnx").models[0]
    assert he_like.findings == ()


def test_signal_drift_of_a_very_deep_model_does_not_overflow(tmp_path):
    rng = np.random.default_rng(9)
    nodes, inits, x = [], [], "x"
    for i in range(400):  # each layer shrinks the signal ~100×: 10^-800 overall
        inits.append(tensor(f"w{i}", rng.normal(0, 0.025, (16, 16)).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"]))
        x = f"h{i}"
    report = initaudit.audit(save(model(nodes, inits, outputs=(x,)), tmp_path)).models[0]
    (finding,) = report.findings
    assert "chain of 400 layers" in finding.message and "10^" in finding.message
    assert report.signal_gain is not None and report.signal_gain >= 0
