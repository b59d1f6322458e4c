"""Weights an audit used to miss, end to end through the API and the command line (issue 19, items 3 and 4):
weights passed into Loop and Scan bodies as explicit inputs, weights computed from constants
(ConstantOfShape, Expand, Tile), weights the file does not hold (``export_params=False``: IA002), and a
model with no weight at all (IA003).

The models are tests/fixtures/unseen/, made by scripts/make_unseen_fixtures.py; expected statistics come
from the files' tensors read with onnx's own numpy_helper (numpy float64), fans and codes are literals.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper, numpy_helper

import initaudit
from initaudit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
UNSEEN = ROOT / "tests" / "fixtures" / "unseen"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
RNG = np.random.default_rng(19)


def audit(path, **options):
    return initaudit.audit(path, jobs=1, **options)


def layers(path, **options):
    return {layer.name: layer for layer in audit(path, **options).models[0].layers}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stored(path: Path) -> dict[str, np.ndarray]:
    """Every initializer and Constant-node tensor of the main graph, as onnx reads it (float64)."""
    proto = onnx.load(path)
    found = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return {k: v.astype(np.float64) for k, v in found.items()}


# === weights passed into Loop and Scan bodies =====================================================


def test_paddle_style_loop_decoder_weights_are_all_found():
    path = UNSEEN / "paddle_loop_decoder.onnx"
    found = layers(path)
    values = stored(path)
    assert set(found) == {"W_att", "W_ctx", "W_ih", "W_hh", "W_out"}  # W_decay is changed by the body
    for name, layer in found.items():
        assert layer.op == "MatMul" and layer.graph == "main" and layer.status == "ok"
        assert layer.stats.var == pytest.approx(values[name].var(), rel=1e-9)
        assert layer.stats.count == values[name].size
    assert (found["W_out"].fan_in, found["W_out"].fan_out) == (16, 20) and found["W_out"].layout == "IO"
    assert found["W_ctx"].storage == "constant"  # a Constant node outside the loop
    # one tensor read in the body and outside it: one layer, two consumers
    assert sorted((c.node, c.graph) for c in found["W_att"].consumers) == [
        ("att_matmul", "main/decoder_loop.body"), ("init_matmul", "main")]
    assert [c.graph for c in found["W_hh"].consumers] == ["main/decoder_loop.body"]  # through two Identities


def test_a_loop_carried_value_the_body_changes_is_skipped_not_a_weight():
    report = audit(UNSEEN / "paddle_loop_decoder.onnx").models[0]
    assert [(s.name, s.op, s.reason) for s in report.skipped] == [
        ("W_decay", "Loop", "input 8 of Loop, not a layer weight")]
    assert "W_decay" not in {layer.name for layer in report.layers}


def test_scan_state_and_scan_input_weights():
    path = UNSEEN / "scan_weights.onnx"
    found = layers(path)
    values = stored(path)
    assert set(found) == {"W_state", "W_state2", "W_steps", "W_cols"}
    for name, layer in found.items():
        assert (layer.fan_in, layer.fan_out) == (8, 8) and layer.status == "ok"
        assert layer.stats.var == pytest.approx(values[name].var(), rel=1e-9)
        assert layer.consumers[0].graph == "main/rnn_scan.body"
    assert found["W_state"].layout == found["W_state2"].layout == "IO"
    # scan inputs: the body reads one [8, 8] slice per step, the scanned axis is a batch axis
    assert found["W_steps"].shape == (5, 8, 8) and found["W_steps"].layout == "BIO"
    assert found["W_cols"].shape == (8, 5, 8) and found["W_cols"].layout == "IBO"  # scan_input_axes 1


def test_nested_loops():
    path = UNSEEN / "nested_loop.onnx"
    found = layers(path)
    values = stored(path)
    assert set(found) == {"W1", "W2"}
    inner = "main/outer_loop.body/inner_loop.body"
    assert [c.graph for c in found["W1"].consumers] == [inner]  # carried through both loops
    assert [c.graph for c in found["W2"].consumers] == [inner]  # an outer body input read by name
    for name in ("W1", "W2"):
        assert found[name].stats.var == pytest.approx(values[name].var(), rel=1e-9)
        assert (found[name].fan_in, found[name].fan_out) == (12, 12) and found[name].status == "ok"


@pytest.mark.parametrize("name,weights", [
    ("paddle_loop_decoder.onnx", ["W_att", "W_ctx", "W_ih", "W_hh", "W_out"]),
    ("scan_weights.onnx", ["W_state", "W_state2", "W_steps", "W_cols"]),
    ("nested_loop.onnx", ["W1", "W2"]),
])
def test_loop_and_scan_weights_through_the_cli(capsys, name, weights):
    code, out, err = run(capsys, UNSEEN / name, "--format", "json")
    data = json.loads(out)
    assert code == 0 and err == "" and [layer["name"] for layer in data["layers"]] == weights
    assert data["summary"]["ok"] == len(weights) and data["findings"] == []


def test_loop_fixtures_pass_the_onnx_checker():
    for name in ("paddle_loop_decoder.onnx", "scan_weights.onnx", "nested_loop.onnx"):
        onnx.checker.check_model(onnx.load(UNSEEN / name), full_check=True)


# === weights computed from constants ===============================================================


def test_computed_weights_are_measured_from_their_definition():
    path = UNSEEN / "computed_weights.onnx"
    found = layers(path)
    values = stored(path)
    conv1, conv2, conv3, fc = (found[n] for n in ("conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"))
    assert {layer.storage for layer in found.values()} == {"computed"}
    # ConstantOfShape(0.02): 432 values, all 0.02 (as float32)
    assert conv1.shape == (16, 3, 3, 3) and conv1.stats.count == 432
    assert conv1.stats.mean == float(np.float32(0.02)) and conv1.stats.var == 0.0 and conv1.stats.zeros == 0
    assert [f.code for f in conv1.findings] == ["IA203"] and conv1.status == "fail"
    # ConstantOfShape without a value: float zeros
    assert conv2.stats.count == 2304 and conv2.stats.zeros == 2304
    assert [f.code for f in conv2.findings] == ["IA202"]
    # Tile of a [4, 16, 3, 3] constant four times along axis 0, Expand of a [1, 10] row to [1024, 10]
    tiled = np.tile(values["conv3_part"], (4, 1, 1, 1))
    expanded = np.broadcast_to(values["fc_row"], (1024, 10))
    for layer, expected in ((conv3, tiled), (fc, expanded)):
        assert layer.stats.count == expected.size
        assert layer.stats.mean == pytest.approx(expected.mean(), rel=1e-9)
        assert layer.stats.var == pytest.approx(expected.var(), rel=1e-9)
        assert (layer.stats.min, layer.stats.max) == (expected.min(), expected.max())
    assert (conv3.fan_in, conv3.fan_out) == (144, 144) and (fc.fan_in, fc.fan_out) == (1024, 10)
    # the small constants they are made of are measured as those weights, not skipped on their own
    assert audit(path).models[0].skipped == ()


def test_constant_of_shape_model_fails_through_the_cli(capsys):
    code, out, _ = run(capsys, UNSEEN / "computed_weights.onnx")
    assert code == 1 and "conv1.weight: IA203 fail: all 432 finite values equal 0.02" in out
    assert "conv2.weight: IA202 fail" in out


@pytest.mark.skipif(not (LIGHT / "light_squeezenet.onnx").exists(), reason="the onnx package ships no light models")
def test_the_onnx_packages_light_squeezenet(capsys):
    """Every Conv weight of onnx's light_* test models is ConstantOfShape(0.02): IA203 on each, exit 1."""
    proto = onnx.load(LIGHT / "light_squeezenet.onnx")
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    report = audit(LIGHT / "light_squeezenet.onnx").models[0]
    assert len(report.layers) == len(convs) == 26
    assert all([f.code for f in layer.findings] == ["IA203"] for layer in report.layers)
    assert all(layer.stats.mean == float(np.float32(0.02)) for layer in report.layers)
    code, out, _ = run(capsys, LIGHT / "light_squeezenet.onnx", "--format", "json")
    assert code == 1 and json.loads(out)["summary"]["fail"] == 26


