"""Models quantized by onnxruntime (QDQ, QOperator, dynamic, 4-bit MatMulNBits) read like their float originals.

Fixtures from ``scripts/make_quantized_fixtures.py``: every weight of the float
model is found in the quantized one, with the same fans, and its dequantized
variance is within the int8/int4 rounding of the original's.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import initaudit

FIXTURES = Path(__file__).resolve().parent / "fixtures"
QUANTIZED = sorted((FIXTURES / "quantized").glob("*.onnx"))


def _original(path: Path) -> Path:
    return FIXTURES / "torch" / (path.name.split(".")[0] + ".legacy.onnx")


@pytest.mark.parametrize("path", QUANTIZED, ids=[p.name for p in QUANTIZED])
def test_quantized_weights_match_the_float_model(path):
    quantized = initaudit.audit(path).models[0]
    original = initaudit.audit(_original(path)).models[0]
    assert len(quantized.layers) == len(original.layers)
    for q, f in zip(quantized.layers, original.layers):
        assert (q.fan_in, q.fan_out) == (f.fan_in, f.fan_out), (q.name, f.name)
        assert q.ratio == pytest.approx(f.ratio, rel=0.05), (q.name, q.op)
        assert q.stats.count == f.stats.count
        assert set(f.matches) & set(q.matches) or f.matches == ("other",)


def test_quantized_ops_are_the_real_ones():
    ops = {p.name: {l.op for l in initaudit.audit(p).models[0].layers} for p in QUANTIZED}
    assert ops["lenet_default.qop.onnx"] == {"QLinearConv", "QGemm"}
    assert ops["lenet_default.dynamic.onnx"] == {"ConvInteger", "MatMulInteger"}
    assert ops["lenet_default.qdq.onnx"] == {"Conv", "Gemm"}
    assert "MatMulNBits" in ops["encoder_default.nbits.onnx"]
