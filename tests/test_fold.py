"""Shapes computed from constants at run time are folded, so the weights behind them are traced.

The unfolded fixtures come from ``scripts/make_unfolded_fixtures.py`` (torch 2.13 legacy
exporter with ``do_constant_folding=False``, same seeds as ``make_torch_fixtures.py``, so
``tests/fixtures/torch/expected.json`` holds torch's own fans for them), and a
Keras-3-style depthwise kernel built with onnx.helper.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, tensor
from onnx import TensorProto, helper, numpy_helper

import initaudit
from initaudit.read.fold import MAX_ELEMENTS, fold_value
from initaudit.read.graph import ModelGraph

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UNFOLDED = FIXTURES / "unfolded"
EXPECTED = json.loads((FIXTURES / "torch" / "expected.json").read_text())
QUANTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
TORCH_MODELS = sorted(p.name.split(".")[0] for p in UNFOLDED.glob("*.unfolded.onnx"))


def fold(m: onnx.ModelProto, name: str):
    graph = ModelGraph(m)
    return fold_value(graph, graph.scopes[0], name, numpy_helper.to_array)


def const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)))


# --- the evaluator, against numpy / the ONNX operator definitions by hand -----------------------------------------


def test_keras_style_reshape_target():
    nodes = [helper.make_node("Shape", ["k"], ["s"]), const("i2", np.int64(2)), const("i3", np.int64(3)),
             helper.make_node("Gather", ["s", "i2"], ["c"], axis=0), helper.make_node("Gather", ["s", "i3"], ["m"]),
             helper.make_node("Mul", ["c", "m"], ["cm"]), const("one", np.int64(1)),
             helper.make_node("Unsqueeze", ["cm", "ax"], ["u_cm"]), helper.make_node("Unsqueeze", ["one", "ax"], ["u1"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["hw"]),
             helper.make_node("Concat", ["hw", "u1", "u_cm"], ["target"], axis=0)]
    inits = [tensor("k", np.zeros((3, 5, 8, 2), np.float32)), tensor("ax", np.array([0])),
             tensor("zero", np.array([0])), tensor("two", np.array([2]))]
    value = fold(model(nodes, inits), "target")
    assert value.tolist() == [3, 5, 1, 16] and value.dtype == np.int64


def test_shape_of_a_static_graph_input_with_start_end():
    m = model([helper.make_node("Shape", ["x"], ["s"], start=1, end=-1)], [], inputs=[("x", 1, [2, 7, 4, 9])])
    assert fold(m, "s").tolist() == [7, 4]


def test_shape_of_a_dynamic_graph_input_is_not_folded():
    m = model([helper.make_node("Shape", ["x"], ["s"])], [], inputs=[("x", 1, ["N", 7])])
    assert fold(m, "s") is None


def test_arithmetic_follows_onnx():
    nodes = [const("a", np.array([-7, 7], np.int64)), const("b", np.array([2, 2], np.int64)),
             helper.make_node("Div", ["a", "b"], ["q"]),          # integer Div truncates: [-3, 3]
             helper.make_node("Mod", ["a", "b"], ["r"]),          # Mod (fmod=0) takes the divisor's sign: [1, 1]
             helper.make_node("Mod", ["a", "b"], ["f"], fmod=1),  # fmod: the dividend's sign: [-1, 1]
             helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Neg", ["a"], ["n"])]
    m = model(nodes, [])
    assert fold(m, "q").tolist() == [-3, 3]
    assert fold(m, "r").tolist() == [1, 1]
    assert fold(m, "f").tolist() == [-1, 1]
    assert fold(m, "d").tolist() == [-9, 5]
    assert fold(m, "n").tolist() == [7, -7]


def test_range_cast_squeeze_identity_reshape():
    nodes = [const("start", np.int64(1)), const("limit", np.int64(10)), const("delta", np.int64(3)),
             helper.make_node("Range", ["start", "limit", "delta"], ["r"]),  # 1, 4, 7
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["r", "ax"], ["ur"]), helper.make_node("Squeeze", ["ur", "ax"], ["sr"]),
             helper.make_node("Identity", ["sr"], ["ir"]), helper.make_node("Reshape", ["ir", "shape"], ["rr"])]
    m = model(nodes, [tensor("ax", np.array([0])), tensor("shape", np.array([3, 1]))])
    assert fold(m, "r").tolist() == [1, 4, 7]
    assert fold(m, "rf").dtype == np.float32
    assert fold(m, "ur").shape == (1, 3)
    assert fold(m, "ir").tolist() == [1, 4, 7]
    assert fold(m, "rr").shape == (3, 1)


def test_slice_with_negative_and_huge_bounds():
    nodes = [helper.make_node("Slice", ["v", "s", "e"], ["a"]), helper.make_node("Slice", ["v", "s2", "e2", "ax", "st"], ["b"])]
    inits = [tensor("v", np.arange(10)), tensor("s", np.array([-3])), tensor("e", np.array([2 ** 63 - 1])),
             tensor("s2", np.array([8])), tensor("e2", np.array([1])), tensor("ax", np.array([0])),
             tensor("st", np.array([-3]))]
    m = model(nodes, inits)
    assert fold(m, "a").tolist() == [7, 8, 9]
    assert fold(m, "b").tolist() == [8, 5, 2]


def test_gives_up_on_run_time_values_and_large_tensors():
    big = MAX_ELEMENTS + 1
    nodes = [helper.make_node("Shape", ["x"], ["sx"]), helper.make_node("Add", ["x", "x"], ["xx"]),
             helper.make_node("Identity", ["big"], ["bi"]), helper.make_node("Shape", ["big"], ["sbig"]),
             const("zero", np.int64(0)), const("ten", np.int64(10)),
             helper.make_node("Div", ["ten", "zero"], ["divzero"]),
             helper.make_node("Gather", ["small", "ten"], ["oob"]),
             helper.make_node("Relu", ["small"], ["unknown_op"])]
    m = model(nodes, [tensor("big", np.zeros(big, np.float32)), tensor("small", np.arange(3))],
              inputs=[("x", 1, None)])
    for name in ("sx", "xx", "bi", "divzero", "oob", "unknown_op", "undefined_name"):
        assert fold(m, name) is None, name
    assert fold(m, "sbig").tolist() == [big]  # a large tensor's shape is known without loading it


def test_a_cycle_does_not_recurse_forever():
    nodes = [helper.make_node("Add", ["b", "one"], ["a"]), helper.make_node("Add", ["a", "one"], ["b"])]
    assert fold(model(nodes, [tensor("one", np.array([1]))]), "a") is None


# --- weights computed from constants: defined, then produced chunk by chunk -----------------------------------------


def test_small_expand_and_tile_are_folded():
    nodes = [helper.make_node("Expand", ["col", "shape"], ["e"]), helper.make_node("Tile", ["m", "reps"], ["t"]),
             helper.make_node("Expand", ["m", "shape_up"], ["e2"])]
    col, m = np.arange(3, dtype=np.float32).reshape(3, 1), np.arange(6, dtype=np.float32).reshape(2, 3)
    inits = [tensor("col", col), tensor("shape", np.array([2, 3, 4])), tensor("m", m), tensor("reps", np.array([2, 3])),
             tensor("shape_up", np.array([3, 1, 1]))]  # a 1 in the target keeps m's own axis length
    graph = model(nodes, inits)
    assert fold(graph, "e").tolist() == (col * np.ones((2, 3, 4))).tolist()  # Expand: numpy broadcasting
    assert fold(graph, "t").tolist() == np.tile(m, (2, 3)).tolist()
    assert fold(graph, "e2").shape == (3, 2, 3)


def computed(nodes, inits, name="w"):
    from initaudit.read.fold import computed_value
    graph = ModelGraph(model(nodes, inits))
    return computed_value(graph, graph.scopes[0], name, numpy_helper.to_array)


def produced(value, chunk: int) -> np.ndarray:
    return np.concatenate([value.values(a, min(a + chunk, value.count)) for a in range(0, value.count, chunk)])


@pytest.mark.parametrize("small_shape,repeats", [
    ((1, 1, 1, 1), (64, 3, 3, 3)),  # ConstantOfShape
    ((1, 64), (100, 1)),            # Expand of a row
    ((64, 1), (1, 100)),            # Expand of a column: runs of one value
    ((2, 3), (2, 3)),               # Tile
    ((2, 1, 3), (2, 5, 2)),         # varies along axes 0 and 2, repeated along 1
    ((4, 1, 1), (2, 3, 5)),
])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_tiled_values_are_numpys_tile_in_any_chunks(small_shape, repeats, chunk):
    from initaudit.read.fold import Tiled
    small = np.random.default_rng(3).normal(size=small_shape).astype(np.float32)
    expected = np.tile(small, repeats).reshape(-1)
    shape = tuple(s * r for s, r in zip(small_shape, repeats))
    assert np.array_equal(produced(Tiled(small, shape), chunk), expected)


def test_tiled_values_by_index_when_the_period_is_long(monkeypatch):
    """A period above PATTERN_MAX is computed element by element: the same values."""
    from initaudit.read import fold as fold_module
    monkeypatch.setattr(fold_module, "PATTERN_MAX", 4)
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    value = fold_module.Tiled(small, (4, 9))
    assert value.period == 18  # 2 rows of small along axis 0, each row 9 long
    assert np.array_equal(produced(value, 5), np.tile(small, (2, 3)).reshape(-1))


def test_the_largest_computed_value():
    """2³² values (a 16 GiB float32 tensor) are defined; one more is not believed."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["w"])]
    assert computed(nodes, [tensor("s", np.array([1 << 16, 1 << 16]))]).count == 1 << 32
    assert computed(nodes, [tensor("s", np.array([(1 << 32) + 1]))]) is None


