"""The model policy wiring (pipeline/specs.py): how each measured layer enters the policy inference."""
from __future__ import annotations

import math

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


def xavier_matrix(rng, fi: int, fo: int, gain: float = 1.0) -> np.ndarray:
    bound = gain * math.sqrt(6.0 / (fi + fo))
    return rng.uniform(-bound, bound, (fi, fo)).astype(np.float32)


def matmuls(tmp_path, weights: dict[str, np.ndarray], extra_nodes=(), extra_inits=(), name="model.onnx"):
    nodes = [helper.make_node("MatMul", ["x", n], [f"y_{n}"], name=f"/{n}/MatMul") for n in weights]
    nodes += list(extra_nodes)
    outputs = [f"y_{n}" for n in weights] + [o for node in extra_nodes for o in node.output]
    return save(model(nodes, [tensor(n, w) for n, w in weights.items()] + list(extra_inits), outputs=outputs),
                tmp_path, name)


XAVIER_FANS = [(64, 128), (128, 96), (96, 200), (200, 64)]


def test_an_ignored_layer_takes_no_part_in_the_policy(tmp_path):
    rng = np.random.default_rng(40)
    weights = {f"w{i}": xavier_matrix(rng, fi, fo) for i, (fi, fo) in enumerate(XAVIER_FANS)}
    weights["tied"] = rng.uniform(-1 / 8, 1 / 8, (64, 64)).astype(np.float32)  # torch's default, ignored
    rules = ({"match": "tied", "ignore": "tied to the embedding"},)
    report = initaudit.audit(matmuls(tmp_path, weights), layers=rules, jobs=1).models[0]
    assert report.policy is not None and report.policy.layers == 4
    assert sorted(report.policy.follower_names) == ["w0", "w1", "w2", "w3"]
    tied = next(layer for layer in report.layers if layer.name == "tied")
    assert [f.code for f in tied.findings] == ["IA502"]


def test_a_rule_on_an_op_reaches_that_op_supported_or_not(tmp_path):
    rng = np.random.default_rng(41)
    weights = {f"w{i}": xavier_matrix(rng, fi, fo) for i, (fi, fo) in enumerate(XAVIER_FANS)}
    custom = helper.make_node("Fancy", ["x", "c"], ["y_c"], name="/fancy", domain="com.example.ops")
    path = matmuls(tmp_path, weights, [custom], [tensor("c", rng.normal(0, 1, (32, 32)).astype(np.float32))])
    rules = ({"match": "w0", "op": "MatMul", "target": "lecun"}, {"match": "*", "op": "Fancy", "ignore": "not ours"})
    report = initaudit.audit(path, layers=rules, jobs=1).models[0]
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["w0"].target == "lecun" and by_name["w1"].target == "xavier"
    assert [f.code for f in by_name["c"].findings] == ["IA502"]
    assert report.rules_matched == (1, 2)  # rules are numbered from 1, as in messages


def test_only_clean_layers_with_a_spread_enter_the_policy(tmp_path):
    """Four N(0, 0.02) layers, one of two values ±0.02 (var 0.0004: in), one with a NaN and one constant (out)."""
    rng = np.random.default_rng(42)
    weights = {f"w{i}": rng.normal(0, 0.02, shape).astype(np.float32) for i, shape in enumerate(FANS[:4])}
    weights["pair"] = np.array([[0.02, -0.02]], np.float32)
    nan = rng.normal(0, 0.02, (64, 64)).astype(np.float32)
    nan[3, 5] = np.nan
    weights["nan"] = nan
    weights["flat"] = np.full((64, 64), 0.5, np.float32)
    report = initaudit.audit(matmuls(tmp_path, weights), jobs=1).models[0]
    assert report.policy is not None and report.policy.kind == "std"
    assert report.policy.layers == 5 and sorted(report.policy.follower_names) == ["pair", "w0", "w1", "w2", "w3"]
    # under --target auto the constant layer is not held to the nearest std group (it has no spread to compare)
    auto = {layer.name: layer for layer in initaudit.audit(tmp_path / "model.onnx", target="auto", jobs=1).models[0].layers}
    assert {f.code for f in auto["flat"].findings} == {"IA203"} and auto["flat"].target != "std:0.02"
    assert auto["w0"].target == "std:0.02"


