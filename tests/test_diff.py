"""``initaudit diff`` end to end (``pipeline/diff.py`` and the command): real exports and quantizations
from tests/fixtures, and pairs built here with one problem planted on a known layer."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor
from onnx import helper, numpy_helper

import initaudit
from initaudit.cli.main import main
from initaudit.pipeline.diff import diff
from initaudit.report.schema import schema

FIXTURES = Path(__file__).parent / "fixtures"
TORCH, QUANTIZED = FIXTURES / "torch", FIXTURES / "quantized"
RNG = np.random.default_rng(5)
EXPORTED = sorted(p.name.removesuffix(".legacy.onnx") for p in TORCH.glob("*.legacy.onnx"))


def codes(pair) -> list[str]:
    return [f.code for f in pair.findings]


@pytest.mark.parametrize("name", EXPORTED)
def test_the_two_pytorch_exporters_give_the_same_model_under_other_names(name):
    """The legacy and the dynamo exporter, same weights: every layer matched, all identical."""
    report = diff(TORCH / f"{name}.legacy.onnx", TORCH / f"{name}.dynamo.onnx", jobs=1)
    assert report.layers and not report.unmatched and report.exit_code == 0
    assert all(p.change is not None and p.change.identical for p in report.layers)


def test_renamed_tensors_are_matched_by_place():
    report = diff(TORCH / "encoder_default.legacy.onnx", TORCH / "encoder_default.dynamo.onnx", jobs=1)
    renamed = [p for p in report.layers if p.a != p.b]
    assert renamed and all(p.matched_by == "position" for p in renamed)
    assert {p.a for p in renamed} >= {"onnx::MatMul_166", "onnx::MatMul_205"}


@pytest.mark.parametrize("flavour", ["qdq", "qop", "dynamic"])
def test_healthy_int8_quantizations_keep_about_48_db_and_pass(flavour):
    report = diff(TORCH / "lenet_default.legacy.onnx", QUANTIZED / f"lenet_default.{flavour}.onnx", jobs=1)
    assert len(report.layers) == 5 and not report.unmatched and report.exit_code == 0
    for pair in report.layers:
        assert pair.bits_b == 8 and pair.status == "ok"
        assert 40 < pair.change.sqnr_db < 55 and pair.change.worst_unit_sqnr_db > 40


def test_a_healthy_4bit_matmulnbits_quantization_passes():
    report = diff(TORCH / "encoder_default.legacy.onnx", QUANTIZED / "encoder_default.nbits.onnx", jobs=1)
    quantized = [p for p in report.layers if p.op_b == "MatMulNBits"]
    assert len(quantized) == 3 and report.exit_code == 0
    for pair in quantized:
        assert pair.bits_b == 4 and 18 < pair.change.sqnr_db < 30 and pair.change.correlation > 0.99


def _edited(tmp_path: Path, source: Path, edits: dict[str, float]) -> Path:
    """A copy of ``source`` with each named initializer multiplied (float) or shifted (integer)."""
    m = onnx.load(source)
    for init in m.graph.initializer:
        if init.name in edits:
            values = numpy_helper.to_array(init)
            if values.dtype.kind == "f":
                values = (values * edits[init.name]).astype(values.dtype)
            else:
                values = np.clip(values.astype(np.int64) + int(edits[init.name]), -128, 127).astype(values.dtype)
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    return save(m, tmp_path, source.name)


@pytest.mark.parametrize("edit", [{"fc2.weight_scale": 4.0}, {"fc2.weight_scale": 0.25},
                                  {"fc2.weight_zero_point": 40}])
def test_a_wrong_scale_or_zero_point_fails_that_layer_only(tmp_path, edit):
    damaged = _edited(tmp_path, QUANTIZED / "lenet_default.qdq.onnx", edit)
    report = diff(TORCH / "lenet_default.legacy.onnx", damaged, jobs=1)
    status = {p.a: p.status for p in report.layers}
    assert status == {"conv1.weight": "ok", "conv2.weight": "ok", "fc1.weight": "ok", "fc2.weight": "fail",
                      "fc3.weight": "ok"}
    assert codes(next(p for p in report.layers if p.a == "fc2.weight")) == ["IA601"] and report.exit_code == 1


def test_one_crushed_output_channel_fails_although_the_layer_figure_is_fine(tmp_path):
    m = onnx.load(QUANTIZED / "lenet_default.qdq.onnx")
    init = next(i for i in m.graph.initializer if i.name == "fc1.weight_quantized")
    q = numpy_helper.to_array(init).copy()
    q[17] = np.round(q[17] / 32.0) * 32  # unit 17 rounded to 8 levels, as a per-tensor scale 32× too coarse does
    init.CopyFrom(numpy_helper.from_array(q, init.name))
    report = diff(TORCH / "lenet_default.legacy.onnx", save(m, tmp_path, "q.onnx"), jobs=1)
    fc1 = next(p for p in report.layers if p.a == "fc1.weight")
    assert fc1.change.sqnr_db > 22.2 and fc1.change.worst_unit == 17 and fc1.change.worst_unit_sqnr_db < 22.2
    assert codes(fc1) == ["IA601"] and "output unit 17" in fc1.findings[0].message
    assert [p.a for p in report.layers if p.status != "ok"] == ["fc1.weight"]


def _mlp(weights: dict[str, np.ndarray], transposed: bool = False) -> onnx.ModelProto:
    """x → MatMul(w0) → Relu → MatMul(w1) → …; with ``transposed``, Gemm(transB=1) on W stored [out, in]."""
    nodes, inits, current = [], [], "x"
    for k, (name, w) in enumerate(weights.items()):
        out = f"h{k}"
        if transposed:
            inits.append(tensor(name, np.ascontiguousarray(w.T)))
            nodes.append(helper.make_node("Gemm", [current, name], [out], name=f"fc{k}", transB=1))
        else:
            inits.append(tensor(name, w))
            nodes.append(helper.make_node("MatMul", [current, name], [out], name=f"fc{k}"))
        nodes.append(helper.make_node("Relu", [out], [f"r{k}"]))
        current = f"r{k}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    return model(nodes, inits)


def _weights(n: int = 6, size: int = 32) -> dict[str, np.ndarray]:
    return {f"layer{k}.weight": RNG.normal(0, 0.1, (size, size)).astype(np.float32) for k in range(n)}


def _finetuned(base: dict[str, np.ndarray], keep: str | None = None, far: str | None = None) -> dict[str, np.ndarray]:
    tuned = {}
    for name, w in base.items():
        step = 0.05 * (20 if name == far else 1)
        tuned[name] = w if name == keep else (w + RNG.normal(0, step * w.std(), w.shape)).astype(np.float32)
    return tuned


def test_a_layer_a_finetune_left_bit_identical_is_flagged(tmp_path):
    base = _weights()
    a = save(_mlp(base), tmp_path, "base.onnx")
    b = save(_mlp(_finetuned(base, keep="layer3.weight")), tmp_path, "tuned.onnx")
    report = diff(a, b, jobs=1)
    assert {p.a: codes(p) for p in report.layers if p.findings} == {"layer3.weight": ["IA602"]}
    assert report.exit_code == 0 and diff(a, b, jobs=1, fail_on="warn").exit_code == 1


def test_a_layer_changed_twenty_times_more_than_its_peers_is_flagged(tmp_path):
    base = _weights()
    a = save(_mlp(base), tmp_path, "base.onnx")
    b = save(_mlp(_finetuned(base, far="layer1.weight")), tmp_path, "tuned.onnx")
    report = diff(a, b, jobs=1)
    assert {p.a: codes(p) for p in report.layers if p.findings} == {"layer1.weight": ["IA603"]}


def test_a_gemm_storing_w_transposed_is_compared_in_the_matmuls_order(tmp_path):
    """Same matrices, stored [in, out] for MatMul in A and [out, in] for Gemm(transB=1) in B, renamed."""
    base = _weights(3, 16)
    a = save(_mlp(base), tmp_path, "a.onnx")
    b_model = _mlp({f"gemm{k}": w for k, w in enumerate(base.values())}, transposed=True)
    report = diff(a, save(b_model, tmp_path, "b.onnx"), jobs=1)
    assert len(report.layers) == 3 and not report.unmatched
    assert all(p.change.identical and p.op_b == "Gemm" for p in report.layers)


def _conv_bn(folded: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(9)
    w = rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2.0, 8).astype(np.float32), rng.normal(0, 0.1, 8).astype(np.float32)
    mean, var = rng.normal(0, 0.1, 8).astype(np.float32), rng.uniform(0.5, 1.5, 8).astype(np.float32)
    if folded:
        s = gamma / np.sqrt(var + 1e-5)
        inits = [tensor("conv.weight", (w * s[:, None, None, None]).astype(np.float32)),
                 tensor("conv.bias", (beta - mean * s).astype(np.float32))]
        nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
                 helper.make_node("Relu", ["c"], ["y"])]
    else:
        inits = [tensor("conv.weight", w), tensor("bn.scale", gamma), tensor("bn.bias", beta),
                 tensor("bn.mean", mean), tensor("bn.var", var)]
        nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv"),
                 helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["n"],
                                  name="bn", epsilon=1e-5),
                 helper.make_node("Relu", ["n"], ["y"])]
    return model(nodes, inits)


def test_a_batchnorm_folded_in_b_is_applied_to_a_before_comparing(tmp_path):
    a = save(_conv_bn(False), tmp_path, "a.onnx")
    b = save(_conv_bn(True), tmp_path, "b.onnx")
    (pair,) = diff(a, b, jobs=1).layers
    assert pair.folded == "a" and codes(pair) == ["IA607"] and pair.status == "ok"
    assert pair.change.sqnr_db is None or pair.change.sqnr_db > 120  # float32 rounding at most


def test_layers_on_one_side_only_are_listed(tmp_path):
    base = _weights(4, 16)
    a = save(_mlp(base), tmp_path, "a.onnx")
    fewer = dict(list(base.items())[:2])
    fewer["extra.weight"] = RNG.normal(0, 0.1, (16, 24)).astype(np.float32)
    report = diff(a, save(_mlp(fewer), tmp_path, "b.onnx"), jobs=1)
    assert {(u.side, u.name, codes(u)[0]) for u in report.unmatched} == {
        ("a", "layer2.weight", "IA604"), ("a", "layer3.weight", "IA604"), ("b", "extra.weight", "IA605")}


def test_a_resized_layer_is_matched_and_not_compared(tmp_path):
    base = _weights(2, 16)
    a = save(_mlp(base), tmp_path, "a.onnx")
    grown = {**base, "layer1.weight": RNG.normal(0, 0.1, (16, 20)).astype(np.float32)}
    report = diff(a, save(_mlp(grown), tmp_path, "b.onnx"), jobs=1)
    resized = next(p for p in report.layers if p.a == "layer1.weight")
    assert resized.change is None and codes(resized) == ["IA606"] and "shape changed" in resized.findings[0].message


def test_the_json_report_follows_its_schema_and_names_both_tensors(tmp_path, capsys):
    damaged = _edited(tmp_path, QUANTIZED / "lenet_default.qdq.onnx", {"fc2.weight_scale": 4.0})
    code = main(["diff", str(TORCH / "lenet_default.legacy.onnx"), str(damaged), "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, schema("diff-schema.json"))
    fc2 = next(layer for layer in data["layers"] if layer["a"] == "fc2.weight")
    assert code == 1 == data["exit_code"] and fc2["b"] == "fc2.weight_quantized" and fc2["op"] == "Gemm"
    assert fc2["status"] == "fail" and fc2["findings"][0]["code"] == "IA601" and fc2["identical"] is False
    assert fc2["sqnr_db"] < 0 and fc2["rel_change"] == pytest.approx(3.0, rel=0.02)


def test_the_table_puts_the_worst_layer_first(tmp_path, capsys):
    damaged = _edited(tmp_path, QUANTIZED / "lenet_default.qdq.onnx", {"fc2.weight_scale": 4.0})
    assert main(["diff", str(TORCH / "lenet_default.legacy.onnx"), str(damaged)]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if ".weight" in line and "IA" not in line]
    assert rows[0].startswith("fc2.weight") and rows[0].rstrip().endswith("fail")


def test_the_library_api_is_initaudit_diff():
    report = initaudit.diff(TORCH / "lenet_default.legacy.onnx", QUANTIZED / "lenet_default.qdq.onnx", jobs=1)
    assert len(report.layers) == 5


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    for args in (["diff", str(broken), str(TORCH / "lenet_default.legacy.onnx")],
                 ["diff", str(tmp_path / "missing.onnx"), str(TORCH / "lenet_default.legacy.onnx")],
                 ["diff", str(TORCH / "lenet_default.legacy.onnx")]):
        run = subprocess.run([sys.executable, "-m", "initaudit", *args], capture_output=True, text=True)
        assert run.returncode == 2 and run.stdout == ""
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_nothing_is_written_next_to_either_model(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("lenet_default.legacy.onnx",):
        shutil.copy(TORCH / name, folder / name)
    shutil.copy(QUANTIZED / "lenet_default.qdq.onnx", folder / "q.onnx")
    before = sorted(p.name for p in folder.iterdir())
    diff(folder / "lenet_default.legacy.onnx", folder / "q.onnx", jobs=1)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_4bit_layer_compared_stripe_by_stripe_gives_the_figures_of_the_in_memory_comparison(monkeypatch):
    """MatMul W[in, out] against MatMulNBits' [out, in] blocks above the in-memory bound: stripes of 5 output
    rows, the 4-bit side read from the stored bytes of those rows."""
    from initaudit.measure import compare

    pair = (TORCH / "encoder_default.legacy.onnx", QUANTIZED / "encoder_default.nbits.onnx")
    whole = {p.a: p.change for p in diff(*pair, jobs=1).layers}
    monkeypatch.setattr(compare, "TRANSPOSE_MAX_ELEMS", 64)
    monkeypatch.setattr(compare, "STRIPE_BYTES", 8 * 16 * 5)
    striped = {p.a: p.change for p in diff(*pair, jobs=1).layers}
    assert striped.keys() == whole.keys()
    for name, change in whole.items():
        if not change.identical:
            assert striped[name].sqnr_db == pytest.approx(change.sqnr_db, rel=1e-9), name
            assert striped[name].worst_unit == change.worst_unit


PAIRS = json.loads((FIXTURES / "diff" / "pairs.json").read_text(encoding="utf-8"))["pairs"]
PROBLEM_CODES = {"quantization_damage": "IA601", "unchanged": "IA602", "changed_far_more": "IA603",
                 "only_in_a": "IA604", "only_in_b": "IA605"}


@pytest.mark.parametrize("entry", PAIRS, ids=[p["name"] for p in PAIRS])
def test_every_planted_problem_of_the_diff_pairs_is_found_on_its_layer_and_nowhere_else(entry):
    """tests/fixtures/diff (scripts/make_diff_pairs.py: onnxruntime's quantizers, both exporters, fine-tunes,
    folded BatchNorm, removed and added layers): the manifest says, from what the script did, which weight of
    A is which of B and what was planted where."""
    folder = FIXTURES / "diff"
    report = diff(folder / entry["a"], folder / entry["b"], jobs=1)
    matched = {(p.a, p.b) for p in report.layers}
    assert {(layer["a"], layer["b"]) for layer in entry["layers"]} <= matched
    expected = {(q["a"], q["b"]): PROBLEM_CODES[q["problem"]] for q in entry["planted"]}
    found = {(p.a, p.b): [f.code for f in p.findings if f.severity != "info"] for p in report.layers}
    found.update({((u.name, None) if u.side == "a" else (None, u.name)): [f.code for f in u.findings]
                  for u in report.unmatched})
    assert {key: codes for key, codes in found.items() if codes} == {key: [code] for key, code in expected.items()}
    assert (report.status == "fail") == ("IA601" in expected.values())


def test_a_batchnorm_behind_an_activation_quantization_is_seen_on_both_sides(tmp_path):
    """A static QDQ quantization puts QuantizeLinear → DequantizeLinear between a Conv and its BatchNorm: the
    BatchNorm is still there, so nothing is folded and nothing is applied (the survey of published models
    once saw 27 healthy Convs fail so)."""
    plain = _conv_bn(False)
    quantized = _conv_bn(False)
    graph = quantized.graph
    bn = next(n for n in graph.node if n.op_type == "BatchNormalization")
    bn.input[0] = "c_dq"
    graph.initializer.extend([tensor("c_scale", np.array(0.05, np.float32)), tensor("c_zero", np.array(0, np.uint8))])
    graph.node.insert(1, helper.make_node("QuantizeLinear", ["c", "c_scale", "c_zero"], ["c_q"]))
    graph.node.insert(2, helper.make_node("DequantizeLinear", ["c_q", "c_scale", "c_zero"], ["c_dq"]))
    (pair,) = diff(save(plain, tmp_path, "a.onnx"), save(quantized, tmp_path, "b.onnx"), jobs=1).layers
    assert pair.folded == "" and not pair.findings and pair.change.identical


def test_a_batchnorm_whose_gamma_is_quantized_is_read_through_its_dequantizelinear(tmp_path):
    """onnxruntime's static quantization stores a BatchNorm's γ as int8 behind a DequantizeLinear: A's plain
    BatchNorm and B's quantized one are both BatchNorms, nothing is folded."""
    quantized = _conv_bn(False)
    graph = quantized.graph
    bn = next(n for n in graph.node if n.op_type == "BatchNormalization")
    gamma = next(i for i in graph.initializer if i.name == "bn.scale")
    values = numpy_helper.to_array(gamma)
    scale = np.float32(np.abs(values).max() / 127)
    graph.initializer.extend([tensor("bn.scale_q", np.round(values / scale).astype(np.int8)),
                              tensor("bn.scale_s", np.array(scale, np.float32))])
    graph.node.insert(0, helper.make_node("DequantizeLinear", ["bn.scale_q", "bn.scale_s"], ["bn.scale_dq"]))
    bn.input[1] = "bn.scale_dq"
    (pair,) = diff(save(_conv_bn(False), tmp_path, "a.onnx"), save(quantized, tmp_path, "b.onnx"), jobs=1).layers
    assert pair.folded == "" and not pair.findings and pair.change.identical
    folded = diff(save(quantized, tmp_path, "b.onnx"), save(_conv_bn(True), tmp_path, "c.onnx"), jobs=1).layers[0]
    assert folded.folded == "a" and folded.change.sqnr_db > 35  # γ rounded to int8, then applied
