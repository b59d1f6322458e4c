"""Schemes, matches, targets (auto), profiles, suggestions and signal drift."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import helper

import initaudit
from initaudit.judge.schemes import calculate_gain, scheme_variance
from initaudit.judge.verdict import matches, orthogonal_gain, pathologies, verdict
from initaudit.measure.stats import stats_of
from initaudit.trace.fans import Fans

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torch"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FANS = Fans(300, 100)


@pytest.mark.parametrize("rule", ["xavier", "he_fan_in", "he_fan_out", "lecun", "torch_default"])
@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_each_rule_is_matched_when_drawn(rule, draw):
    rng = np.random.default_rng(len(rule))
    std = math.sqrt(scheme_variance(rule, FANS))
    for _ in range(50):
        w = rng.uniform(-math.sqrt(3) * std, math.sqrt(3) * std, 30_000) if draw == "uniform" \
            else rng.normal(0, std, 30_000)
        found = matches(stats_of(w), FANS)
        assert rule in found
        assert "other" not in found


def test_matches_tell_close_rules_apart_and_zero():
    w = np.random.default_rng(0).normal(0, math.sqrt(scheme_variance("lecun", FANS)), 30_000)
    assert matches(stats_of(w), FANS) == ("lecun",)  # 1/300 vs xavier 1/200, torch_default 1/900
    assert matches(stats_of(np.zeros(100)), FANS) == ("zero",)
    assert matches(stats_of(np.random.default_rng(1).normal(0, 5, 1000)), FANS) == ("other",)


def test_orthogonal_detection():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(128, 64)))
    assert orthogonal_gain(q.T * 1.5) == pytest.approx(1.5)
    assert orthogonal_gain(q) == pytest.approx(1.0)
    assert orthogonal_gain(rng.normal(0, 0.1, (64, 128))) is None


def test_orthogonal_in_matches_from_a_model(tmp_path):
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(64, 64)))
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", q.astype(np.float32))])
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert "orthogonal" in layer.matches


def test_calculate_gain_table():
    assert calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert calculate_gain("tanh") == pytest.approx(5 / 3)
    assert calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert calculate_gain("selu") == 0.75 and calculate_gain("sigmoid") == 1.0
    with pytest.raises(ValueError):
        calculate_gain("gelu")


def _mlp_with(activation: str | None, **attrs) -> object:
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1, name="fc"),
             helper.make_node("Add", ["h", "b"], ["hb"])]
    out = "hb"
    inits = [tensor("w", xavier_uniform(rng, (32, 64), 64, 32)), tensor("b", np.zeros(32, np.float32))]
    if activation == "PRelu":
        inits.append(tensor("slope", np.array([0.1, 0.3], np.float32)))  # per channel: mean 0.2
        nodes.append(helper.make_node("PRelu", [out, "slope"], ["y"]))
    elif activation:
        nodes.append(helper.make_node(activation, [out], ["y"], **attrs))
    else:
        nodes.append(helper.make_node("Identity", [out], ["y"]))
    return model(nodes, inits)


@pytest.mark.parametrize("activation,attrs,target,gain", [
    ("Relu", {}, "he", math.sqrt(2)),
    ("LeakyRelu", {"alpha": 0.2}, "he", math.sqrt(2 / 1.04)),
    ("PRelu", {}, "he", math.sqrt(2 / 1.04)),
    ("Tanh", {}, "xavier", 5 / 3),
    ("Sigmoid", {}, "xavier", 1.0),
    ("Selu", {}, "lecun", 1.0),
    ("Clip", {"min": 0.0, "max": 6.0}, "he", math.sqrt(2)),
    ("Clip", {"min": -1.0, "max": 1.0}, "xavier", 1.0),
    (None, {}, "xavier", 1.0),
])
def test_auto_target_follows_the_activation(tmp_path, activation, attrs, target, gain):
    layer = initaudit.audit(save(_mlp_with(activation, **attrs), tmp_path), target="auto").models[0].layers[0]
    assert layer.target == target and layer.gain == pytest.approx(gain)
    assert layer.target_reason
    expected = {"he": gain**2 / 64, "xavier": gain**2 * 2 / 96, "lecun": 1 / 64}[target]
    assert layer.target_var == pytest.approx(expected)


def test_auto_target_on_exported_models():
    res = initaudit.audit(FIXTURES / "resblock_kaiming.legacy.onnx", target="auto").models[0]
    assert [layer.target for layer in res.layers] == ["he", "he"]  # conv → BN → ReLU, conv → BN → +x → ReLU
    assert all(layer.status == "ok" for layer in res.layers)  # kaiming_normal_(fan_out) with square convs
    lenet = initaudit.audit(FIXTURES / "lenet_default.dynamo.onnx", target="auto").models[0]
    assert [layer.target for layer in lenet.layers] == ["he", "he", "he", "he", "xavier"]


def test_trained_profile_is_wide_but_keeps_pathologies():
    rng = np.random.default_rng(6)
    w = rng.normal(0, math.sqrt(2.5 * 2 / 400), 20_000)
    assert verdict(stats_of(w), Fans(200, 200), "xavier").status_findings[0].severity == "fail"
    assert verdict(stats_of(w), Fans(200, 200), "xavier", profile="trained").status_findings == ()
    shifted = rng.normal(0.5, 0.5, 10_000)
    codes = [f.code for f in pathologies(stats_of(shifted), "trained")]
    assert codes == ["IA204"]
    big = np.concatenate([rng.normal(0, 1, 1000), [1e5]])
    assert [f.code for f in pathologies(stats_of(big), "trained", fp16=True)] == ["IA206"]
    assert pathologies(stats_of(big), "trained", fp16=False) == []


def test_suggestions(tmp_path):
    lenet = {layer.name: layer for layer in initaudit.audit(SAMPLES / "lenet_torch_default.onnx").models[0].layers}
    fc1 = lenet["fc1.weight"]
    assert fc1.suggestion.scale == pytest.approx(math.sqrt(fc1.target_var / fc1.stats.var))
    assert fc1.suggestion.pytorch == "torch.nn.init.xavier_uniform_(w)"
    assert fc1.suggestion.keras == "keras.initializers.GlorotUniform()"
    assert fc1.suggestion.jax == "jax.nn.initializers.glorot_uniform()"
    auto = initaudit.audit(SAMPLES / "lenet_torch_default.onnx", target="auto").models[0].layers[2].suggestion
    assert auto.pytorch == "torch.nn.init.kaiming_uniform_(w, nonlinearity='relu')"
    assert auto.jax == "jax.nn.initializers.he_uniform()"
    # depthwise: torch's own fans (9, 288) would not give the connectivity target, so an explicit bound
    rng = np.random.default_rng(8)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], group=32)],
              [tensor("w", rng.normal(0, 1, (32, 1, 3, 3)).astype(np.float32))])
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    bound = math.sqrt(3 * 2 / 18)
    assert layer.suggestion.pytorch == f"torch.nn.init.uniform_(w, -{bound:.6g}, {bound:.6g})"
    assert initaudit.audit(SAMPLES / "lenet_xavier.onnx").models[0].layers[0].suggestion is None


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
