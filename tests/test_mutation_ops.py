"""ops.py, operator by operator: the role (layout, fans, parts, scale) of a weight and the reason given when
it has none. Written from the survivors of a mutmut run over ops.py (docs/mutation.md).

Expected layouts and fans are worked out by hand from each op's definition (ONNX Operators.md,
onnxruntime ContribOperators.md), written next to each case; the messages are the text a user reads in
the IA301 finding ("cannot map: ...").
"""
from __future__ import annotations

import pytest

from initaudit.trace.fans import Fans
from initaudit.trace.ops import MS, OpUse, Part, UnsupportedUse, role_of


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
