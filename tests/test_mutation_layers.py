"""layers.py: the He target's gain, packed projections split into parts, the IA103 note. Written from the
survivors of a mutmut run over layers.py (docs/mutation.md); expected values by hand and numpy float64."""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit

RNG = np.random.default_rng(23)


def layer_of(tmp_path, m, name="w", **options):
    layers = {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), **options).models[0].layers}
    return layers[name]


def test_he_target_carries_gain_sqrt2(tmp_path):
    w = RNG.normal(0, 0.1, (24, 10)).astype(np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    layer = layer_of(tmp_path, m, target="he")
    # He: variance 2 / fan_in, fan_in = 24
    assert layer.gain == pytest.approx(math.sqrt(2.0))
    assert layer.ratio == pytest.approx(np.asarray(w, np.float64).var() / (2 / 24), rel=1e-6)


def packed(w, outputs):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Split", ["h"], [f"o{i}" for i in range(outputs)], axis=-1, num_outputs=outputs)]
    return model(nodes, [tensor("w", w)], outputs=[f"o{i}" for i in range(outputs)], opset=18)


def test_packed_kv_projection(tmp_path):
    # W[16, 32] split in two along the output axis: k and v, each 16 → 16
    w = RNG.normal(0, 0.2, (16, 32)).astype(np.float32)
    layer = layer_of(tmp_path, packed(w, 2))
    assert [p.name for p in layer.parts] == ["k", "v"]
    assert (layer.fan_in, layer.fan_out) == (16, 16) and type(layer.fan_out) is int
    assert [p.stats.count for p in layer.parts] == [256, 256]
    assert layer.parts[1].stats.var == pytest.approx(np.asarray(w[:, 16:], np.float64).var(), rel=1e-6)
    (note,) = [f for f in layer.findings if f.code == "IA103"]
    # packed Xavier: 2/(16+32); per part: 2/(16+16); the packed one holds (16+16)/(16+32) = 0.67× the per-part
    assert note.message == ("2 parts (k, v) used as separate matrices: fans are those of one part; a Xavier "
                            "init of the packed tensor (fans 16/32) holds 0.67× the per-part Xavier variance")


def test_packed_into_one_unit_each(tmp_path):
    # W[16, 4] split in four: four projections of a single output unit
    w = RNG.normal(0, 0.2, (16, 4)).astype(np.float32)
    layer = layer_of(tmp_path, packed(w, 4))
    assert [p.name for p in layer.parts] == ["part0", "part1", "part2", "part3"]
    assert (layer.fan_in, layer.fan_out) == (16, 1)
    assert [p.stats.count for p in layer.parts] == [16] * 4
