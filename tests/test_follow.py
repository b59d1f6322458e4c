"""Weights followed from where they are stored to the op that reads them (``initaudit/trace/follow.py``):
through transposes, reshapes, casts, quantization, control flow, functions and reordered slices.

Whole models, audited end to end, show what a user sees of real-world graph shapes. Step by step: the
consumed shape each axis-moving node gives (worked out by hand from the ONNX operator definitions), the
dequantization put on the stored axes, the Concats of Slices that reorder one tensor (through function
calls too) and those that do not, and the scale found after an integer op; expected values from the ONNX
operator definitions and numpy float64.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper, numpy_helper

import initaudit
from initaudit.read.graph import ModelGraph
from initaudit.trace.follow import (
    Dequant,
    Step,
    _axes_in_range,
    _make_dequant,
    _moved_shape,
    _reshape_target,
    _reshaped_axes,
    find_uses,
    follow,
)

RNG = np.random.default_rng(7)


def layers(path, **options):
    return {layer.name: layer for layer in initaudit.audit(path, **options).models[0].layers}


def var64(values) -> float:
    return float(np.asarray(values, np.float64).var())


# === whole models, audited end to end ===================================================================


def test_tf_style_transpose_into_conv(tmp_path):
    hwio = xavier_uniform(RNG, (5, 5, 3, 6), 75, 150)
    m = model([helper.make_node("Transpose", ["k"], ["k_t"], perm=[3, 2, 0, 1]),
               helper.make_node("Conv", ["x", "k_t"], ["y"], name="conv")], [tensor("k", hwio)])
    layer = layers(save(m, tmp_path))["k"]
    assert layer.op == "Conv" and layer.layout == "HWIO" and layer.shape == (5, 5, 3, 6)
    assert (layer.fan_in, layer.fan_out) == (75, 150) and layer.status == "ok"


def test_tf2onnx_depthwise_reshape_then_transpose(tmp_path):
    kernel = xavier_uniform(RNG, (3, 3, 8, 1), 9, 9)
    shape = tensor("shape", np.array([3, 3, 1, 8], np.int64))
    m = model([helper.make_node("Reshape", ["k", "shape"], ["k_r"]),
               helper.make_node("Transpose", ["k_r"], ["k_t"], perm=[3, 2, 0, 1]),
               helper.make_node("Conv", ["x", "k_t"], ["y"], group=8)], [tensor("k", kernel), shape])
    layer = layers(save(m, tmp_path))["k"]
    assert (layer.fan_in, layer.fan_out) == (9, 9) and layer.groups == 8
    assert layer.fans["keras"].as_list() == [72, 9]


@pytest.mark.parametrize("qtype,axis_scale", [(TensorProto.INT8, True), (TensorProto.UINT8, False),
                                              (TensorProto.INT4, True)])
def test_dequantize_linear_per_axis_and_per_tensor(tmp_path, qtype, axis_scale):
    lo, hi = (-8, 7) if qtype == TensorProto.INT4 else (-128, 127) if qtype == TensorProto.INT8 else (0, 255)
    q = RNG.integers(lo, hi + 1, (16, 8, 3, 3))
    scale = RNG.uniform(0.001, 0.01, 16).astype(np.float32) if axis_scale else np.float32(0.004)
    zero = RNG.integers(lo // 2, hi // 2, 16) if axis_scale else (128 if qtype == TensorProto.UINT8 else 0)
    q_t = helper.make_tensor("q", qtype, q.shape, q.ravel().tolist())
    zp_t = helper.make_tensor("zp", qtype, np.shape(zero), np.ravel(zero).tolist())
    m = model([helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["w"], axis=0),
               helper.make_node("Conv", ["x", "w"], ["y"])],
              [q_t, tensor("s", np.asarray(scale, np.float32)), zp_t], opset=21)
    layer = layers(save(m, tmp_path))["q"]
    shape = (16, 1, 1, 1) if axis_scale else ()
    expected = ((q - np.reshape(zero, shape)).astype(np.float32) * np.reshape(scale, shape)).astype(np.float64)
    assert layer.stats.var == pytest.approx(expected.var(), rel=1e-6)
    assert layer.stats.mean == pytest.approx(expected.mean(), rel=1e-6, abs=1e-9)
    assert (layer.fan_in, layer.fan_out) == (72, 144)


def test_blocked_dequantize(tmp_path):
    q = RNG.integers(-8, 8, (64, 32)).astype(np.int8)
    scale = RNG.uniform(0.01, 0.02, (64, 2)).astype(np.float32)  # blocks of 16 along axis 1
    m = model([helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=1, block_size=16),
               helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("q", q), tensor("s", scale)], opset=21)
    layer = layers(save(m, tmp_path))["q"]
    expected = q.astype(np.float32) * np.repeat(scale, 16, axis=1)
    assert layer.stats.var == pytest.approx(float(expected.astype(np.float64).var()), rel=1e-6)


def test_fp16_through_cast(tmp_path):
    w = xavier_uniform(RNG, (64, 32), 64, 32).astype(np.float16)
    m = model([helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT),
               helper.make_node("MatMul", ["x", "w32"], ["y"])], [tensor("w", w)])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.dtype == "float16" and layer.status == "ok"
    assert layer.stats.var == pytest.approx(float(w.astype(np.float64).var()), rel=1e-9)


def _conv_body(name: str, weight: str) -> onnx.GraphProto:
    return helper.make_graph([helper.make_node("Conv", ["x", weight], [name], name=f"conv_{name}")], name, [],
                             [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])


def test_if_subgraphs_and_outer_scope(tmp_path):
    then_w = xavier_uniform(RNG, (8, 4, 3, 3), 36, 72)
    outer_w = RNG.normal(0, 1, (8, 4, 3, 3)).astype(np.float32)
    then_branch = _conv_body("a", "tw")
    then_branch.initializer.append(tensor("tw", then_w))
    else_branch = _conv_body("b", "ow")  # reads an initializer of the main graph
    m = model([helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch,
                                else_branch=else_branch)],
              [tensor("ow", outer_w)], inputs=[("cond", TensorProto.BOOL, []), ("x", TensorProto.FLOAT, None)])
    found = layers(save(m, tmp_path))
    assert found["tw"].graph == "main/branch.then_branch" and found["tw"].status == "ok"
    assert found["ow"].graph == "main" and found["ow"].status == "fail"
    assert found["ow"].consumers[0].graph == "main/branch.else_branch"


def test_loop_body_matmul(tmp_path):
    w = xavier_uniform(RNG, (32, 32), 32, 32)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w"], ["h2"]), helper.make_node("Identity", ["c"], ["c2"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h2", TensorProto.FLOAT, None)])
    m = model([helper.make_node("Loop", ["n", "", "x"], ["y"], name="loop", body=body)], [tensor("w", w)],
              inputs=[("n", TensorProto.INT64, []), ("x", TensorProto.FLOAT, None)])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.op == "MatMul" and layer.consumers[0].graph == "main/loop.body" and layer.status == "ok"


def test_model_local_function(tmp_path):
    fn = helper.make_function("custom", "Dense", ["x", "w"], ["y"],
                              [helper.make_node("MatMul", ["x", "w"], ["y"])],
                              [helper.make_opsetid("", 17)])
    w = xavier_uniform(RNG, (40, 24), 40, 24)
    m = model([helper.make_node("Dense", ["x", "w"], ["y"], domain="custom")], [tensor("w", w)],
              functions=[fn], extra_opsets=[helper.make_opsetid("custom", 1)])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.op == "MatMul" and (layer.fan_in, layer.fan_out) == (40, 24)
    assert layer.consumers[0].graph == "function:custom.Dense"


def test_constant_node_weight(tmp_path):
    w = xavier_uniform(RNG, (6, 3, 5, 5), 75, 150)
    m = model([helper.make_node("Constant", [], ["cw"], value=tensor("v", w)),
               helper.make_node("Conv", ["x", "cw"], ["y"])], [])
    layer = layers(save(m, tmp_path))["cw"]
    assert layer.storage == "constant" and layer.status == "ok"
    assert layer.stats.var == pytest.approx(float(w.astype(np.float64).var()), rel=1e-9)


def test_integer_ops_and_qlinear(tmp_path):
    q = RNG.integers(-100, 100, (8, 4, 3, 3)).astype(np.int8)
    scale = np.float32(0.01)
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "q", "ws", "wz", "ys", "yz"], ["y"])]
    inits = [tensor("q", q), tensor("ws", np.array(scale)), tensor("wz", np.array(0, np.int8)),
             tensor("xs", np.array(0.1, np.float32)), tensor("xz", np.array(0, np.uint8)),
             tensor("ys", np.array(0.1, np.float32)), tensor("yz", np.array(0, np.uint8))]
    found = layers(save(model(nodes, inits), tmp_path))
    assert found["q"].stats.var == pytest.approx(float((q.astype(np.float64) * 0.01).var()), rel=1e-5)
    assert (found["q"].fan_in, found["q"].fan_out) == (36, 72)
    m2 = model([helper.make_node("ConvInteger", ["x", "q"], ["y"])], [tensor("q", q)])
    layer = layers(save(m2, tmp_path, "int.onnx"))["q"]
    assert any(f.code == "IA305" for f in layer.findings) and layer.ratio is None


def test_gate_reordering_concat_of_slices(tmp_path):
    w_ih = xavier_uniform(RNG, (80, 10), 10, 80)  # PyTorch weight_ih [4H, I], gates i f g o
    consts = [tensor(n, np.array(v, np.int64)) for n, v in
              (("s0", [0]), ("s1", [20]), ("s2", [40]), ("s3", [60]), ("s4", [80]), ("ax", [0]), ("u0", [0]))]
    nodes = [helper.make_node("Slice", ["w_ih", a, b, "ax"], [f"g{i}"])
             for i, (a, b) in enumerate((("s0", "s1"), ("s3", "s4"), ("s1", "s2"), ("s2", "s3")))]
    nodes += [helper.make_node("Concat", ["g0", "g1", "g2", "g3"], ["w_iofc"], axis=0),
              helper.make_node("Unsqueeze", ["w_iofc", "u0"], ["W"]),
              helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=20)]
    m = model(nodes, [tensor("w_ih", w_ih), tensor("R", xavier_uniform(RNG, (1, 80, 20), 20, 80)), *consts])
    layer = layers(save(m, tmp_path))["w_ih"]
    assert layer.op == "LSTM" and layer.layout == "OI" and (layer.fan_in, layer.fan_out) == (10, 20)
    assert layer.stats.var == pytest.approx(float(w_ih.astype(np.float64).var()), rel=1e-9)
    assert layer.parts == () and any(f.code == "IA303" for f in layer.findings)


def test_conv_integer_scale_after_an_int32_bias_add(tmp_path):
    q = RNG.integers(-100, 100, (8, 4, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("Mul", ["xs", "ws"], ["scales"]),
             helper.make_node("ConvInteger", ["xq", "q", "xz", "wz"], ["acc"]),
             helper.make_node("Add", ["acc", "bias"], ["acc_b"]),
             helper.make_node("Cast", ["acc_b"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "scales"], ["y"])]
    m = model(nodes, [tensor("q", q), tensor("ws", np.array(0.01, np.float32)), tensor("wz", np.array(0, np.int8)),
                      tensor("bias", np.zeros((1, 8, 1, 1), np.int32))])
    layer = layers(save(m, tmp_path))["q"]
    assert not any(f.code == "IA305" for f in layer.findings)
    assert layer.stats.var == pytest.approx(float((q.astype(np.float64) * 0.01).var()), rel=1e-5)


def test_ia304_scale_computed_at_run_time(tmp_path):
    q = RNG.integers(-128, 128, (16, 8)).astype(np.int8)
    m = model([helper.make_node("DequantizeLinear", ["w", "scale"], ["w_f"]),
               helper.make_node("MatMul", ["x", "w_f"], ["y"])], [tensor("w", q)],
              inputs=[("x", TensorProto.FLOAT, None), ("scale", TensorProto.FLOAT, [])])
    layer = layers(save(m, tmp_path))["w"]
    (finding,) = [f for f in layer.findings if f.code == "IA304"]
    assert finding.severity == "warn" and "scale computed at run time" in finding.message


def test_transpose_without_perm_reverses_the_axes(tmp_path):
    kernel = RNG.normal(0, 0.1, (3, 5, 2, 8)).astype(np.float32)  # reversed: [8, 2, 5, 3] = OIHW
    m = model([helper.make_node("Transpose", ["w"], ["w_t"]), helper.make_node("Conv", ["x", "w_t"], ["y"])],
              [tensor("w", kernel)])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.layout == "WHIO"  # stored axis 0 is the consumer's W, 1 its H, 2 its I, 3 its O
    assert (layer.fan_in, layer.fan_out) == (2 * 15, 8 * 15)


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
    layer = layers(save(m, tmp_path))["w"]
    assert layer.graph == "main" and layer.op == "MatMul" and (layer.fan_in, layer.fan_out) == (8, 4)
    assert [c.graph for c in layer.consumers] == ["main/scan.body"]
    assert layer.stats.var == pytest.approx(var64(w), rel=1e-6)


def test_cast_like_fp16_weight(tmp_path):
    w16 = RNG.normal(0, 0.1, (10, 7)).astype(np.float16)
    m = model([helper.make_node("CastLike", ["w", "x"], ["w32"]), helper.make_node("MatMul", ["x", "w32"], ["y"])],
              [tensor("w", w16)])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.op == "MatMul" and (layer.fan_in, layer.fan_out) == (10, 7) and layer.layout == "IO"
    assert layer.stats.var == pytest.approx(var64(w16), rel=1e-6)


# === step by step =======================================================================================


def moved(op, shape, inputs=("w",), inits=(), graph_inputs=(("x", 1, None),), **attrs):
    node = helper.make_node(op, list(inputs), ["y"], name="n", **attrs)
    graph = ModelGraph(model([node], list(inits), inputs=graph_inputs))
    return _moved_shape(graph, Step(node, graph.scopes[0]), list(shape), numpy_helper.to_array)


# --- Transpose, Flatten ---------------------------------------------------------------------------------

def test_transpose():
    assert moved("Transpose", (2, 3, 4), perm=[1, 0, 2]) == [3, 2, 4]
    assert moved("Transpose", (2, 3, 4)) == [4, 3, 2]             # no perm: axes reversed
    assert moved("Transpose", (2, 3), perm=[0, 0]) is None         # not a permutation


@pytest.mark.parametrize("axis,expected", [
    (None, [2, 60]),      # default axis 1
    (2, [6, 20]), (-1, [24, 5]), (0, [1, 120]), (4, [120, 1]), (-4, [1, 120]),
    (5, None), (-5, None),  # outside [-rank, rank]
])
def test_flatten(axis, expected):
    attrs = {} if axis is None else {"axis": axis}
    assert moved("Flatten", (2, 3, 4, 5), **attrs) == expected


# --- Reshape --------------------------------------------------------------------------------------------

def test_reshape_node():
    target = tensor("t", np.array([0, 12], np.int64))
    assert moved("Reshape", (2, 3, 4), inputs=("w", "t"), inits=[target]) == [2, 12]   # 0 copies axis 0
    assert moved("Reshape", (2, 3, 4), inputs=("w", "t"), inits=[target], allowzero=1) is None  # a real 0
    # the target is a graph input: known only at run time
    assert moved("Reshape", (2, 3, 4), inputs=("w", "s"), graph_inputs=[("s", 7, [2])]) is None


@pytest.mark.parametrize("shape,target,allowzero,expected", [
    ([2, 3, 4], [0, -1], False, [2, 12]),
    ([2, 3, 4], [2, -1], False, [2, 12]),
    ([2, 3, 4], [-1], False, [24]),
    ([6], [1, 1, -1], False, [1, 1, 6]),
    ([2, 3, 4], [-1, -1], False, None),     # two unknowns
    ([2, 3, 4], [5, -1], False, None),      # 24 not divisible by 5
    ([2, 3, 4], [0, -1], True, None),       # a real zero leaves -1 undetermined
    ([2, 3, 4], [5, 5], False, None),       # 25 elements from 24
    ([24], [24, 0], False, None),           # 0 past the input's rank stays 0
])
def test_reshape_target(shape, target, allowzero, expected):
    out = _reshape_target(shape, target, allowzero)
    assert out == expected
    if out is not None:
        assert all(type(d) is int for d in out)


def test_reshaped_axes():
    assert _reshaped_axes([2, 3], [2, 3], [0, 1]) == [0, 1]
    assert _reshaped_axes([3, 1, 4], [3, 4], [0, 1, 2]) == [0, 2]
    assert _reshaped_axes([2, 3], [6], [0, 1]) == [None]


# --- Squeeze, and axes given as an attribute (opset < 13) -------------------------------------------------

@pytest.mark.parametrize("axes,expected", [
    (None, [3, 4]),          # every size-1 axis
    ([1], [3, 4, 1]), ([-1], [3, 1, 4]),
    ([0], None),             # axis 0 is 3, not 1
    ([1, 1], None),          # repeated
    ([4], None), ([-5], None),  # out of range
])
def test_squeeze_axes_attribute(axes, expected):
    attrs = {} if axes is None else {"axes": axes}
    assert moved("Squeeze", (3, 1, 4, 1), **attrs) == expected


def test_squeeze_axes_input():
    axes = tensor("a", np.array([3], np.int64))
    assert moved("Squeeze", (3, 1, 4, 1), inputs=("w", "a"), inits=[axes]) == [3, 1, 4]


def test_axes_in_range():
    assert _axes_in_range([-1, 0], 3) == {2, 0}
    assert _axes_in_range([1, 1], 3) is None
    assert _axes_in_range([3], 3) is None


# --- dequantization on the stored axes --------------------------------------------------------------------

def test_make_dequant_scalar():
    d, problem = _make_dequant(np.array([0.5], np.float64), None, 1, 0, [4, 5], [0, 1], "X")
    assert problem is None and d.axis is None and d.zero_point is None
    assert d.scale.shape == () and d.scale.dtype == np.float32 and float(d.scale) == 0.5


def test_make_dequant_per_axis():
    scale = np.array([1.0, 2.0, 3.0], np.float32)
    # a scalar zero point is repeated along the axis
    d, problem = _make_dequant(scale, np.array(7, np.int8), 1, 0, [4, 3], [0, 1], "X")
    assert problem is None and d.axis == 1
    assert d.zero_point.tolist() == [7, 7, 7] and d.zero_point.dtype == np.int8
    # the consumed axis 0 is the stored axis 1 (a Transpose before the consumer)
    d, problem = _make_dequant(scale, None, 0, 0, [3, 4], [1, 0], "X")
    assert problem is None and d.axis == 1 and d.zero_point is None and d.scale.tolist() == [1, 2, 3]
    assert _make_dequant(scale, None, 0, 0, [4, 3], [0, 1], "X") == \
        (None, "X: per-axis scale of size 3 for an axis of 4")
    assert _make_dequant(np.ones(2), None, 0, 0, [], [], "X") == \
        (None, "X: the quantization axis cannot be traced back to the stored tensor")


def test_make_dequant_blocked():
    # W[4, 5] quantized in blocks of 2 along axis 1: ceil(5 / 2) = 3 blocks per row
    scale = np.ones((4, 3), np.float32)
    zero = np.zeros((4, 3), np.uint8)
    d, problem = _make_dequant(scale, zero, 1, 2, [4, 5], [0, 1], "X")
    assert problem is None and d.axis == 1 and d.block_size == 2 and d.zero_point is zero
    assert _make_dequant(np.ones((4, 2), np.float32), None, 1, 2, [4, 5], [0, 1], "X") == \
        (None, "X: block scale of shape [4, 2], expected [4, 3]")
    assert _make_dequant(scale, zero, 1, 2, [5, 4], [1, 0], "X") == \
        (None, "X: blocked quantization through a transposed or reshaped weight")


def test_dequant_is_a_plain_record():
    d = Dequant(np.ones(()), None, None)
    assert d.block_size == 0 and d.unscaled is False


# --- follow(): the steps replayed on a traced weight ------------------------------------------------------

def follow_one(nodes, inits, inputs=(("x", 1, None),), opset=17):
    from initaudit.trace.follow import find_uses, follow
    graph = ModelGraph(model(nodes, inits, inputs=inputs, opset=opset))
    uses = find_uses(graph, numpy_helper.to_array)
    assert len(uses) == 1
    shape = tuple(uses[0].source.tensor.dims)
    return uses[0], follow(graph, uses[0], shape, numpy_helper.to_array)


W = np.arange(12, dtype=np.float32).reshape(4, 3)


def test_follow_stops_at_a_shape_known_only_at_run_time():
    from initaudit.trace.follow import Followed
    nodes = [helper.make_node("Reshape", ["w", "s"], ["r"], name="r"), helper.make_node("MatMul", ["x", "r"], ["y"])]
    _, followed = follow_one(nodes, [tensor("w", W)], inputs=[("x", 1, None), ("s", 7, [2])])
    assert followed == Followed((4, 3), (0, 1), None, (("IA303", "Reshape 'r' has a shape computed at run time"),))
    assert followed.reordered is False


def test_follow_goes_on_after_cast_and_dequantize():
    nodes = [helper.make_node("Cast", ["w"], ["c"], to=1), helper.make_node("Transpose", ["c"], ["t"]),
             helper.make_node("MatMul", ["x", "t"], ["y"])]
    use, followed = follow_one(nodes, [tensor("w", W)])
    assert followed.shape == (3, 4) and followed.axis_map == (1, 0) and followed.reordered is False
    assert use.source.kind == "initializer" and use.source.scope == "main"
    q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["d"]), helper.make_node("Transpose", ["d"], ["t"]),
             helper.make_node("MatMul", ["x", "t"], ["y"])]
    _, followed = follow_one(nodes, [q, tensor("s", np.float32(0.5)), tensor("z", np.int8(1))])
    assert followed.shape == (3, 4) and followed.axis_map == (1, 0) and followed.problems == ()
    assert float(followed.dequant.scale) == 0.5 and int(followed.dequant.zero_point) == 1


def test_follow_reports_a_dequantization_it_cannot_place():
    q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["d"], name="dq", axis=1),
             helper.make_node("MatMul", ["x", "d"], ["y"])]
    _, followed = follow_one(nodes, [q, tensor("s", np.ones(2, np.float32))])
    assert followed.problems == (("IA304", "DequantizeLinear 'dq': per-axis scale of size 2 for an axis of 3"),)
    assert followed.dequant is None


def test_constant_node_source():
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(W)),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    use, followed = follow_one(nodes, [])
    assert use.source.kind == "constant" and use.source.scope == "main" and followed.shape == (4, 3)


@pytest.mark.parametrize("links,found", [(64, True), (65, False)])
def test_trace_depth_limit(links, found):
    from initaudit.trace.follow import find_uses
    names = ["w"] + [f"i{k}" for k in range(links)]
    nodes = [helper.make_node("Identity", [a], [b]) for a, b in zip(names, names[1:])]
    nodes.append(helper.make_node("MatMul", ["x", names[-1]], ["y"]))
    graph = ModelGraph(model(nodes, [tensor("w", W)]))
    assert bool(find_uses(graph, numpy_helper.to_array)) is found


# --- Concat of slices of one tensor: a gate reordering ----------------------------------------------------

def slices(pieces, axis=0, attribute_form=False, extra_inputs=()):
    """Concat(Slice(w, start, end), ...) along ``axis`` feeding a MatMul; pieces = [(start, end), ...]."""
    nodes, inits = [], [tensor("w", np.arange(24, dtype=np.float32).reshape(6, 4))]
    for k, (start, end) in enumerate(pieces):
        if attribute_form:  # opset 9: starts/ends/axes are attributes
            nodes.append(helper.make_node("Slice", ["w"], [f"p{k}"], starts=[start], ends=[end], axes=[axis]))
        else:
            inits += [tensor(f"b{k}", np.array([start])), tensor(f"e{k}", np.array([end])),
                      tensor(f"a{k}", np.array([axis]))]
            nodes.append(helper.make_node("Slice", ["w", f"b{k}", f"e{k}", f"a{k}", *extra_inputs], [f"p{k}"]))
    inits += [tensor("one", np.array([1])), tensor("two", np.array([2]))]
    nodes += [helper.make_node("Concat", [f"p{k}" for k in range(len(pieces))], ["c"], name="c", axis=axis),
              helper.make_node("MatMul", ["x", "c"], ["y"])]
    return nodes, inits


@pytest.mark.parametrize("pieces,axis,attribute_form,extra,reordered", [
    ([(2, 4), (0, 2), (4, 6)], 0, False, (), True),
    ([(2, 4), (0, 2), (4, 6)], 0, True, (), True),        # attribute form (opset 9)
    ([(2, 4), (0, 2)], 1, True, (), True),                # attribute form, along axis 1
    ([(-4, -2), (0, 2), (-2, 6)], 0, False, (), True),    # negative bounds count from the end
    ([(2, 4), (0, 2), (4, 100)], 0, False, (), True),     # an end past the axis is clipped
    ([(2, 4), (0, 2)], 1, False, (), True),               # along axis 1 (4 columns)
    ([(2, 4), (0, 2)], 0, False, (), False),              # rows 4, 5 missing: not the whole tensor
    ([(2, 4), (0, 3), (4, 6)], 0, False, (), False),      # overlapping
    ([(1, 4), (4, 6)], 0, False, (), False),              # row 0 missing
    ([(2, 4), (0, 2), (4, 6)], 0, False, ("two",), False),  # step 2: not a contiguous piece
    ([(2, 4), (0, 2), (4, 6)], 0, False, ("one",), True),   # explicit step 1
])
def test_concat_of_slices(pieces, axis, attribute_form, extra, reordered):
    from initaudit.trace.follow import find_uses, follow
    nodes, inits = slices(pieces, axis, attribute_form, extra)
    graph = ModelGraph(model(nodes, inits, opset=9 if attribute_form else 17))
    uses = find_uses(graph, numpy_helper.to_array)
    if not reordered:
        assert uses == []
        return
    assert [u.source.name for u in uses] == ["w"]
    followed = follow(graph, uses[0], (6, 4), numpy_helper.to_array)
    assert followed.reordered is True and followed.shape == (6, 4)
    assert followed.problems == (("IA303", "Concat 'c' reorders slices of the weight: per-part statistics "
                                           "unavailable"),)


def test_concat_along_another_axis_than_the_slices():
    nodes, inits = slices([(2, 4), (0, 2), (4, 6)], axis=0)
    nodes[-2] = helper.make_node("Concat", ["p0", "p1", "p2"], ["c"], name="c", axis=1)
    from initaudit.trace.follow import find_uses
    assert find_uses(ModelGraph(model(nodes, inits)), numpy_helper.to_array) == []


# --- integer ops with a zero point and no scale ---------------------------------------------------------

def test_matmul_integer_zero_point_only():
    from initaudit.trace.follow import find_uses, follow
    q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
    graph = ModelGraph(model([node], [q, tensor("wz", np.int8(3))], inputs=[("x", 3, None), ("xz", 3, [])]))
    use = find_uses(graph, numpy_helper.to_array)[0]
    followed = follow(graph, use, (4, 3), numpy_helper.to_array)
    assert followed.problems == ()
    d = followed.dequant
    assert d.unscaled is True and d.axis is None and float(d.scale) == 1.0 and int(d.zero_point) == 3


def test_dequantize_linear_default_axis_is_one():
    q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["d"]), helper.make_node("MatMul", ["x", "d"], ["y"])]
    _, followed = follow_one(nodes, [q, tensor("s", np.array([1.0, 2.0, 4.0], np.float32))])
    assert followed.problems == () and followed.dequant.axis == 1 and followed.dequant.scale.tolist() == [1, 2, 4]


def test_concat_of_slices_without_axes_input():
    # Slice(data, starts, ends): axes default to 0
    nodes, inits = slices([(2, 4), (0, 2), (4, 6)])
    for k in range(3):
        nodes[k] = helper.make_node("Slice", ["w", f"b{k}", f"e{k}"], [f"p{k}"])
    from initaudit.trace.follow import find_uses
    uses = find_uses(ModelGraph(model(nodes, inits)), numpy_helper.to_array)
    assert [u.source.name for u in uses] == ["w"]


def test_concat_with_a_piece_that_is_not_a_slice():
    nodes, inits = slices([(2, 4), (0, 2), (4, 6)])
    nodes[-2] = helper.make_node("Concat", ["p0", "p1", "extra"], ["c"], name="c", axis=0)
    inits.append(tensor("extra", np.zeros((2, 4), np.float32)))
    from initaudit.trace.follow import find_uses
    assert find_uses(ModelGraph(model(nodes, inits)), numpy_helper.to_array) == []


@pytest.mark.parametrize("trans_b,stored,axis", [(None, (4, 3), 1), (0, (4, 3), 1), (1, (3, 4), 0)])
def test_qgemm_scale_is_per_output_column(trans_b, stored, axis):
    # QGemm B: [K=4, N=3], or [N, K] with transB; one scale per output column N = 3
    from initaudit.trace.follow import find_uses, follow
    attrs = {} if trans_b is None else {"transB": trans_b}
    node = helper.make_node("QGemm", ["a", "sa", "za", "w", "sw", "zw"], ["y"], domain="com.microsoft", **attrs)
    inits = [tensor("w", np.arange(12, dtype=np.int8).reshape(stored)), tensor("sw", np.array([1, 2, 4], np.float32)),
             tensor("zw", np.zeros(3, np.int8))]
    graph = ModelGraph(model([node], inits, inputs=[("a", 3, None), ("sa", 1, []), ("za", 3, [])],
                             extra_opsets=[helper.make_opsetid("com.microsoft", 1)]))
    use = find_uses(graph, numpy_helper.to_array)[0]
    followed = follow(graph, use, stored, numpy_helper.to_array)
    assert followed.problems == () and followed.dequant.axis == axis
    assert followed.dequant.scale.tolist() == [1, 2, 4]


@pytest.mark.parametrize("bias,direct", [(False, False), (True, False), (False, True)])
def test_weight_scale_found_after_the_integer_matmul(bias, direct):
    # onnxruntime's dynamic quantizer: Mul(Mul(x_scale, w_scale), Cast(MatMulInteger(x_q, w_q)))
    from initaudit.trace.follow import find_uses, follow
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["acc"])]
    last = "acc"
    if bias:
        nodes.append(helper.make_node("Add", ["acc", "b"], ["acc_b"]))
        last = "acc_b"
    nodes += [helper.make_node("Cast", [last], ["f"], to=1), helper.make_node("Mul", ["xs", "ws"], ["s"]),
              helper.make_node("Mul", ["ws" if direct else "s", "f"], ["y"])]  # direct: the weight scale alone
    inits = [tensor("w", np.arange(12, dtype=np.uint8).reshape(4, 3)), tensor("wz", np.uint8(5)),
             tensor("ws", np.float32(0.25)), tensor("b", np.zeros(3, np.int32))]
    graph = ModelGraph(model(nodes, inits, inputs=[("x", 2, None), ("xz", 2, []), ("xs", 1, [])]))
    use = find_uses(graph, numpy_helper.to_array)[0]
    followed = follow(graph, use, (4, 3), numpy_helper.to_array)
    d = followed.dequant
    assert followed.problems == () and d.unscaled is False
    assert float(d.scale) == 0.25 and int(d.zero_point) == 5


def test_matmul_integer_per_column_zero_point_only():
    # regression: a per-column zero point with no scale anywhere was reported as IA304 "per-axis scale of
    # size 1 for an axis of 3" and not subtracted; the values are integer units minus each column's zero point
    from initaudit.trace.follow import find_uses, follow
    q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
    graph = ModelGraph(model([node], [q, tensor("wz", np.array([1, 2, 3], np.int8))],
                             inputs=[("x", 3, None), ("xz", 3, [])]))
    use = find_uses(graph, numpy_helper.to_array)[0]
    followed = follow(graph, use, (4, 3), numpy_helper.to_array)
    assert followed.problems == ()
    d = followed.dequant
    assert d.unscaled is True and d.axis == 1 and d.scale.tolist() == [1, 1, 1] and d.zero_point.tolist() == [1, 2, 3]


# --- trace(): the load carried through a function call and a second Concat ----------------------------------

LOAD = numpy_helper.to_array
CUSTOM = helper.make_opsetid("custom", 1)
W_GATES = np.arange(24, dtype=np.float32).reshape(6, 4)
GATES = [(2, 4), (0, 2), (4, 6)]   # rows of W_GATES[6, 4] reordered: a gate permutation


def uses_of(m):
    graph = ModelGraph(m)
    return graph, find_uses(graph, LOAD)


def reorder(source, out, prefix, pieces=GATES, constants=False):
    """Concat(Slice(source, s, e), ...) along axis 0: nodes, and the initializers holding the bounds
    (Constant nodes instead when ``constants``: a function body has no initializers)."""
    nodes, inits = [], []
    for k, (start, end) in enumerate(pieces):
        names = [f"{prefix}b{k}", f"{prefix}e{k}", f"{prefix}a{k}"]
        for name, value in zip(names, (start, end, 0)):
            if constants:
                nodes.append(helper.make_node("Constant", [], [name], value=tensor(name, np.array([value]))))
            else:
                inits.append(tensor(name, np.array([value])))
        nodes.append(helper.make_node("Slice", [source, *names], [f"{prefix}p{k}"]))
    nodes.append(helper.make_node("Concat", [f"{prefix}p{k}" for k in range(len(pieces))], [out], name=out, axis=0))
    return nodes, inits


def dense(body_nodes, formals=("x", "w")):
    return helper.make_function("custom", "Dense", list(formals), ["y"], body_nodes, [helper.make_opsetid("", 17)])


def test_gate_reordering_in_the_caller_of_a_function():
    # main: c = Concat(Slice(w)...) → Dense(x, c); the body's MatMul reads c through its formal input
    nodes, inits = reorder("w", "c", "m")
    nodes.append(helper.make_node("Dense", ["x", "c"], ["y"], domain="custom"))
    m = model(nodes, [tensor("w", W_GATES), *inits], functions=[dense([helper.make_node("MatMul", ["x", "w"], ["y"])])],
              extra_opsets=[CUSTOM])
    graph, uses = uses_of(m)
    assert [(u.source.name, u.scope.path) for u in uses] == [("w", "function:custom.Dense")]
    followed = follow(graph, uses[0], (6, 4), LOAD)
    assert followed.reordered is True and followed.shape == (6, 4)


def test_a_second_reordering_behind_a_function_call():
    # the body reorders its formal input; one call passes w1 as stored, the other a reordering of w2:
    # the body's MatMul reads w1, and w2 through two Concats
    body, _ = reorder("w", "r", "f", constants=True)
    body.append(helper.make_node("MatMul", ["x", "r"], ["y"]))
    nodes, inits = reorder("w2", "c", "m")
    nodes += [helper.make_node("Dense", ["x", "w1"], ["y1"], domain="custom"),
              helper.make_node("Dense", ["x", "c"], ["y"], domain="custom")]
    m = model(nodes, [tensor("w1", W_GATES), tensor("w2", W_GATES + 1), *inits], functions=[dense(body)], extra_opsets=[CUSTOM],
              outputs=("y", "y1"))
    graph, uses = uses_of(m)
    assert sorted(u.source.name for u in uses) == ["w1", "w2"]
    (two,) = [u for u in uses if u.source.name == "w2"]
    assert [s.node.op_type for s in two.steps].count("Concat") == 2
    assert follow(graph, two, (6, 4), LOAD).reordered is True


def test_function_called_without_its_optional_weight_input():
    # Dense(x) where the body's MatMul reads the second formal: no weight, and no error
    m = model([helper.make_node("Dense", ["x"], ["y"], domain="custom")], [],
              functions=[dense([helper.make_node("MatMul", ["x", "w"], ["y"])])], extra_opsets=[CUSTOM])
    assert uses_of(m)[1] == []


# --- _slice_range / _reordered_source: what is not a reordering of one tensor ------------------------------

def test_two_axis_slices_are_not_a_reordering():
    # Slice without axes: starts/ends of length 2 cover axes 0 and 1 (ONNX default axes [0, 1]); each piece
    # keeps only columns 0..1, so the Concat is not W_GATES with its rows permuted
    nodes, inits = [], [tensor("w", W_GATES)]
    for k, (start, end) in enumerate(GATES):
        inits += [tensor(f"b{k}", np.array([start, 0])), tensor(f"e{k}", np.array([end, 2]))]
        nodes.append(helper.make_node("Slice", ["w", f"b{k}", f"e{k}"], [f"p{k}"]))
    nodes += [helper.make_node("Concat", ["p0", "p1", "p2"], ["c"], axis=0), helper.make_node("MatMul", ["x", "c"], ["y"])]
    assert uses_of(model(nodes, inits))[1] == []


def test_slice_with_ends_computed_at_run_time_is_not_a_reordering():
    nodes, inits = reorder("w", "c", "")
    nodes[0] = helper.make_node("Slice", ["w", "b0", "n", "a0"], ["p0"])  # ends: a graph input
    nodes.append(helper.make_node("MatMul", ["x", "c"], ["y"]))
    m = model(nodes, [tensor("w", W_GATES), *inits], inputs=[("x", 1, None), ("n", 7, [1])])
    assert uses_of(m)[1] == []


def test_slices_of_two_tensors_are_not_a_reordering():
    # rows 2..3 of w1, 0..1 of w2, 4..5 of w1: a new tensor, not one weight's rows permuted
    nodes, inits = reorder("w1", "c", "")
    nodes[1] = helper.make_node("Slice", ["w2", "b1", "e1", "a1"], ["p1"])
    nodes.append(helper.make_node("MatMul", ["x", "c"], ["y"]))
    assert uses_of(model(nodes, [tensor("w1", W_GATES), tensor("w2", W_GATES), *inits]))[1] == []


# --- follow(): what is kept when a later shape is known only at run time ------------------------------------

def test_dequantization_kept_before_a_shape_computed_at_run_time(tmp_path):
    q = ((np.arange(12) * 7) % 11).astype(np.int8).reshape(4, 3)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["d"]),
             helper.make_node("Reshape", ["d", "shape"], ["r"], name="r"), helper.make_node("MatMul", ["x", "r"], ["y"])]
    m = model(nodes, [tensor("w", q), tensor("s", np.float32(0.5)), tensor("z", np.int8(1))],
              inputs=[("x", 1, None), ("shape", 7, [2])])
    graph, uses = uses_of(m)
    followed = follow(graph, uses[0], (4, 3), LOAD)
    assert followed.problems == (("IA303", "Reshape 'r' has a shape computed at run time"),)
    assert float(followed.dequant.scale) == 0.5 and int(followed.dequant.zero_point) == 1
    # the statistics a user sees are those of (q - 1) · 0.5
    layer = initaudit.audit(save(m, tmp_path), jobs=1).models[0].layers[0]
    values = (q.astype(np.float64) - 1) * 0.5
    assert layer.stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert layer.stats.var == pytest.approx(values.var(), rel=1e-9)


def test_reordering_kept_before_a_shape_computed_at_run_time():
    nodes, inits = reorder("w", "c", "")
    nodes += [helper.make_node("Reshape", ["c", "shape"], ["r"], name="r"), helper.make_node("MatMul", ["x", "r"], ["y"])]
    graph, uses = uses_of(model(nodes, [tensor("w", W_GATES), *inits], inputs=[("x", 1, None), ("shape", 7, [2])]))
    followed = follow(graph, uses[0], (6, 4), LOAD)
    assert followed.reordered is True
    assert [code for code, _ in followed.problems] == ["IA303", "IA303"]


# --- implicit dequantization: problems and the scale after an integer op ---------------------------------------

def followed_integer(nodes, inits, inputs, extra_opsets=()):
    graph, uses = uses_of(model(nodes, inits, inputs=inputs, extra_opsets=list(extra_opsets)))
    (use,) = uses
    return follow(graph, use, tuple(use.source.tensor.dims), LOAD)


Q = tensor("w", np.arange(12, dtype=np.int8).reshape(4, 3))


def test_zero_point_of_the_wrong_size_is_an_ia304():
    # MatMulInteger B[4, 3]: a zero point of 2 values fits neither one per column (3) nor a scalar
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="mm")
    followed = followed_integer([node], [Q, tensor("wz", np.array([1, 2], np.int8))], [("x", 3, None), ("xz", 3, [])])
    ((code, message),) = followed.problems
    assert code == "IA304" and message.startswith("MatMulInteger 'mm': ") and message.endswith("an axis of 3")
    assert followed.dequant is None


def test_weight_scale_of_the_wrong_size_is_an_ia304():
    node = helper.make_node("QGemm", ["a", "sa", "za", "w", "sw", "zw"], ["y"], name="q", domain="com.microsoft")
    inits = [Q, tensor("sw", np.array([1, 2], np.float32)), tensor("zw", np.zeros(2, np.int8))]
    followed = followed_integer([node], inits, [("a", 3, None), ("sa", 1, []), ("za", 3, [])],
                                [helper.make_opsetid("com.microsoft", 1)])
    ((code, message),) = followed.problems
    assert code == "IA304" and message.startswith("QGemm 'q': ") and message.endswith("an axis of 3")


@pytest.mark.parametrize("after", ["Div", "Mul by a graph input"])
def test_no_weight_scale_after_the_integer_op(after):
    # MatMulInteger → Cast → Div(·, constant) is not the quantizer's Mul; Mul(·, x_scale) with x_scale a graph
    # input holds no constant factor: the weight stays in integer units minus its zero point
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["f"], to=1)]
    inits = [Q, tensor("wz", np.int8(5)), tensor("d", np.float32(4.0))]
    nodes.append(helper.make_node("Div", ["f", "d"], ["y"]) if after == "Div" else helper.make_node("Mul", ["f", "xs"], ["y"]))
    followed = followed_integer(nodes, inits, [("x", 3, None), ("xz", 3, []), ("xs", 1, [])])
    d = followed.dequant
    assert followed.problems == () and d.unscaled is True and float(d.scale) == 1.0 and int(d.zero_point) == 5


# === explicit inputs of Loop and Scan bodies ===========================================================

def _body(nodes, inputs, outputs):
    return helper.make_graph(nodes, "body", [helper.make_tensor_value_info(n, 1, None) for n in inputs],
                             [helper.make_tensor_value_info(n, 1, None) for n in outputs])


def _loop_graph(body_nodes, body_outputs, loop_inputs=("n", "", "h0", "w"), opset=17):
    body = _body(body_nodes, ["i", "c", "h", "wb"], body_outputs)
    loop = helper.make_node("Loop", list(loop_inputs), ["h_last", "w_last"], name="loop", body=body)
    graph = ModelGraph(model([loop], [tensor("w", W), tensor("h0", np.zeros((1, 4), np.float32))],
                             inputs=[("n", TensorProto.INT64, [])], opset=opset))
    return graph, graph.scopes[1]


@pytest.mark.parametrize("nodes,outputs,outer", [
    ([], ["c", "h", "wb"], "w"),                                                       # passed on as is
    ([helper.make_node("Identity", ["wb"], ["w1"])], ["c", "h", "w1"], "w"),           # through an Identity
    ([helper.make_node("Neg", ["wb"], ["w1"])], ["c", "h", "w1"], None),               # changed every step
    ([], ["c", "h", "h"], None),                                                       # replaced by another value
    ([], ["c", "h"], None),                                                            # no output for it
])
def test_a_loop_carried_value_is_its_initial_value_when_the_body_passes_it_on(nodes, outputs, outer):
    from initaudit.trace.follow import body_input_source
    graph, body = _loop_graph(nodes, outputs)
    found = body_input_source(graph, body, "wb")
    assert (found[1] if found else None) == outer
    if found:
        assert found[0] is graph.scopes[0] and found[2] is None  # no step: the values are the initial ones


def test_the_iteration_count_and_condition_of_a_loop_body_are_not_outer_values():
    from initaudit.trace.follow import body_input_source
    graph, body = _loop_graph([], ["c", "i", "wb"], loop_inputs=("n", "n", "h0", "w"))
    assert body_input_source(graph, body, "i") is None and body_input_source(graph, body, "c") is None
    assert body_input_source(graph, body, "not_an_input") is None


def test_a_loop_input_left_empty_is_not_followed():
    from initaudit.trace.follow import body_input_source
    graph, body = _loop_graph([], ["c", "h", "wb"], loop_inputs=("n", "", "h0", ""))
    assert body_input_source(graph, body, "wb") is None


def _scan_graph(opset=17, axes=None):
    body = _body([helper.make_node("Identity", ["s"], ["s2"])], ["s", "xt", "wt"], ["s2", "xt"])
    attrs = {"scan_input_axes": axes} if axes is not None else {}
    scan = helper.make_node("Scan", ["w", "x", "w3"], ["s_last", "y"], name="scan", body=body, num_scan_inputs=2,
                            **attrs)
    graph = ModelGraph(model([scan], [tensor("w", W), tensor("w3", np.zeros((2, 3, 5), np.float32))], opset=opset))
    return graph, graph.scopes[1]


def test_scan_states_and_scan_inputs():
    from initaudit.trace.follow import Step, body_input_source
    graph, body = _scan_graph()
    outer, name, step = body_input_source(graph, body, "s")
    assert (outer, name, step) == (graph.scopes[0], "w", None)  # a state passed on through an Identity
    outer, name, step = body_input_source(graph, body, "wt")
    assert name == "w3" and step == Step(graph.scopes[0].nodes[0], graph.scopes[0], 2)  # sliced, input 2


def test_scan_of_opset_8_is_not_followed():
    """Scan-8 takes a sequence_lens input first and batches every input: its body inputs map another way."""
    from initaudit.trace.follow import body_input_source
    graph, body = _scan_graph(opset=8)
    assert body_input_source(graph, body, "s") is None and body_input_source(graph, body, "wt") is None


@pytest.mark.parametrize("axes,slot,rank,expected", [
    (None, 2, 3, 0),         # default: axis 0
    ([0, 1], 2, 3, 1),       # the second scan input's axis
    ([0, -1], 2, 3, 2),      # negative: counted from the end of the input's rank
    ([0, 3], 2, 3, None),    # out of range
    ([0, -4], 2, 3, None),
])
def test_scan_axis(axes, slot, rank, expected):
    from initaudit.trace.follow import scan_axis
    attrs = {"scan_input_axes": axes} if axes is not None else {}
    node = helper.make_node("Scan", ["s", "x", "w"], ["y"], num_scan_inputs=2, **attrs)
    assert scan_axis(node, slot, rank) == expected


def _scan_into_matmul(axis, transpose=False):
    """Scan whose body reads a [2, 3, 5]-weight slice (scanned along ``axis``) in a MatMul."""
    nodes = [helper.make_node("Transpose", ["wt"], ["wt2"])] if transpose else []
    nodes.append(helper.make_node("MatMul", ["xt", "wt2" if transpose else "wt"], ["yt"], name="mm"))
    body = _body(nodes, ["xt", "wt"], ["yt"])
    scan = helper.make_node("Scan", ["x", "w3"], ["y"], name="scan", body=body, num_scan_inputs=2,
                            scan_input_axes=[0, axis])
    return ModelGraph(model([scan], [tensor("w3", np.zeros((2, 3, 5), np.float32))]))


@pytest.mark.parametrize("axis,shape,axis_map,sliced", [
    (0, (3, 5), (1, 2), (0,)), (1, (2, 5), (0, 2), (1,)), (-1, (2, 3), (0, 1), (2,))])
def test_follow_removes_the_scanned_axis(axis, shape, axis_map, sliced):
    graph = _scan_into_matmul(axis)
    (use,) = find_uses(graph, numpy_helper.to_array)
    assert use.source.name == "w3" and use.consumer.name == "mm" and [s.node.op_type for s in use.steps] == ["Scan"]
    followed = follow(graph, use, (2, 3, 5), numpy_helper.to_array)
    assert (followed.shape, followed.axis_map, followed.sliced, followed.problems) == (shape, axis_map, sliced, ())


def test_a_transpose_in_the_body_applies_to_the_slice():
    graph = _scan_into_matmul(1, transpose=True)
    (use,) = find_uses(graph, numpy_helper.to_array)
    assert [s.node.op_type for s in use.steps] == ["Scan", "Transpose"]  # data-flow order
    followed = follow(graph, use, (2, 3, 5), numpy_helper.to_array)
    assert followed.shape == (5, 2) and followed.axis_map == (2, 0) and followed.sliced == (1,)


def test_a_scan_axis_out_of_range_is_a_layout_not_followed():
    graph = _scan_into_matmul(3)
    (use,) = find_uses(graph, numpy_helper.to_array)
    followed = follow(graph, use, (2, 3, 5), numpy_helper.to_array)
    assert followed.problems == (("IA303", "Scan 'scan' slices input 1 along an axis out of range"),)


# === weight slots fed by what the file does not store ===================================================

def _graph_inputs(nodes, inits=(), inputs=()):
    return ModelGraph(model(nodes, list(inits), inputs=list(inputs)))


def _unstored(graph):
    return sorted((u.source.name, u.consumer.op_type, u.slot) for u in find_uses(graph, numpy_helper.to_array)
                  if not u.source.has_values)


F = TensorProto.FLOAT


@pytest.mark.parametrize("nodes,inputs,expected", [
    # Conv reads its data in input 0 only: a graph input in its weight slot is a weight, shape known or not
    ([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", F, [1, 3, 8, 8]), ("w", F, [4, 3, 3, 3])],
     [("w", "Conv", 1)]),
    ([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", F, None), ("w", F, None)], [("w", "Conv", 1)]),
    ([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", F, None), ("w", TensorProto.INT64, [4, 3, 3, 3])], []),
    ([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=4)],
     [("x", F, [2, 1, 3]), ("W", F, [1, 16, 3]), ("R", F, [1, 16, 4])], [("R", "LSTM", 2), ("W", "LSTM", 1)]),
    # Gemm B through a Transpose, input 0 computed in the graph
    ([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Transpose", ["w"], ["wt"]),
      helper.make_node("Gemm", ["h", "wt"], ["y"])], [("x", F, [1, 6]), ("w", F, [10, 6])], [("w", "Gemm", 1)]),
    # MatMul/Gemm: input 0 computed in the graph, input 1 a declared float matrix: a weight
    ([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
     [("x", F, [1, 6]), ("w", F, [6, 10])], [("w", "MatMul", 1)]),
    # … not when it is of rank 3 (attention's keys), of an integer type, or has an axis of 1
    ([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("MatMul", ["h", "k"], ["y"])],
     [("x", F, [2, 4, 6]), ("k", F, [2, 6, 4])], []),
    ([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
     [("x", F, [1, 6]), ("w", TensorProto.INT64, [6, 10])], []),
    ([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
     [("x", F, [1, 6]), ("w", F, [6, 1])], []),
    # input 0 is never the weight; a product of two model inputs alone is not a layer
    ([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, [4, 6]), ("b", F, [6, 10])], []),
    # … unless the model holds other unstored weights (exported without parameters: so is this one)
    ([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
      helper.make_node("MatMul", ["r", "w2"], ["y"])],
     [("x", F, [1, 6]), ("w1", F, [6, 8]), ("w2", F, [8, 3])], [("w1", "MatMul", 1), ("w2", "MatMul", 1)]),
    # Gather reads an input table all the time: never an unstored embedding
    ([helper.make_node("Gather", ["table", "ids"], ["y"])], [("table", F, [100, 8]), ("ids", 7, [3])], []),
])
def test_which_graph_inputs_in_weight_slots_are_unstored_weights(nodes, inputs, expected):
    assert _unstored(_graph_inputs(nodes, inputs=inputs)) == expected


def test_a_graph_input_multiplied_by_a_stored_matrix_is_the_data():
    """MatMul(x, W) and MatMul(W2, x): the stored operand is the weight, the graph input the data."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["w2", "x"], ["z"])]
    graph = _graph_inputs(nodes, [tensor("w", np.zeros((6, 10), np.float32)), tensor("w2", np.zeros((4, 6),
                                                                                                   np.float32))],
                          [("x", F, [6, 6])])
    uses = find_uses(graph, numpy_helper.to_array)
    assert sorted((u.source.name, u.slot, u.source.kind) for u in uses) == [("w", 1, "initializer"),
                                                                             ("w2", 0, "initializer")]


