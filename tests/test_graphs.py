"""Weights followed through real-world graph shapes: transposes, casts, quantization,
control flow, functions, shared and external tensors."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from modelkit import bfloat16, model, raw_tensor, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.errors import InitauditError

RNG = np.random.default_rng(7)


def layers(path, **options):
    return {layer.name: layer for layer in initaudit.audit(path, **options).models[0].layers}


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


def test_reshape_that_merges_axes_is_reported(tmp_path):
    w = xavier_uniform(RNG, (4, 16, 32), 64, 32)
    m = model([helper.make_node("Reshape", ["w", "s"], ["w2"]),
               helper.make_node("MatMul", ["x", "w2"], ["y"])],
              [tensor("w", w), tensor("s", np.array([64, 32], np.int64))])
    layer = layers(save(m, tmp_path))["w"]
    assert (layer.fan_in, layer.fan_out) == (64, 32)
    assert any(f.code == "IA303" for f in layer.findings) and layer.layout == "IO"


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


def test_bfloat16_weight(tmp_path):
    codes, w = bfloat16(xavier_uniform(RNG, (64, 32), 64, 32))
    t = raw_tensor("w", TensorProto.BFLOAT16, codes.shape, codes.tobytes())
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [t])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.dtype == "bfloat16"
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


def test_shared_weight_one_entry(tmp_path):
    w = xavier_uniform(RNG, (32, 16), 32, 16)
    m = model([helper.make_node("MatMul", ["x", "w"], ["a"], name="first"),
               helper.make_node("MatMul", ["a2", "w"], ["y"], name="second")], [tensor("w", w)])
    found = layers(save(m, tmp_path))
    assert list(found) == ["w"] and [c.node for c in found["w"].consumers] == ["first", "second"]
    assert not any(f.code == "IA302" for f in found["w"].findings)


def test_tied_embedding_conflict(tmp_path):
    table = RNG.normal(0, 0.05, (100, 16)).astype(np.float32)
    m = model([helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
               helper.make_node("Gemm", ["h", "table"], ["y"], transB=1, name="lm_head")], [tensor("table", table)])
    layer = layers(save(m, tmp_path))["table"]
    assert len(layer.consumers) == 2 and any(f.code == "IA302" for f in layer.findings)


def test_external_data_aligned_and_not(tmp_path):
    w1 = xavier_uniform(RNG, (64, 48), 64, 48)
    w2 = xavier_uniform(RNG, (48, 8), 48, 8)
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
              [tensor("w1", w1), tensor("w2", w2)])
    raw = w1.tobytes() + b"\x00" * 3 + w2.tobytes()  # w2 at an offset that is not 4-byte aligned
    (tmp_path / "weights.bin").write_bytes(raw)
    for init, offset, length in ((m.graph.initializer[0], 0, w1.nbytes),
                                 (m.graph.initializer[1], w1.nbytes + 3, w2.nbytes)):
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
            init.external_data.add(key=key, value=value)
    found = layers(save(m, tmp_path))
    assert found["w1"].storage == "external" and found["w2"].storage == "external"
    assert found["w1"].stats.var == pytest.approx(float(w1.astype(np.float64).var()), rel=1e-9)
    assert found["w2"].stats.var == pytest.approx(float(w2.astype(np.float64).var()), rel=1e-9)


def _external_model(tmp_path, location: str, length: int | None = None):
    w = xavier_uniform(RNG, (16, 8), 16, 8)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    init.external_data.add(key="length", value=str(length if length is not None else w.nbytes))
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return save(m, folder), w


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    path, w = _external_model(tmp_path, location)
    (tmp_path / "secret.bin").write_bytes(w.tobytes())
    (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(InitauditError, match="refusing|not a plain relative path"):
        initaudit.audit(path)


def test_external_data_problems(tmp_path):
    path, w = _external_model(tmp_path, "w.bin")
    with pytest.raises(InitauditError, match="not found"):
        initaudit.audit(path)
    (path.parent / "w.bin").write_bytes(w.tobytes()[:100])
    with pytest.raises(InitauditError, match="past the end"):
        initaudit.audit(path)
    path, w = _external_model(tmp_path, "w.bin", length=12)
    with pytest.raises(InitauditError, match="does not match"):
        initaudit.audit(path)


def test_unsupported_consumer_is_listed_not_dropped(tmp_path):
    w = RNG.normal(0, 0.1, (64, 3, 3, 3)).astype(np.float32)
    bias_table = RNG.normal(0, 0.1, (16, 16)).astype(np.float32)
    m = model([helper.make_node("FancyConv", ["x", "w"], ["h"], domain="vendor"),
               helper.make_node("Add", ["h", "pos"], ["y"])], [tensor("w", w), tensor("pos", bias_table)],
              extra_opsets=[helper.make_opsetid("vendor", 1)])
    report = initaudit.audit(save(m, tmp_path)).models[0]
    (layer,) = report.layers
    assert layer.name == "w" and layer.op == "vendor.FancyConv" and layer.findings[0].code == "IA301"
    assert layer.status == "warn" and layer.stats.count == w.size
    assert [(s.name, s.op) for s in report.skipped] == [("pos", "Add")]


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


@pytest.mark.parametrize("bits,block,k,zero_kind", [(4, 32, 100, "packed"), (4, 16, 64, None), (8, 16, 40, "float"),
                                                    (2, 16, 48, "packed")])
def test_matmul_nbits(tmp_path, bits, block, k, zero_kind):
    from initaudit.read.nbits import NBitsLayout
    n = 24
    lay = NBitsLayout(n, k, bits, block)
    codes = RNG.integers(0, 1 << bits, (n, lay.k_blocks * block)).astype(np.uint8)
    per_byte = 8 // bits
    packed = np.zeros((n, lay.k_blocks * block // per_byte), np.uint8)
    for j in range(per_byte):
        packed |= (codes[:, j::per_byte] << (bits * j)).astype(np.uint8)
    scales = RNG.uniform(0.01, 0.02, (n, lay.k_blocks)).astype(np.float32)
    zeros = RNG.integers(0, 1 << bits, (n, lay.k_blocks)).astype(np.uint8)
    inputs, inits = ["x", "B", "scales"], [tensor("B", packed.reshape(lay.stored_shape)), tensor("scales", scales)]
    if zero_kind == "packed":
        per_row = -(-lay.k_blocks * bits // 8)
        zp = np.zeros((n, per_row * per_byte), np.uint8)
        zp[:, :lay.k_blocks] = zeros
        zp_packed = np.zeros((n, per_row), np.uint8)
        for j in range(per_byte):
            zp_packed |= (zp[:, j::per_byte] << (bits * j)).astype(np.uint8)
        inputs.append("zp")
        inits.append(tensor("zp", zp_packed.ravel()))
    elif zero_kind == "float":
        inputs.append("zp")
        inits.append(tensor("zp", zeros.astype(np.float32)))
    else:
        zeros = np.full((n, lay.k_blocks), 1 << (bits - 1), np.uint8)
    m = model([helper.make_node("MatMulNBits", inputs, ["y"], domain="com.microsoft", K=k, N=n, bits=bits,
                                block_size=block)], inits, extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    layer = layers(save(m, tmp_path))["B"]
    weights = ((codes.astype(np.float32).reshape(n, lay.k_blocks, block) - zeros[:, :, None])
               * scales[:, :, None]).reshape(n, -1)[:, :k].astype(np.float64)
    assert (layer.fan_in, layer.fan_out) == (k, n) and layer.op == "MatMulNBits"
    assert layer.stats.count == n * k
    assert layer.stats.var == pytest.approx(weights.var(), rel=1e-6)
    assert layer.stats.mean == pytest.approx(weights.mean(), rel=1e-6, abs=1e-9)


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


def test_sparse_initializer(tmp_path):
    dense = xavier_uniform(RNG, (32, 16), 32, 16)
    dense[np.abs(dense) < 0.1] = 0
    flat = np.flatnonzero(dense)
    sparse = helper.make_sparse_tensor(tensor("w", dense.ravel()[flat]), tensor("w_idx", flat.astype(np.int64)),
                                       [32, 16])
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [])
    m.graph.sparse_initializer.append(sparse)
    layer = layers(save(m, tmp_path))["w"]
    assert (layer.fan_in, layer.fan_out) == (32, 16)
    assert layer.stats.zeros == dense.size - flat.size
    assert layer.stats.var == pytest.approx(float(dense.astype(np.float64).var()), rel=1e-9)


def test_external_data_with_a_second_hard_link_is_refused(tmp_path):
    path, w = _external_model(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(w.tobytes())
    os.link(path.parent / "w.bin", tmp_path / "elsewhere.bin")
    with pytest.raises(InitauditError, match="hard links"):
        initaudit.audit(path)