def test_a_large_constant_of_shape_is_measured_in_bounded_memory(tmp_path):
    """ConstantOfShape [5000, 5000]: 97,656 KB of float32 if it were materialized; produced chunk by chunk."""
    fill = numpy_helper.from_array(np.array([0.5], np.float32))
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["w"], value=fill), helper.make_node("MatMul", ["x", "w"], ["y"])]
    path = save(model(nodes, [tensor("s", np.array([5000, 5000], np.int64))]), tmp_path)
    script = ("import resource, initaudit\n"
              "import initaudit.pipeline.run\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              f"layer = initaudit.audit({str(path)!r}, jobs=1).models[0].layers[0]\n"
              "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
              "print(layer.stats.count, layer.stats.mean, layer.stats.var, grown)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    count, mean, var, grown_kb = done.stdout.split()
    assert (int(count), float(mean), float(var)) == (25_000_000, 0.5, 0.0)
    assert int(grown_kb) < 48 * 1024  # KB: under half the tensor


# === weights the file does not hold ================================================================


def test_export_params_false_torch_model():
    """LeNet-5 exported by torch with export_params=False: every weight is a graph input."""
    report = audit(UNSEEN / "lenet_noparams.onnx").models[0]
    found = {layer.name: layer for layer in report.layers}
    assert set(found) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"}
    for layer in found.values():
        assert [f.code for f in layer.findings] == ["IA002"] and layer.status == "fail"
        assert layer.storage == "graph_input" and layer.stats.count == 0 and layer.ratio is None
        assert "exported without parameters (export_params=False)?" in layer.findings[0].message
    assert found["conv1.weight"].shape == (6, 3, 5, 5) and found["conv1.weight"].layout == "OIHW"
    assert (found["conv1.weight"].fan_in, found["conv1.weight"].fan_out) == (75, 150)
    assert found["fc1.weight"].op == "Gemm" and (found["fc1.weight"].fan_in, found["fc1.weight"].fan_out) == (400, 120)
    assert report.status == "fail"


def test_export_params_false_exits_1(capsys):
    code, out, _ = run(capsys, UNSEEN / "lenet_noparams.onnx", "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["summary"] == {"layers": 5, "ok": 0, "warn": 0, "fail": 5, "skipped": 0}
    conv1 = data["layers"][0]
    assert conv1["storage"] == "graph_input" and conv1["count"] == 0 and conv1["var"] is None
    assert run(capsys, UNSEEN / "lenet_noparams.onnx", "--ignore", "IA002")[0] == 0


def test_an_initializer_also_listed_as_a_graph_input_is_measured(tmp_path):
    """keep_initializers_as_inputs: the initializer is a default the caller may override, but it is stored."""
    w = xavier_uniform(RNG, (8, 4, 3, 3), 36, 72)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"])], [tensor("w", w)],
              inputs=[("x", TensorProto.FLOAT, [1, 4, 8, 8]), ("w", TensorProto.FLOAT, [8, 4, 3, 3])])
    (layer,) = audit(save(m, tmp_path)).models[0].layers
    assert layer.storage == "inline" and layer.status == "ok"
    assert layer.stats.var == pytest.approx(float(w.astype(np.float64).var()), rel=1e-9)


def test_a_matmul_of_an_activation_and_a_data_input_is_not_an_unstored_weight(tmp_path):
    """MatMul(x, W) with W stored, then MatMul(h, q) where q is a model input of rank 3: only W is a weight."""
    w = xavier_uniform(RNG, (16, 16), 16, 16)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "q"], ["y"])]
    m = model(nodes, [tensor("w", w)], inputs=[("x", TensorProto.FLOAT, [4, 16]), ("q", TensorProto.FLOAT, [2, 16, 16])])
    report = audit(save(m, tmp_path)).models[0]
    assert [layer.name for layer in report.layers] == ["w"] and report.status == "ok"