def test_constant_of_shape_is_defined_not_materialized():
    fill = numpy_helper.from_array(np.array([0.02], np.float32))
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["w"], value=fill)]
    value = computed(nodes, [tensor("s", np.array([30000, 30000]))])  # 9e8 values, 3.6 GB as float32
    assert value.shape == (30000, 30000) and value.dtype == np.float32 and value.data_type == TensorProto.FLOAT
    assert value.small.size == 1 and value.op == "ConstantOfShape"
    assert value.values(10 ** 8, 10 ** 8 + 3).tolist() == [np.float32(0.02)] * 3
    zeros = computed([helper.make_node("ConstantOfShape", ["s"], ["w"])], [tensor("s", np.array([4, 5]))])
    assert zeros.dtype == np.float32 and not produced(zeros, 7).any()  # no value: float zeros
    int8 = computed([helper.make_node("ConstantOfShape", ["s"], ["w"], value=numpy_helper.from_array(
        np.array([3], np.int8)))], [tensor("s", np.array([2, 2]))])
    assert int8.data_type == TensorProto.INT8 and produced(int8, 3).tolist() == [3, 3, 3, 3]


def test_elementwise_ops_over_computed_values():
    row = np.arange(5, dtype=np.float32).reshape(1, 5)
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["ones"], value=numpy_helper.from_array(
                 np.array([1.5], np.float32))),
             helper.make_node("Expand", ["row", "s"], ["rows"]),
             helper.make_node("Mul", ["ones", "rows"], ["m"]),
             helper.make_node("Sub", ["m", "half"], ["d"]),               # a scalar broadcast
             helper.make_node("Neg", ["d"], ["n"]),
             helper.make_node("Cast", ["n"], ["w"], to=TensorProto.FLOAT16)]
    value = computed(nodes, [tensor("s", np.array([4000, 5])), tensor("row", row), tensor("half", np.float32(0.5))])
    expected = (-(np.full((4000, 5), 1.5, np.float32) * row - np.float32(0.5))).astype(np.float16)
    assert value.shape == (4000, 5) and value.data_type == TensorProto.FLOAT16
    assert np.array_equal(produced(value, 777), expected.reshape(-1))


