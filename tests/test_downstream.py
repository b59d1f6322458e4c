"""The scalar a layer's data input is multiplied by on its way in (PP-HGNet's learnable affine block),
which the trained review counts in the layer's gain."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper
from trainedkit import trained_like

import initaudit


def _lab_conv(tmp_path, prefix_nodes, inits, name="m.onnx"):
    w = np.random.default_rng(0).normal(0.0, 0.1, (8, 8, 3, 3)).astype(np.float32)
    nodes = [*prefix_nodes, helper.make_node("Conv", ["h", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return initaudit.audit(save(model(nodes, [tensor("w", w), *inits]), tmp_path, name), jobs=1).models[0].layers[0]


@pytest.mark.parametrize("prefix, inits, expected", [
    # x·s + b, the learnable affine block
    ([helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "b"], ["h"])],
     [tensor("s", np.array([0.005], np.float32)), tensor("b", np.array([0.1], np.float32))], 0.005),
    ([helper.make_node("Mul", ["s", "x"], ["h"])], [tensor("s", np.array(4.0, np.float32))], 4.0),
    ([helper.make_node("Div", ["x", "s"], ["h"])], [tensor("s", np.array([8.0], np.float32))], 0.125),
    # two multipliers in a row multiply
    ([helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Mul", ["m", "t"], ["h"])],
     [tensor("s", np.array([0.5], np.float32)), tensor("t", np.array([3.0], np.float32))], 1.5),
    # a per-channel multiplier is not a scalar: not counted
    ([helper.make_node("Mul", ["x", "s"], ["h"])], [tensor("s", np.full((1, 8, 1, 1), 0.5, np.float32))], 1.0),
    # a nonlinearity ends the walk
    ([helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Relu", ["m"], ["h"])],
     [tensor("s", np.array([0.5], np.float32))], 1.0),
])
def test_input_multiplier_of_a_conv(tmp_path, prefix, inits, expected):
    assert _lab_conv(tmp_path, prefix, inits).input_scale == pytest.approx(expected, rel=1e-6)


def _chain(weights, multipliers):
    """Conv → Relu → …; layer i's input multiplied by ``multipliers[i]`` when given."""
    nodes, inits, current = [], [], "x"
    for i, w in enumerate(weights):
        if i in multipliers:
            nodes.append(helper.make_node("Mul", [current, f"s{i}"], [f"lab{i}"]))
            inits.append(tensor(f"s{i}", np.array([multipliers[i]], np.float32)))
            current = f"lab{i}"
        nodes.append(helper.make_node("Conv", [current, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        current = "y" if i == len(weights) - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [current]))
        inits.append(tensor(f"w{i}", w.astype(np.float32)))
    return model(nodes, inits)


def test_a_layer_behind_a_small_input_multiplier_is_not_a_scale_outlier(tmp_path):
    """PP-OCRv5's detector: convs whose input a stored scalar of ~0.005 scales hold weights ~200× their
    peers'; their gain on the signal is like the others', so IA403 stays quiet.  The same weights
    without the multiplier are flagged."""
    rng = np.random.default_rng(1)
    weights = [trained_like(rng, (16, 16, 3, 3)) for _ in range(8)]
    weights[3], weights[6] = weights[3] / 0.005, weights[6] / 0.005
    for multipliers, flagged in (({3: 0.005, 6: 0.005}, []), ({}, ["w3", "w6"])):
        path = save(_chain(weights, multipliers), tmp_path, f"m{len(multipliers)}.onnx")
        layers = initaudit.audit(path, jobs=1, profile="trained").models[0].layers
        assert sorted(x.name for x in layers if any(f.code == "IA403" for f in x.findings)) == flagged
        assert [x.input_scale for x in layers] == pytest.approx([multipliers.get(i, 1.0) for i in range(8)])
