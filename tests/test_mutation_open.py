"""Tests written from the survivors marked open in docs/mutation.md (trace.py and layers.py, first run):
a gate reordering seen through a function call or behind a second Concat, functions called without
their optional inputs, multi-axis and run-time Slices, implicit dequantization problems and the scale
after an integer op; on the layers side a part engineered into the warn band, empty parts, fixed-std
matches under an inferred policy, forward_gain with Gemm's alpha, a matrix of exactly 2**20 values.
Expected values come from the ONNX operator definitions, numpy float64 and the band formulas of
bands.py worked by hand (numbers in the comments)."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper, numpy_helper

import initaudit
from initaudit.graph import ModelGraph
from initaudit.trace import find_uses, follow

LOAD = numpy_helper.to_array
CUSTOM = helper.make_opsetid("custom", 1)
W = np.arange(24, dtype=np.float32).reshape(6, 4)
GATES = [(2, 4), (0, 2), (4, 6)]   # rows of W[6, 4] reordered: a gate permutation


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


# --- trace(): the load carried through a function call and a second Concat ----------------------------------

def dense(body_nodes, formals=("x", "w")):
    return helper.make_function("custom", "Dense", list(formals), ["y"], body_nodes, [helper.make_opsetid("", 17)])


def test_gate_reordering_in_the_caller_of_a_function():
    # main: c = Concat(Slice(w)...) → Dense(x, c); the body's MatMul reads c through its formal input
    nodes, inits = reorder("w", "c", "m")
    nodes.append(helper.make_node("Dense", ["x", "c"], ["y"], domain="custom"))
    m = model(nodes, [tensor("w", W), *inits], functions=[dense([helper.make_node("MatMul", ["x", "w"], ["y"])])],
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
    m = model(nodes, [tensor("w1", W), tensor("w2", W + 1), *inits], functions=[dense(body)], extra_opsets=[CUSTOM],
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
    # keeps only columns 0..1, so the Concat is not W with its rows permuted
    nodes, inits = [], [tensor("w", W)]
    for k, (start, end) in enumerate(GATES):
        inits += [tensor(f"b{k}", np.array([start, 0])), tensor(f"e{k}", np.array([end, 2]))]
        nodes.append(helper.make_node("Slice", ["w", f"b{k}", f"e{k}"], [f"p{k}"]))
    nodes += [helper.make_node("Concat", ["p0", "p1", "p2"], ["c"], axis=0), helper.make_node("MatMul", ["x", "c"], ["y"])]
    assert uses_of(model(nodes, inits))[1] == []


def test_slice_with_ends_computed_at_run_time_is_not_a_reordering():
    nodes, inits = reorder("w", "c", "")
    nodes[0] = helper.make_node("Slice", ["w", "b0", "n", "a0"], ["p0"])  # ends: a graph input
    nodes.append(helper.make_node("MatMul", ["x", "c"], ["y"]))
    m = model(nodes, [tensor("w", W), *inits], inputs=[("x", 1, None), ("n", 7, [1])])
    assert uses_of(m)[1] == []


def test_slices_of_two_tensors_are_not_a_reordering():
    # rows 2..3 of w1, 0..1 of w2, 4..5 of w1: a new tensor, not one weight's rows permuted
    nodes, inits = reorder("w1", "c", "")
    nodes[1] = helper.make_node("Slice", ["w2", "b1", "e1", "a1"], ["p1"])
    nodes.append(helper.make_node("MatMul", ["x", "c"], ["y"]))
    assert uses_of(model(nodes, [tensor("w1", W), tensor("w2", W), *inits]))[1] == []


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
    graph, uses = uses_of(model(nodes, [tensor("w", W), *inits], inputs=[("x", 1, None), ("shape", 7, [2])]))
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
