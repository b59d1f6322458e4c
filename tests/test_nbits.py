"""MatMulNBits' packed blocks decoded (``initaudit/read/nbits.py``): 2, 4 and 8 bits, zero points packed, as
floats or the default, K a whole number of blocks or not; statistics against numpy float64 on the
dequantized values."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit

RNG = np.random.default_rng(7)


def layers(path, **options):
    return {layer.name: layer for layer in initaudit.audit(path, **options).models[0].layers}


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
