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


MS_OPSET = helper.make_opsetid("com.microsoft", 1)


def nbits_model(codes, scales, zero_input=False, **attrs):
    """MatMulNBits, 4-bit codes two to a byte (low nibble first, onnxruntime's order)."""
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    inputs = ["x", "w", "s"] + (["z"] if zero_input else [])
    node = helper.make_node("MatMulNBits", inputs, ["y"], name="nb", domain="com.microsoft", **attrs)
    graph_inputs = [("x", 1, None)] + ([("z", 2, None)] if zero_input else [])
    return model([node], [tensor("w", packed), tensor("s", scales)], inputs=graph_inputs, extra_opsets=[MS_OPSET])


def test_matmul_nbits_default_bits_is_four(tmp_path):
    # N = 8 rows, K = 32 in 2 blocks of 16; no zero points: 4-bit codes are centred on 8
    codes = RNG.integers(0, 16, (8, 2, 16))
    scales = RNG.uniform(0.01, 0.05, (8, 2)).astype(np.float32)
    layer = layer_of(tmp_path, nbits_model(codes, scales.ravel(), N=8, K=32, block_size=16))
    values = (codes - 8.0) * scales.astype(np.float64)[:, :, None]
    assert layer.stats.count == 256 and (layer.fan_in, layer.fan_out) == (32, 8)
    assert layer.stats.var == pytest.approx(values.var(), rel=1e-6)
    assert not any(f.code == "IA304" for f in layer.findings)


def test_matmul_nbits_zero_points_computed_at_run_time(tmp_path):
    codes = RNG.integers(0, 16, (8, 2, 16))
    scales = np.full(16, 0.02, np.float32)
    layer = layer_of(tmp_path, nbits_model(codes, scales, zero_input=True, N=8, K=32, bits=4, block_size=16))
    assert [f.message for f in layer.findings if f.code == "IA304"] == \
        ["MatMulNBits 'nb': scales or zero points are not constants"]


def test_unsupported_op_reads_a_constant_node(tmp_path):
    w = RNG.normal(0, 0.1, (6, 5)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=tensor("w", w)),
             helper.make_node("Mystery", ["x", "w"], ["y"], domain="custom")]
    m = model(nodes, [], extra_opsets=[helper.make_opsetid("custom", 1)])
    layer = layer_of(tmp_path, m)
    assert layer.op == "custom.Mystery" and layer.storage == "constant"
    assert [f.message for f in layer.findings if f.code == "IA301"] == \
        ["read by custom.Mystery, an op whose weight layout is unknown"]


def test_only_float_and_quantized_matrices_are_weight_candidates(tmp_path):
    nodes = [helper.make_node("Mystery", ["x", "ids", "q"], ["y"], domain="custom")]
    inits = [tensor("ids", np.arange(12, dtype=np.int64).reshape(3, 4)),
             tensor("q", np.arange(12, dtype=np.int8).reshape(3, 4))]
    m = model(nodes, inits, extra_opsets=[helper.make_opsetid("custom", 1)])
    names = [layer.name for layer in initaudit.audit(save(m, tmp_path)).models[0].layers]
    assert names == ["q"]


@pytest.mark.parametrize("std,matched", [(0.02, True), (0.2, False)])
def test_fixed_std_target_is_listed_as_a_match_only_when_it_holds(tmp_path, std, matched):
    w = RNG.normal(0, std, (64, 48)).astype(np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    layer = layer_of(tmp_path, m, target="std:0.02")
    assert ("std:0.02" in layer.matches) is matched
    assert len(set(layer.matches)) == len(layer.matches)


def test_xavier_match_listed_once(tmp_path):
    w = RNG.normal(0, math.sqrt(2 / (64 + 48)), (64, 48)).astype(np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    layer = layer_of(tmp_path, m)
    assert layer.matches.count("xavier") == 1


def orthonormal(rows, cols):
    """A rows × cols matrix with orthonormal rows (rows ≤ cols) or columns, from numpy's QR in float64."""
    q, _ = np.linalg.qr(RNG.normal(size=(max(rows, cols), min(rows, cols))))
    return (q.T if rows <= cols else q).astype(np.float32)


@pytest.mark.parametrize("case", ["2x2", "conv", "lstm"])
def test_orthogonal_weights_are_recognised(tmp_path, case):
    if case == "2x2":  # a rotation: the smallest matrix checked (4 values)
        c, s = np.cos(0.3), np.sin(0.3)
        w = np.array([[c, -s], [s, c]], np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    elif case == "conv":  # Conv W[4, 2, 2, 2]: 4 filters of 8 values with orthonormal rows
        w = orthonormal(4, 8).reshape(4, 2, 2, 2)
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    else:  # LSTM W[1, 4·H, I] = [1, 16, 4]: the 16 × 4 matrix has orthonormal columns
        w = orthonormal(16, 4).reshape(1, 16, 4)
        nodes = [helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4)]
    inits = [tensor("w", w)] + ([tensor("r", orthonormal(16, 4).reshape(1, 16, 4))] if case == "lstm" else [])
    layer = layer_of(tmp_path, model(nodes, inits))
    assert "orthogonal" in layer.matches


@pytest.mark.parametrize("shape", [(8,), (2, 1)])
def test_too_small_or_one_dimensional_weights_are_not_checked_for_orthogonality(tmp_path, shape):
    # a single column is trivially orthonormal up to a gain: not reported
    w = RNG.normal(0, 0.3, shape).astype(np.float32)
    layer = layer_of(tmp_path, model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)]))
    assert "orthogonal" not in layer.matches
