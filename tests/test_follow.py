"""trace.py's shape replay and dequantization, step by step: the consumed shape each axis-moving node
gives (worked out by hand from the ONNX operator definitions), and the dequantization put on the stored
axes. Written from the survivors of a mutmut run over trace.py (docs/mutation.md).
"""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, tensor
from onnx import helper, numpy_helper

from initaudit.read.graph import ModelGraph
from initaudit.trace.follow import (
    Dequant,
    Step,
    _axes_in_range,
    _make_dequant,
    _moved_shape,
    _reshape_target,
    _reshaped_axes,
)


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
