"""The ops initaudit maps (``initaudit/trace/ops.py``): the role of a weight (layout, fans, parts, scale)
for each weight-carrying op, and the reason given when it has none.

Models audited end to end cover every op of the README's "What it follows" table: fans and layout from
the op's own semantics, worked out by hand (comments), statistics from numpy in float64. ``role_of``
called directly covers each op's cases one by one; expected layouts and fans are worked out by hand from
each op's definition (ONNX Operators.md, onnxruntime ContribOperators.md), written next to each case, and
the messages are the text a user reads in the IA301 finding ("cannot map: ...").

Sources for the com.microsoft contrib ops: onnxruntime's ContribOperators.md and, for NhwcConv's
weight layout, onnxruntime's transformers/fusion_nhwc_conv.py (``weight.transpose(0, 2, 3, 1)`` of the
Conv's OIHW weight, i.e. ``[M, kH, kW, C/group]``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.trace.fans import Fans
from initaudit.trace.ops import MS, OP_TABLE, OPS, OpUse, Part, UnsupportedUse, op_spec, role_of

RNG = np.random.default_rng(11)
MS_OPSET = helper.make_opsetid("com.microsoft", 1)


def audit_one(tmp_path, m, name="w", **options):
    layers = {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), **options).models[0].layers}
    return layers[name]


def var64(values) -> float:
    return float(np.asarray(values, np.float64).var())


def ms_node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), domain="com.microsoft", **attrs)


# === whole models, audited end to end ===================================================================


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


def test_gemm_alpha_scales_the_effective_weight(tmp_path):
    w = xavier_uniform(RNG, (120, 400), 400, 120) / 2  # stored at half the std …
    m = model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1, alpha=2.0)], [tensor("w", w)])
    layer = audit_one(tmp_path, m)
    assert layer.scale == 2.0 and layer.ratio == pytest.approx(1.0, rel=0.05) and layer.status == "ok"


def test_einsum_weight(tmp_path):
    w = xavier_uniform(RNG, (64, 4, 16), 64, 64)
    m = model([helper.make_node("Einsum", ["x", "w"], ["y"], equation="btd,dnh->btnh")], [tensor("w", w)])
    layer = audit_one(tmp_path, m)
    assert layer.layout == "IOO" and (layer.fan_in, layer.fan_out) == (64, 64) and layer.status == "ok"


def test_dynamic_quantize_lstm_gates_and_dequantized_statistics(tmp_path):
    q = RNG.integers(-127, 128, (1, 10, 80)).astype(np.int8)  # [D, I, 4H], H = 20
    scale = np.array([0.002], np.float32)
    inputs = ["x", "W", "R", "", "", "", "", "", "ws", "wz", "rs", "rz"]
    m = model([helper.make_node("DynamicQuantizeLSTM", inputs, ["y"], domain="com.microsoft", hidden_size=20)],
              [tensor("W", q), tensor("R", RNG.integers(-127, 128, (1, 20, 80)).astype(np.int8)),
               tensor("ws", scale), tensor("wz", np.array([0], np.int8)),
               tensor("rs", scale), tensor("rz", np.array([0], np.int8))],
              extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    layer = audit_one(tmp_path, m, "W")
    assert (layer.fan_in, layer.fan_out) == (10, 20) and layer.fans["pytorch"].as_list() == [10, 80]
    assert [p.name for p in layer.parts] == ["i", "o", "f", "c"]
    assert layer.stats.var == pytest.approx(float((q.astype(np.float64) * 0.002).var()), rel=1e-5)


def _gates(directions: int, hidden: int, n_in: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (n_in + hidden))  # Xavier per gate: fans (I, H)
    return RNG.uniform(-bound, bound, (directions, 4 * hidden, n_in)).astype(np.float32)


def test_bidirectional_lstm_parts_read_the_reverse_slices(tmp_path):
    hidden, n_in = 16, 12
    w = _gates(2, hidden, n_in)
    w[1, hidden:2 * hidden] *= 0.5  # reverse direction, gate o: 0.25× the variance
    r = _gates(2, hidden, hidden)
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=hidden, direction="bidirectional")],
              [tensor("w", w), tensor("r", r)])
    layer = audit_one(tmp_path, m)
    names = [p.name for p in layer.parts]
    assert names == [f"{d}.{g}" for d in ("forward", "reverse") for g in "iofc"]
    target = 2.0 / (n_in + hidden)
    for part, (d, g) in zip(layer.parts, [(d, g) for d in range(2) for g in range(4)]):
        expected = var64(w[d, g * hidden:(g + 1) * hidden]) / target
        assert part.ratio == pytest.approx(expected, rel=1e-6), part.name
    assert layer.parts[5].status == "fail" and layer.parts[1].status == "ok"
    assert any(f.code == "IA101" and "reverse.o" in f.message for f in layer.findings)


def test_gru_gate_parts(tmp_path):
    hidden, n_in = 8, 6
    bound = math.sqrt(6.0 / (n_in + hidden))
    w = RNG.uniform(-bound, bound, (1, 3 * hidden, n_in)).astype(np.float32)
    m = model([helper.make_node("GRU", ["x", "w", "r"], ["y"], hidden_size=hidden)],
              [tensor("w", w), tensor("r", RNG.uniform(-0.3, 0.3, (1, 3 * hidden, hidden)).astype(np.float32))])
    layer = audit_one(tmp_path, m)
    assert [p.name for p in layer.parts] == ["forward.z", "forward.r", "forward.h"]
    assert [p.stats.count for p in layer.parts] == [hidden * n_in] * 3


# === role_of, op by op ==================================================================================


def role(op, shape, slot=1, domain="", **attrs):
    return role_of(OpUse(op, domain, slot, tuple(shape), attrs))


def reason(op, shape, slot=1, domain="", **attrs) -> str:
    with pytest.raises(UnsupportedUse) as caught:
        role(op, shape, slot, domain, **attrs)
    return str(caught.value)


def conn(r) -> tuple[int, int]:
    f = r.fans["connectivity"]
    return f.fan_in, f.fan_out


# --- convolutions ---------------------------------------------------------------------------------------

def test_conv_group_must_divide_output_channels():
    # 8 filters cannot be split into 3 groups
    assert reason("Conv", (8, 2, 3, 3), group=3) == "Conv weight axis 0 of 8 not divisible by group=3"
    assert reason("Conv", (6, 75)) == "Conv weight of rank 2; expected [M, C/group, k...]"
    assert reason("ConvTranspose", (6, 75)) == "ConvTranspose weight of rank 2; expected [C, M/group, k...]"


def test_conv_transpose_layout_letters():
    # W[C=4, M/g=3, kH=3, kW=3]: input channels, output channels, then the 2-D kernel
    r = role("ConvTranspose", (4, 3, 3, 3))
    assert r.layout == "IOHW"
    assert conn(r) == (4 * 9, 3 * 9)


def test_nhwc_conv_rank_three_and_group_message():
    # NhwcConv W[M=4, kW=3, C=2]: a 1-D channels-last kernel, as Conv W[4, 2, 3]: fan_in 2·3, fan_out 4·3
    r = role("NhwcConv", (4, 3, 2), domain=MS)
    assert r.layout == "OWI" and conn(r) == (6, 12)
    assert reason("NhwcConv", (6, 3, 3, 2), domain=MS, group=4) == \
        "NhwcConv weight axis 0 of 6 not divisible by group=4"
    assert reason("NhwcConv", (6, 2), domain=MS) == "NhwcConv weight of rank 2; expected [M, k..., C/group]"


# --- matrices -------------------------------------------------------------------------------------------

def test_vector_operand_and_scalar():
    # MatMul with a 1-D B of 7: a dot product, 7 inputs → 1 output
    r = role("MatMul", (7,))
    assert r.layout == "I" and conn(r) == (7, 1)
    assert reason("MatMul", ()) == "a scalar operand, not a weight matrix"


def test_gemm_messages_and_qgemm_slot():
    assert reason("Gemm", (2, 3, 4)) == "Gemm operand of rank 3"
    assert reason("Gemm", (4, 5), alpha=float("inf")) == "alpha = inf is not a finite number"
    # QGemm's B is input 3, stored [K=24, N=10] without transB: 24 in, 10 out
    r = role("QGemm", (24, 10), slot=3, domain=MS)
    assert r.layout == "IO" and conn(r) == (24, 10)


def test_fused_matmul_defaults():
    # no transA/transB/alpha: plain MatMul, B [K=24, N=10]; A as weight [M=10, K=24]
    b = role("FusedMatMul", (24, 10), slot=1, domain=MS)
    assert b.layout == "IO" and conn(b) == (24, 10) and b.scale == 1.0
    a = role("FusedMatMul", (10, 24), slot=0, domain=MS)
    assert a.layout == "OI" and conn(a) == (24, 10) and a.scale == 1.0


# --- recurrent ------------------------------------------------------------------------------------------

def test_recurrent_shape_messages():
    assert reason("GRU", (1, 6)) == "GRU weight of shape [1, 6]; expected [D, 3·H, I]"
    assert reason("LSTM", (1, 16, 5), hidden_size=3) == \
        "LSTM hidden_size=3 does not match weight shape [1, 16, 5]"


def test_recurrent_hidden_from_shape_and_parts():
    # LSTM W[1, 4·2, 5] without hidden_size: H = 8 / 4 = 2; one gate connects 5 inputs to 2 units
    r = role("LSTM", (1, 8, 5))
    assert conn(r) == (5, 2) and r.fans["pytorch"] == Fans(5, 8) and r.layout == "BOI"
    # each gate is a contiguous block of 2·5 = 10 values
    assert r.parts == tuple(Part(f"forward.{g}", 40, 10 * i, 10 * (i + 1)) for i, g in enumerate("iofc"))


def test_recurrent_direction_fallbacks():
    # an unknown direction string is read as forward
    r = role("GRU", (1, 6, 4), direction="sideways")
    assert [p.name for p in r.parts] == ["forward.z", "forward.r", "forward.h"]
    # two directions stored but none declared: named by index
    r = role("RNN", (2, 3, 4))
    assert [p.name for p in r.parts] == ["dir0.h", "dir1.h"]
    assert [(p.start, p.stop) for p in r.parts] == [(0, 12), (12, 24)]


def test_dynamic_quantize_lstm():
    # W[D=1, I=3, 4·H=8] without hidden_size: H = 2; a gate is 2 columns of each of the 3 rows of 8
    r = role("DynamicQuantizeLSTM", (1, 3, 8), domain=MS)
    assert r.layout == "BIO" and conn(r) == (3, 2) and r.fans["keras"] == Fans(3, 8)
    assert r.parts == tuple(Part(g, 8, 2 * i, 2 * (i + 1)) for i, g in enumerate("iofc"))
    # two directions: the gate columns are not one block per row of the flat tensor: no parts
    assert role("DynamicQuantizeLSTM", (2, 3, 8), domain=MS).parts == ()
    assert reason("DynamicQuantizeLSTM", (3, 8), domain=MS) == \
        "DynamicQuantizeLSTM weight of shape [3, 8]; expected [D, I, 4·H]"
    assert reason("DynamicQuantizeLSTM", (1, 3, 10), domain=MS) == \
        "DynamicQuantizeLSTM weight of shape [1, 3, 10]; expected [D, I, 4·H]"
    assert reason("DynamicQuantizeLSTM", (1, 3, 8), domain=MS, hidden_size=1) == \
        "DynamicQuantizeLSTM hidden_size=1 does not match [1, 3, 8]"


# --- Einsum ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("equation,slot,shape,layout,fans", [
    ("ij, jk -> ik", 1, (3, 4), "IO", (3, 4)),          # spaces are allowed in the equation
    ("...jk,j->...k", 0, (2, 3, 4), "BIO", (3, 4)),      # one matrix per leading index: batch, not output
    ("...jk,...j->...k", 0, (2, 6, 3, 4), "BBIO", (3, 4)),
    ("...jk,...j->...k", 0, (3, 4), "IO", (3, 4)),       # the ellipsis may stand for no axis
    ("j...k,j->...k", 0, (3, 2, 5), "IBO", (3, 5)),
    ("jbk,bij->bik", 0, (3, 2, 5), "IBO", (3, 5)),       # b in the output and the other operand: batch
    ("ij,jX,k->iXk", 1, (3, 4), "IO", (3, 4)),           # three operands, upper-case labels
    ("iX,ij", 0, (3, 4), "IO", (3, 4)),                  # implicit output: X and j, used once
    ("iX,Xk", 0, (3, 4), "OI", (4, 3)),                  # implicit output ik: X is summed over
])
def test_einsum_layouts(equation, slot, shape, layout, fans):
    r = role("Einsum", shape, slot=slot, equation=equation)
    assert r.layout == layout and conn(r) == fans


def test_einsum_messages():
    assert reason("Einsum", (3, 4), slot=2, equation="ij,jk->ik") == "Einsum equation 'ij,jk->ik' has no operand 2"
    assert reason("Einsum", (3, 4, 5), equation="ij,jk->ik") == \
        "Einsum operand 'jk' does not match weight rank 3"
    assert reason("Einsum", (3, 3), equation="ij,jj->i") == "Einsum operand 'jj' repeats an index (a diagonal)"
    assert reason("Einsum", (3, 4), slot=0) == "Einsum operand '' does not match weight rank 2"


# --- packed attention, MatMulNBits, Gather ----------------------------------------------------------------

def test_packed_attention_fans_and_messages():
    # W[in=12, q 8 + k 6 + v 20]: the q projection connects 12 → 8; the frameworks see one 12 × 34 matrix
    r = role("Attention", (12, 34), domain=MS, qkv_hidden_sizes=[8, 6, 20])
    assert conn(r) == (12, 8) and r.fans["keras"] == Fans(12, 34) and r.fans["pytorch"] == Fans(12, 34)
    assert reason("Attention", (2, 12, 34), domain=MS) == "Attention weights of rank 3; expected [in, 3·hidden]"
    assert reason("Attention", (12, 34), domain=MS, qkv_hidden_sizes=[8, 26]) == \
        "Attention qkv_hidden_sizes [8, 26] does not have three entries (q, k, v)"
    assert reason("Attention", (12, 34), domain=MS, qkv_hidden_sizes=[8, 8, 8]) == \
        "Attention qkv sizes [8, 8, 8] do not add up to 34"


def test_matmul_nbits_roles_and_messages():
    # default 4 bits: N=8 rows, K=32 in 2 blocks of 16 codes = 8 bytes each → stored [8, 2, 8]; Y = A·Wᵀ
    r = role("MatMulNBits", (8, 2, 8), domain=MS, N=8, K=32, block_size=16)
    assert r.layout == "OII" and conn(r) == (32, 8)
    # 8 bits, blocks of one code: [8, 32, 1]
    assert conn(role("MatMulNBits", (8, 32, 1), domain=MS, N=8, K=32, bits=8, block_size=1)) == (32, 8)
    assert reason("MatMulNBits", (8, 2, 8), domain=MS, N=8, K=32) == "MatMulNBits without attribute 'block_size'"
    assert reason("MatMulNBits", (8, 2, 8), domain=MS, N=8, K=32, block_size=16, weight_prepacked=1) == \
        "MatMulNBits with a prepacked (execution-provider specific) weight"
    assert reason("MatMulNBits", (8, 2, 9), domain=MS, N=8, K=32, block_size=16) == \
        "MatMulNBits weight of shape [8, 2, 9], expected [8, 2, 8]"
    # 3 bits is not a width MatMulNBits has, even when the shape agrees: 16·3/8 = 6 bytes a block
    assert reason("MatMulNBits", (8, 2, 6), domain=MS, N=8, K=32, bits=3, block_size=16).startswith(
        "MatMulNBits weight of shape [8, 2, 6]")


def test_gather_embedding():
    r = role("Gather", (100, 16), slot=0)
    assert r.layout == "VD" and r.kind == "embedding" and r.fans is None
    assert reason("Gather", (100, 16), slot=0, axis=1) == "Gather on a constant that is not an embedding table"


# --- role_of itself -------------------------------------------------------------------------------------

def test_role_of_domain_alias_and_messages():
    # "ai.onnx" is the default domain spelled out
    assert role("Conv", (4, 2, 3, 3), domain="ai.onnx").layout == "OIHW"
    assert reason("Conv", (4, 2, 3, 3), domain="ai.onnx.ml") == "op Conv is not a supported weight-carrying op"
    assert reason("Conv", (4, 2, 3, 3), group="two").startswith("Conv has a malformed attribute (invalid literal")


@pytest.mark.parametrize("shape,side_empty", [((0, 5), True), ((5, 0), True), ((1, 5), False), ((5, 1), False)])
def test_role_of_zero_sized_side(shape, side_empty):
    # MatMul B [K, N]: K = 0 inputs or N = 0 outputs leave no fan-based target; one unit on a side is fine
    if side_empty:
        assert reason("MatMul", shape) == (f"MatMul weight of shape {list(shape)} has no units on one side "
                                           "(a zero-sized axis): no fan-based target")
    else:
        assert conn(role("MatMul", shape)) == shape


def test_conv_with_no_filters_has_no_target():
    # Conv W[0, 3, 3, 3]: fan_in 27 but no output unit
    assert reason("Conv", (0, 3, 3, 3)).startswith("Conv weight of shape [0, 3, 3, 3] has no units on one side")


def test_vector_operand_keeps_alpha():
    # FusedMatMul with a 1-D B and alpha 0.5: the weight is scaled by 0.5
    r = role("FusedMatMul", (7,), domain=MS, alpha=0.5)
    assert r.layout == "I" and conn(r) == (7, 1) and r.scale == 0.5


# --- the op table: everything initaudit knows of an op, in one entry ------------------------------

def test_the_op_table_names_each_op_once_and_its_slots_fit_its_inputs():
    assert len(OPS) == len(OP_TABLE)
    for spec in OP_TABLE:
        assert op_spec(spec.domain or "ai.onnx", spec.op) is spec
        assert all(slot < spec.inputs for slot in spec.weight_slots if spec.op != "Einsum")
        assert all(slot in spec.weight_slots and max(s for s in q[:2] if s is not None) < spec.inputs
                   for slot, q in spec.dequant.items())
    assert op_spec("", "Relu") is None and op_spec("vendor.x", "Conv") is None


def test_integer_units_and_packed_blocks_come_from_the_table():
    assert {s.op for s in OP_TABLE if s.integer_units} == {"ConvInteger", "MatMulInteger"}
    assert {s.op for s in OP_TABLE if s.blocks} == {"MatMulNBits"}
    assert {s.op for s in OP_TABLE if s.packable} == {"MatMul", "Gemm", "MatMulNBits"}


def test_the_group_of_a_unit_is_read_on_the_side_the_op_says():
    """Conv W[M, C/g, k…] counts one group's input channels on I; ConvTranspose W[C, M/g, k…] one
    group's output channels on O: the unit pass takes the group from the other axis."""
    conv = role_of(OpUse("Conv", "", 1, (8, 2, 3, 3), {"group": 4}))
    transposed = role_of(OpUse("ConvTranspose", "", 1, (8, 2, 3, 3), {"group": 4}))
    assert (conv.per_group, transposed.per_group) == ("I", "O")
    assert role_of(OpUse("NhwcConv", "com.microsoft", 1, (8, 3, 3, 2), {"group": 4})).per_group == "I"