# === a model with no weight ========================================================================


def test_a_model_with_no_weight_says_so(capsys):
    report = audit(UNSEEN / "no_weights.onnx")
    (model_report,) = report.models
    assert [(f.code, f.severity, f.message) for f in model_report.findings] == [
        ("IA003", "warn", "no weight-carrying layer found: nothing was checked")]
    assert report.warnings == (f"{UNSEEN / 'no_weights.onnx'}: no weight-carrying layer found: nothing was checked",)
    assert report.exit_code == 0
    code, out, err = run(capsys, UNSEEN / "no_weights.onnx")
    assert code == 0 and "model: IA003 warn: no weight-carrying layer found" in out
    assert err == f"initaudit: warning: {UNSEEN / 'no_weights.onnx'}: no weight-carrying layer found: nothing was checked\n"
    assert run(capsys, UNSEEN / "no_weights.onnx", "--fail-on", "warn")[0] == 1
    code, out, err = run(capsys, UNSEEN / "no_weights.onnx", "--ignore", "IA003")
    assert code == 0 and "IA003" not in out + err


def test_a_model_whose_weight_like_constants_are_all_skipped_is_not_empty(tmp_path):
    m = model([helper.make_node("Add", ["x", "table"], ["y"])], [tensor("table", RNG.normal(0, 1, (8, 8)))])
    report = audit(save(m, tmp_path)).models[0]
    assert report.layers == () and [s.name for s in report.skipped] == ["table"]
    assert report.findings == ()


def test_unsupported_weights_only_are_not_empty(tmp_path):
    m = model([helper.make_node("FancyConv", ["x", "w"], ["y"], domain="custom")],
              [tensor("w", RNG.normal(0, 1, (8, 4, 3, 3)).astype(np.float32))],
              extra_opsets=[helper.make_opsetid("custom", 1)])
    report = audit(save(m, tmp_path)).models[0]
    assert [f.code for f in report.layers[0].findings] == ["IA301"] and report.findings == ()


# === the fixtures are what the script makes =======================================================


def test_fixtures_are_regenerated_by_the_script():
    """The committed files are exactly what scripts/make_unseen_fixtures.py builds (all but the torch export)."""
    spec = importlib.util.spec_from_file_location("make_unseen_fixtures", ROOT / "scripts" / "make_unseen_fixtures.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, build in script.BUILDERS.items():
        assert build().SerializeToString() == (UNSEEN / name).read_bytes(), name
