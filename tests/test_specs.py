"""The model policy wiring (pipeline/specs.py): how each measured layer enters the policy inference."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit

#: N(0, 0.02) layers on fans where no fan-based scheme gives 0.02 (Xavier needs fan_in + fan_out = 5000,
#: LeCun fan_in = 2500, He 5000, PyTorch's default fan_in = 833): the only explanation is a fixed std
FANS = [(64, 192), (64, 256), (256, 64), (128, 128), (96, 160)]


def fixed_std_model(tmp_path, alpha_std: float, alpha: float = 2.0):
    """Five MatMuls of N(0, 0.02) and one Gemm ``alpha``·x·W with W of std ``alpha_std`` [128, 64]."""
    rng = np.random.default_rng(21)
    nodes, inits = [], []
    for i, (fi, fo) in enumerate(FANS):
        nodes.append(helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"mm{i}"))
        inits.append(tensor(f"w{i}", rng.normal(0.0, 0.02, (fi, fo)).astype(np.float32)))
    nodes.append(helper.make_node("Gemm", ["x", "g"], ["yg"], name="gemm", alpha=alpha))
    inits.append(tensor("g", rng.normal(0.0, alpha_std, (128, 64)).astype(np.float32)))
    outputs = [f"y{i}" for i in range(len(FANS))] + ["yg"]
    return save(model(nodes, inits, outputs=outputs), tmp_path)


def test_a_gemm_alpha_folds_into_the_variance_the_policy_sees(tmp_path):
    """alpha = 2, std 0.01: the layer computes 2·W, of std 2 · 0.01 = 0.02, the policy's std."""
    report = initaudit.audit(fixed_std_model(tmp_path, 0.01), jobs=1).models[0]
    policy = report.policy
    assert policy is not None and policy.kind == "std"
    assert [g.std for g in policy.groups] == [0.02]
    assert len(policy.followers) == 6 and "g" in policy.follower_names
    gemm = next(layer for layer in report.layers if layer.name == "g")
    assert "std:0.02" in gemm.matches
    assert not any(f.code == "IA501" for f in gemm.findings)


def test_a_gemm_alpha_layer_at_the_raw_policy_std_breaks_it(tmp_path):
    """alpha = 2, std 0.02: the layer computes 2·W, of std 0.04, four times the policy's variance."""
    report = initaudit.audit(fixed_std_model(tmp_path, 0.02), jobs=1).models[0]
    assert report.policy is not None and [g.std for g in report.policy.groups] == [0.02]
    gemm = next(layer for layer in report.layers if layer.name == "g")
    [breach] = [f for f in gemm.findings if f.code == "IA501"]
    effective = float(breach.message.split("std ", 1)[1].split(")")[0].split(",")[0])
    assert effective == pytest.approx(0.04, rel=0.03)
    assert "g" not in report.policy.follower_names