def test_pool_aware_fan_out_applies_to_the_table_s_pooled_convs(tmp_path):
    """``--pool-aware`` divides fan_out after a pooling for a Conv (Theano's LeNet), not for a Gemm."""
    w = RNG.normal(0, 0.1, (6, 1, 5, 5)).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["c"]),
               helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
              [tensor("w", w)], inputs=[("x", TensorProto.FLOAT, [1, 1, 28, 28])])
    layer = audit_one(tmp_path, m, pool_aware=True)
    assert (layer.fan_in, layer.fan_out, layer.pool_area) == (25, 6 * 25 // 4, 4)


def test_gemm_weight_as_A_and_untransposed_B():
    assert conn(role("Gemm", (400, 120), slot=1)) == (400, 120)  # [K, N]
    assert conn(role("Gemm", (120, 400), slot=0)) == (400, 120)  # A [M, K]: Y = A·X
    assert conn(role("Gemm", (400, 120), slot=0, transA=1)) == (400, 120)


def test_matmul_left_operand_and_batched():
    assert conn(role("MatMul", (120, 400), slot=0)) == (400, 120)
    batched = role("MatMul", (8, 64, 32))
    assert batched.layout == "BIO" and batched.fans["connectivity"] == Fans(64, 32)


def test_gru_and_rnn_per_gate_fans_and_parts():
    gru = role_of(OpUse("GRU", "", 1, (2, 3 * 16, 8), {"hidden_size": 16, "direction": "bidirectional"}))
    assert gru.fans["connectivity"] == Fans(8, 16)
    assert [p.name for p in gru.parts] == ["forward.z", "forward.r", "forward.h",
                                           "reverse.z", "reverse.r", "reverse.h"]
    rnn = role_of(OpUse("RNN", "", 2, (1, 16, 16), {}))
    assert rnn.fans["connectivity"] == Fans(16, 16)


def test_einsum_variants():
    assert conn(role("Einsum", (64, 32), equation="bi,ij->bj")) == (64, 32)
    assert conn(role("Einsum", (32, 64), equation="ji,bi->bj", slot=0)) == (64, 32)
    # heads as a batch axis shared with the activation: bhd,hde->bhe
    heads = role("Einsum", (8, 64, 16), equation="bhd,hde->bhe")
    assert heads.layout == "BIO" and heads.fans["connectivity"] == Fans(64, 16)
    # implicit output and an ellipsis
    assert conn(role("Einsum", (64, 32), equation="...i,ij")) == (64, 32)


def test_unsupported_uses_raise():
    with pytest.raises(UnsupportedUse):
        role_of(OpUse("Conv", "", 1, (6, 75), {}))
    with pytest.raises(UnsupportedUse):
        role_of(OpUse("Einsum", "", 1, (8, 8), {"equation": "bi,ii->bi"}))
    with pytest.raises(UnsupportedUse):
        role_of(OpUse("Foo", "custom", 1, (8, 8), {}))
