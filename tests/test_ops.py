"""Every op of the README's "What it follows" table that had no test: fans and layout from the op's own
semantics, worked out by hand (comments), statistics from numpy in float64.

Sources for the com.microsoft contrib ops: onnxruntime's ContribOperators.md and, for NhwcConv's
weight layout, onnxruntime's transformers/fusion_nhwc_conv.py (``weight.transpose(0, 2, 3, 1)`` of the
Conv's OIHW weight, i.e. ``[M, kH, kW, C/group]``).
"""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import TensorProto, helper

import initaudit

RNG = np.random.default_rng(11)
MS_OPSET = helper.make_opsetid("com.microsoft", 1)


def audit_one(tmp_path, m, name="w", **options):
    layers = {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), **options).models[0].layers}
    return layers[name]


def var64(values) -> float:
    return float(np.asarray(values, np.float64).var())


def ms_node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), domain="com.microsoft", **attrs)


def test_ms_attention_packed_qkv(tmp_path):
    # weights [input_hidden=16, 3·16]: Q, K, V columns side by side; each projection connects 16 → 16
    w = RNG.normal(0, 0.1, (16, 48)).astype(np.float32)
    w[:, 32:] *= 3.0  # V drawn three times wider: its part must show it
    m = model([ms_node("Attention", ["x", "w", "b"], num_heads=4)],
              [tensor("w", w), tensor("b", np.zeros(48, np.float32))], extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert layer.op == "Attention" and layer.layout == "IO"
    assert (layer.fan_in, layer.fan_out) == (16, 16)
    assert layer.fans["pytorch"].as_list() == [16, 48]
    assert [p.name for p in layer.parts] == ["q", "k", "v"]
    for part, cols in zip(layer.parts, (slice(0, 16), slice(16, 32), slice(32, 48))):
        assert part.stats.count == 16 * 16
        assert part.stats.var == pytest.approx(var64(w[:, cols]), rel=1e-6)
    assert layer.parts[2].ratio == pytest.approx(var64(w[:, 32:]) / (2 / 32), rel=1e-6)


def test_ms_attention_unequal_qkv_hidden_sizes(tmp_path):
    w = RNG.normal(0, 0.1, (12, 8 + 8 + 20)).astype(np.float32)
    m = model([ms_node("Attention", ["x", "w", "b"], num_heads=2, qkv_hidden_sizes=[8, 8, 20])],
              [tensor("w", w), tensor("b", np.zeros(36, np.float32))], extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == (12, 8)  # the q projection: 12 → 8
    assert [p.stats.count for p in layer.parts] == [12 * 8, 12 * 8, 12 * 20]
    assert layer.parts[2].stats.var == pytest.approx(var64(w[:, 16:]), rel=1e-6)


@pytest.mark.parametrize("slot,trans,stored,expected_fans,layout", [
    (1, 0, (24, 10), (24, 10), "IO"),  # B [K, N]: K = 24 in, N = 10 out
    (1, 1, (10, 24), (24, 10), "OI"),  # transB: B stored [N, K]
    (0, 0, (10, 24), (24, 10), "OI"),  # A as the weight: Y = A·x, A [M, K]: K in, M out
    (0, 1, (24, 10), (24, 10), "IO"),  # transA: A stored [K, M]
])
def test_ms_fused_matmul_trans_and_alpha(tmp_path, slot, trans, stored, expected_fans, layout):
    w = RNG.normal(0, 0.2, stored).astype(np.float32)
    inputs = ["x", "w"] if slot == 1 else ["w", "x"]
    attr = "transB" if slot == 1 else "transA"
    m = model([ms_node("FusedMatMul", inputs, alpha=0.5, **{attr: trans})], [tensor("w", w)],
              extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == expected_fans and layer.layout == layout
    # alpha multiplies the product, so the effective weight is 0.5·W: variance ×0.25
    assert layer.ratio == pytest.approx(0.25 * var64(w) / (2 / 34), rel=1e-6)


def test_ms_fused_conv(tmp_path):
    w = RNG.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)
    m = model([ms_node("FusedConv", ["x", "w"], activation="Relu", pads=[1, 1, 1, 1])], [tensor("w", w)],
              extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert layer.layout == "OIHW" and (layer.fan_in, layer.fan_out) == (4 * 9, 8 * 9)


@pytest.mark.parametrize("group,stored,fans", [
    (1, (8, 3, 3, 4), (4 * 9, 8 * 9)),        # [M=8, kH, kW, C=4]
    (2, (8, 3, 3, 2), (2 * 9, 4 * 9)),        # 2 groups: C/g = 2 in, M/g = 4 out per group
])
def test_ms_nhwc_conv_weight_is_channels_last(tmp_path, group, stored, fans):
    w = RNG.normal(0, 0.1, stored).astype(np.float32)
    m = model([ms_node("NhwcConv", ["x", "w"], group=group)], [tensor("w", w)], extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert layer.layout == "OHWI" and (layer.fan_in, layer.fan_out) == fans and layer.groups == group
    # PyTorch's fans of the Conv this was made from (OIHW [8, C/g, 3, 3]): C/g·9, 8·9
    assert layer.fans["pytorch"].as_list() == [stored[3] * 9, 8 * 9]


def test_deform_conv(tmp_path):
    w = RNG.normal(0, 0.1, (6, 2, 3, 3)).astype(np.float32)
    m = model([helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], group=2)], [tensor("w", w)],
              inputs=[("x", 1, None), ("offset", 1, None)], opset=19)
    layer = audit_one(tmp_path, m)
    assert layer.op == "DeformConv" and layer.layout == "OIHW"
    assert (layer.fan_in, layer.fan_out) == (2 * 9, 3 * 9) and layer.groups == 2  # C/g = 2, M/g = 3


def test_ms_fused_gemm_trans_b_and_alpha(tmp_path):
    w = RNG.normal(0, 0.1, (12, 30)).astype(np.float32)  # transB: B stored [N=12, K=30]
    m = model([ms_node("FusedGemm", ["x", "w"], transB=1, alpha=2.0, activation="Relu")], [tensor("w", w)],
              extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == (30, 12) and layer.layout == "OI"
    assert layer.ratio == pytest.approx(4.0 * var64(w) / (2 / 42), rel=1e-6)


def test_qlinear_matmul_per_column_scale(tmp_path):
    q = RNG.integers(-128, 128, (20, 6)).astype(np.int8)  # b [K=20, N=6], scale per output column
    scale = RNG.uniform(0.001, 0.01, 6).astype(np.float32)
    zero = np.zeros(6, np.int8)
    inits = [tensor("a_s", np.float32(0.1)), tensor("a_z", np.int8(0)), tensor("w", q), tensor("w_s", scale),
             tensor("w_z", zero), tensor("y_s", np.float32(0.1)), tensor("y_z", np.int8(0))]
    m = model([helper.make_node("QLinearMatMul", ["x", "a_s", "a_z", "w", "w_s", "w_z", "y_s", "y_z"], ["y"])],
              inits)
    layer = audit_one(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == (20, 6) and layer.layout == "IO"
    dequantized = q.astype(np.float64) * scale.astype(np.float64)
    assert layer.stats.var == pytest.approx(dequantized.var(), rel=1e-6)


def test_ms_matmul_integer_to_float(tmp_path):
    q = RNG.integers(0, 256, (16, 5)).astype(np.uint8)  # B [K=16, N=5]
    scale, zero = np.float32(0.02), np.uint8(128)
    inits = [tensor("w", q), tensor("a_s", np.float32(0.1)), tensor("w_s", scale), tensor("a_z", np.uint8(0)),
             tensor("w_z", zero)]
    m = model([ms_node("MatMulIntegerToFloat", ["x", "w", "a_s", "w_s", "a_z", "w_z"])], inits,
              extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == (16, 5)
    dequantized = (q.astype(np.float64) - 128) * float(scale)
    assert layer.stats.var == pytest.approx(dequantized.var(), rel=1e-6)
    assert layer.stats.mean == pytest.approx(dequantized.mean(), rel=1e-6, abs=1e-9)


def test_scan_body_reads_an_outer_weight(tmp_path):
    w = RNG.normal(0, 0.1, (8, 4)).astype(np.float32)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "w"], ["h"], name="body_matmul"),
         helper.make_node("Identity", ["state_in"], ["state_out"])], "scan_body",
        [helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 4])])
    scan = helper.make_node("Scan", ["s0", "x"], ["s_final", "y"], name="scan", body=body, num_scan_inputs=1)
    m = model([scan], [tensor("w", w), tensor("s0", np.zeros(1, np.float32))])
    layer = audit_one(tmp_path, m)
    assert layer.graph == "main" and layer.op == "MatMul" and (layer.fan_in, layer.fan_out) == (8, 4)
    assert [c.graph for c in layer.consumers] == ["main/scan.body"]
    assert layer.stats.var == pytest.approx(var64(w), rel=1e-6)


