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
