"""The scheme table (``judge/schemes.py``): each scheme is matched when drawn, torch's ``calculate_gain``, and
``--target auto`` from the activation that follows."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import helper

import initaudit
from initaudit.judge.schemes import SCHEME, calculate_gain
from initaudit.judge.verdict import matches
from initaudit.measure.stats import stats_of
from initaudit.trace.fans import Fans

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torch"
SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FANS = Fans(300, 100)


@pytest.mark.parametrize("rule", ["xavier", "he_fan_in", "he_fan_out", "lecun", "torch_default"])
@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_each_rule_is_matched_when_drawn(rule, draw):
    rng = np.random.default_rng(len(rule))
    std = math.sqrt(SCHEME[rule].variance(FANS))
    for _ in range(50):
        w = rng.uniform(-math.sqrt(3) * std, math.sqrt(3) * std, 30_000) if draw == "uniform" \
            else rng.normal(0, std, 30_000)
        found = matches(stats_of(w), FANS)
        assert rule in found
        assert "other" not in found


def test_matches_tell_close_rules_apart_and_zero():
    w = np.random.default_rng(0).normal(0, math.sqrt(SCHEME["lecun"].variance(FANS)), 30_000)
    assert matches(stats_of(w), FANS) == ("lecun",)  # 1/300 vs xavier 1/200, torch_default 1/900
    assert matches(stats_of(np.zeros(100)), FANS) == ("zero",)
    assert matches(stats_of(np.random.default_rng(1).normal(0, 5, 1000)), FANS) == ("other",)


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