def test_an_unstored_weight_keeps_its_declared_type_and_shape():
    graph = _graph_inputs([helper.make_node("Transpose", ["w"], ["wt"], perm=[3, 2, 0, 1]),
                           helper.make_node("Conv", ["x", "wt"], ["y"])],
                          inputs=[("x", F, None), ("w", TensorProto.FLOAT16, [3, 3, 2, 4])])
    (use,) = find_uses(graph, numpy_helper.to_array)
    assert (use.source.kind, use.source.scope, use.source.tensor.data_type) == ("graph_input", "main", 10)
    assert list(use.source.tensor.dims) == [3, 3, 2, 4] and [s.node.op_type for s in use.steps] == ["Transpose"]
    assert follow(graph, use, (3, 3, 2, 4), numpy_helper.to_array).shape == (4, 2, 3, 3)


def test_a_graph_input_fed_into_a_loop_and_passed_on_is_unstored_too():
    body = _body([helper.make_node("Conv", ["h", "wb"], ["h2"])], ["i", "c", "h", "wb"], ["c", "h2", "wb"])
    loop = helper.make_node("Loop", ["n", "", "x", "w"], ["y", "w_last"], body=body)
    graph = _graph_inputs([loop], inputs=[("n", TensorProto.INT64, []), ("x", F, None), ("w", F, [4, 4, 3, 3])])
    assert _unstored(graph) == [("w", "Conv", 1)]


def test_trace_yields_graph_inputs_and_computed_values_only_for_weight_slots():
    from initaudit.trace.follow import constant_value, trace
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"]), helper.make_node("MatMul", ["x", "c"], ["y"])]
    graph = _graph_inputs(nodes, [tensor("shape", np.array([4, 3]))], [("x", F, [2, 4])])
    main = graph.scopes[0]
    assert list(trace(graph, main, "x")) == [] and list(trace(graph, main, "c", load=numpy_helper.to_array)) == []
    (source, steps), = trace(graph, main, "c", load=numpy_helper.to_array, unstored=True)
    assert (source.kind, list(source.tensor.dims), source.definition.count) == ("computed", [4, 3], 12)
    assert constant_value(graph, main, "c", numpy_helper.to_array).tolist() == np.zeros((4, 3)).tolist()