@pytest.mark.parametrize("nodes,inits", [
    ([helper.make_node("Expand", ["x", "s"], ["w"])], [tensor("s", np.array([4, 4]))]),          # a run-time value
    ([helper.make_node("ConstantOfShape", ["x"], ["w"])], []),                                    # a run-time shape
    ([helper.make_node("Relu", ["big"], ["w"])], [tensor("big", np.zeros(MAX_ELEMENTS + 1, np.float32))]),
    ([helper.make_node("Mul", ["big", "two"], ["w"])],                       # a large stored operand: not read here
     [tensor("big", np.zeros(MAX_ELEMENTS + 1, np.float32)), tensor("two", np.float32(2))]),
    ([helper.make_node("ConstantOfShape", ["s"], ["w"], value=numpy_helper.from_array(np.array([True])))],
     [tensor("s", np.array([5000]))]),                                      # bool: not a weight type numpy writes
    ([helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.array([7], np.int64))),
      helper.make_node("Div", ["c", "c"], ["w"])], [tensor("s", np.array([5000]))]),   # integer division
    ([helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["c", "c"], ["a"]),
      helper.make_node("Add", ["a", "wide"], ["w"])],                       # a computed value broadcast wider
     [tensor("s", np.array([100, 50])), tensor("wide", np.zeros((2, 1, 1), np.float32))]),
    ([helper.make_node("Tile", ["m", "r"], ["w"])], [tensor("m", np.zeros((2, 2), np.float32)),
                                                     tensor("r", np.array([2]))]),      # repeats of the wrong rank
    ([helper.make_node("ConstantOfShape", ["s"], ["w"])], [tensor("s", np.array([1 << 16, 1 << 16, 2]))]),  # 2³³
])
def test_what_is_not_a_computed_value(nodes, inits):
    assert computed(nodes, inits) is None