def test_cast_like_fp16_weight(tmp_path):
    w16 = RNG.normal(0, 0.1, (10, 7)).astype(np.float16)
    m = model([helper.make_node("CastLike", ["w", "x"], ["w32"]), helper.make_node("MatMul", ["x", "w32"], ["y"])],
              [tensor("w", w16)])
    layer = audit_one(tmp_path, m)
    assert layer.op == "MatMul" and (layer.fan_in, layer.fan_out) == (10, 7) and layer.layout == "IO"
    assert layer.stats.var == pytest.approx(var64(w16), rel=1e-6)


def test_ms_qlinear_conv_per_channel(tmp_path):
    q = RNG.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)  # [M, C/g, kH, kW] as the ONNX QLinearConv
    scale = RNG.uniform(0.001, 0.01, 8).astype(np.float32)
    inits = [tensor("x_s", np.float32(0.1)), tensor("x_z", np.uint8(128)), tensor("w", q), tensor("w_s", scale),
             tensor("w_z", np.zeros(8, np.int8)), tensor("y_s", np.float32(0.1)), tensor("y_z", np.uint8(128))]
    m = model([ms_node("QLinearConv", ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"], channels_last=1)], inits,
              extra_opsets=[MS_OPSET])
    layer = audit_one(tmp_path, m)
    assert layer.layout == "OIHW" and (layer.fan_in, layer.fan_out) == (4 * 9, 8 * 9)
    dequantized = q.astype(np.float64) * scale.astype(np.float64)[:, None, None, None]
    assert layer.stats.var == pytest.approx(dequantized.var(), rel=1e-6)


def test_rnn_weight(tmp_path):
    w = RNG.normal(0, 0.2, (1, 12, 5)).astype(np.float32)  # [D, H, I]: one gate, 5 inputs → 12 hidden units
    m = model([helper.make_node("RNN", ["x", "w", "r"], ["y"], hidden_size=12)],
              [tensor("w", w), tensor("r", RNG.normal(0, 0.2, (1, 12, 12)).astype(np.float32))])
    layer = audit_one(tmp_path, m)
    assert layer.layout == "BOI" and (layer.fan_in, layer.fan_out) == (5, 12)
    assert [p.name for p in layer.parts] == ["forward.h"]
