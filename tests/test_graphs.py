"""Weights followed through real-world graph shapes: transposes, casts, quantization,
control flow, functions, shared and external tensors."""
from __future__ import annotations

import os

import numpy as np
import pytest
from modelkit import bfloat16, model, raw_tensor, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.errors import InitauditError

RNG = np.random.default_rng(7)


def layers(path, **options):
    return {layer.name: layer for layer in initaudit.audit(path, **options).models[0].layers}


def test_bfloat16_weight(tmp_path):
    codes, w = bfloat16(xavier_uniform(RNG, (64, 32), 64, 32))
    t = raw_tensor("w", TensorProto.BFLOAT16, codes.shape, codes.tobytes())
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [t])
    layer = layers(save(m, tmp_path))["w"]
    assert layer.dtype == "bfloat16"
    assert layer.stats.var == pytest.approx(float(w.astype(np.float64).var()), rel=1e-9)


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