def test_a_computed_value_is_read_as_a_stored_tensor():
    """Its TensorSource streams the same bytes as the materialized tensor would hold, in any range."""
    from initaudit.read.fold import Tiled, computed_source
    small = np.arange(12, dtype=np.float32).reshape(3, 1, 4)
    source = computed_source(Tiled(small, (6, 5, 4)), "w")
    expected = np.tile(small, (2, 5, 1)).reshape(-1)
    assert (source.shape, source.dtype, source.location, source.count) == ((6, 5, 4), "float", "computed", 120)
    assert np.array_equal(np.concatenate(list(source.iter_values(16))), expected)
    assert np.array_equal(np.concatenate(list(source.iter_values(16, 10, 70))), expected[10:70])
    assert np.array_equal(source.to_array(), expected.reshape(6, 5, 4))


# --- real exports: fans and verdicts as in the folded export, fans as torch computes them -------------------------


def _layers(path: Path, convention: str = "connectivity"):
    return initaudit.audit(path, convention=convention).models[0].layers


def _by_values(path: Path, params: list[dict]):
    """Each torch parameter's layer, found by the quantiles of its values."""
    m = onnx.load(str(path))
    stored = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    stored.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    layers = {layer.name: layer for layer in _layers(path)}
    out = {}
    for param in params:
        names = [name for name, v in stored.items() if name in layers and v.size == int(np.prod(param["shape"]))
                 and v.dtype.kind == "f" and np.allclose(np.quantile(v, QUANTILES), param["quantiles"],
                                                         rtol=1e-3, atol=1e-7)]
        assert len(names) == 1, (param["param"], names)
        out[param["param"]] = layers[names[0]]
    return out


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_unfolded_torch_export_has_torch_fans_and_the_folded_verdict(name):
    params = [p for p in EXPECTED["models"][name]["params"] if p["module"] != "Embedding"]
    unfolded = _by_values(UNFOLDED / f"{name}.unfolded.onnx", params)
    folded = _by_values(FIXTURES / "torch" / f"{name}.legacy.onnx", params)
    for param in params:
        layer, reference = unfolded[param["param"]], folded[param["param"]]
        assert layer.fans["pytorch"].as_list() == param["torch_fans"], param["param"]
        if param["connectivity"]:
            assert layer.fans["connectivity"].as_list() == param["connectivity"], param["param"]
        assert not any(f.code == "IA301" for f in layer.findings), param["param"]
        # the whole-tensor variance ratio and its verdict, as for the folded export
        assert layer.ratio == pytest.approx(reference.ratio, rel=1e-9), param["param"]
        if len(layer.parts) == len(reference.parts):
            assert layer.status == reference.status, param["param"]