def test_a_gemm_alpha_scales_the_schemes_a_layer_matches(tmp_path):
    """Four Xavier MatMuls and a Gemm 2·W with W at half Xavier's std: 2·W is Xavier, the fifth follower."""
    rng = np.random.default_rng(43)
    weights = {f"w{i}": xavier_matrix(rng, fi, fo) for i, (fi, fo) in enumerate(XAVIER_FANS)}
    gemm = helper.make_node("Gemm", ["x", "g"], ["y_g"], name="/g/Gemm", alpha=2.0)
    path = matmuls(tmp_path, weights, [gemm], [tensor("g", xavier_matrix(rng, 160, 80, gain=0.5))])
    report = initaudit.audit(path, jobs=1).models[0]
    assert report.policy is not None and (report.policy.kind, report.policy.scheme) == ("scheme", "xavier")
    assert len(report.policy.followers) == 5
    # under the convention in use: every convention has the same matrix fans, and ties go to the one in use
    assert (report.policy.convention, report.policy.label) == ("connectivity", "xavier")
    assert not any(f.code == "IA501" for layer in report.layers for f in layer.findings)


def depthwise_model(tmp_path, rng):
    """Three depthwise 3×3 convs (16 channels) drawn by torch's xavier_uniform_ on torch's fans (9, 144) and a
    Gemm 2·W with W at half Xavier: the convs match Xavier only on PyTorch's fans (connectivity: (9, 9))."""
    nodes, inits, x = [], [], "x"
    for i in range(3):
        bound = math.sqrt(6.0 / (9 + 16 * 9))
        inits.append(tensor(f"dw{i}", rng.uniform(-bound, bound, (16, 1, 3, 3)).astype(np.float32)))
        nodes.append(helper.make_node("Conv", [x, f"dw{i}"], [f"c{i}"], group=16, pads=[1, 1, 1, 1], name=f"/dw{i}"))
        x = f"c{i}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "g"], ["y"], alpha=2.0, name="/g/Gemm"))
    inits.append(tensor("g", xavier_matrix(rng, 16 * 4 * 4, 48, gain=0.5)))
    return save(model(nodes, inits, inputs=[("x", 1, [1, 16, 4, 4])]), tmp_path)


def test_a_policy_under_another_convention_sees_the_scaled_layers_too(tmp_path):
    report = initaudit.audit(depthwise_model(tmp_path, np.random.default_rng(44)), jobs=1).models[0]
    policy = report.policy
    assert policy is not None and (policy.scheme, policy.convention) == ("xavier", "pytorch")
    assert len(policy.followers) == 4 and policy.label == "xavier (pytorch fans)"
    assert not any(f.code == "IA501" for layer in report.layers for f in layer.findings)


def test_the_policy_names_the_convention_in_use(tmp_path):
    rng = np.random.default_rng(45)
    path = matmuls(tmp_path, {f"w{i}": xavier_matrix(rng, fi, fo) for i, (fi, fo) in enumerate(XAVIER_FANS)})
    default = initaudit.audit(path, jobs=1).models[0].policy
    assert default is not None and (default.convention, default.in_use, default.label) == (
        "connectivity", "connectivity", "xavier")
    keras = initaudit.audit(path, convention="keras", jobs=1).models[0].policy
    assert keras is not None and (keras.convention, keras.in_use, keras.label) == ("keras", "keras", "xavier")


def test_a_heavy_tailed_layer_is_judged_with_its_kurtosis(tmp_path):
    """Laplace values (κ = 3) at 1.07× the variance of N(0, 0.02), 16,384 of them: beyond the normal band
    (3.5·√(2/16384) ≈ 3.9 %, plus 2 %) but within the band of κ = 3 (3.5·√(5/16384) ≈ 6.1 %, plus 2 %)."""
    rng = np.random.default_rng(46)
    weights = {f"w{i}": rng.normal(0, 0.02, shape).astype(np.float32) for i, shape in enumerate(FANS[:4])}
    laplace = rng.laplace(0, 1, (128, 128))
    laplace = laplace / laplace.std() * 0.02 * math.sqrt(1.07)
    assert float(((laplace - laplace.mean()) ** 4).mean() / laplace.var() ** 2 - 3) == pytest.approx(3, abs=0.5)
    weights["heavy"] = laplace.astype(np.float32)
    report = initaudit.audit(matmuls(tmp_path, weights), jobs=1).models[0]
    assert report.policy is not None and "heavy" in report.policy.follower_names
    assert not any(f.code == "IA501" for layer in report.layers for f in layer.findings)


def test_a_trained_review_infers_no_policy(tmp_path):
    report = initaudit.audit(fixed_std_model(tmp_path, 0.01), profile="trained", jobs=1).models[0]
    assert report.policy is None
    assert initaudit.audit(fixed_std_model(tmp_path, 0.01), jobs=1).models[0].policy is not None