def test_unfolded_attention_projection_is_seen_as_packed():
    (packed,) = [layer for layer in _layers(UNFOLDED / "encoder_default.unfolded.onnx") if layer.stats.count == 768]
    assert (packed.fan_in, packed.fan_out) == (16, 16)  # E = 16 per q/k/v part, not 48
    assert any(f.code == "IA103" for f in packed.findings)


def test_keras_depthwise_kernel_behind_a_computed_reshape():
    (layer,) = _layers(UNFOLDED / "keras_depthwise.onnx")
    (reference,) = _layers(UNFOLDED / "keras_depthwise.folded.onnx")
    # by hand: kernel [3, 3, 8, 2], Conv group 8 → per group 1 input channel · 9 taps in, 2 outputs · 9 taps out
    assert layer.fans["connectivity"].as_list() == [9, 18]
    assert layer.fans["keras"].as_list() == [72, 18]  # keras compute_fans on [kh, kw, C, mult]: 9·8, 9·2
    assert not any(f.code == "IA301" for f in layer.findings)
    kernel = numpy_helper.to_array(onnx.load(str(UNFOLDED / "keras_depthwise.onnx")).graph.initializer[0])
    expected_ratio = kernel.astype(np.float64).var() / (2 / (9 + 18))
    assert layer.ratio == pytest.approx(expected_ratio, rel=1e-6)
    assert (layer.status, layer.ratio) == (reference.status, reference.ratio)


# --- Gather with a negative index (issue 19) ---------------------------------------------------------------------


@pytest.mark.parametrize("index,expected", [(-1, 2), (-2, 8), (-4, 3), (3, 2), (0, 3)])
def test_gather_of_a_shape_with_a_negative_index_counts_from_the_end(index, expected):
    """ONNX Gather: an index i < 0 means i + dim; Shape of a [3, 5, 8, 2] weight is [3, 5, 8, 2]."""
    nodes = [helper.make_node("Shape", ["k"], ["s"]), const("i", np.int64(index)),
             helper.make_node("Gather", ["s", "i"], ["d"], axis=0)]
    value = fold(model(nodes, [tensor("k", np.zeros((3, 5, 8, 2), np.float32))]), "d")
    assert value.tolist() == expected and value.ndim == 0


def test_gather_of_a_shape_with_negative_indices_in_a_list_and_out_of_range():
    nodes = [helper.make_node("Shape", ["k"], ["s"]), const("i", np.array([-1, -3, 0], np.int64)),
             helper.make_node("Gather", ["s", "i"], ["d"]), const("bad", np.int64(-5)),
             helper.make_node("Gather", ["s", "bad"], ["e"])]
    m = model(nodes, [tensor("k", np.zeros((3, 5, 8, 2), np.float32))])
    assert fold(m, "d").tolist() == [2, 5, 3]
    assert fold(m, "e") is None  # -5 is outside [-4, 3]: not valid ONNX, not folded
