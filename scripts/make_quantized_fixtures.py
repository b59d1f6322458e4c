#!/usr/bin/env python3
"""Regenerate tests/fixtures/quantized/: the PyTorch-exported fixtures quantized by onnxruntime.

Needs ``pip install onnxruntime`` (and the fixtures from make_torch_fixtures.py). Three
flavours of what users ship:

* ``*.qdq.onnx``   — static QDQ, per-channel int8 weights (QuantizeLinear/DequantizeLinear pairs)
* ``*.qop.onnx``   — static QOperator (QLinearConv, QLinearMatMul)
* ``*.dynamic.onnx`` — dynamic quantization (ConvInteger / MatMulInteger + DynamicQuantizeLinear)
* ``*.nbits.onnx`` — 4-bit weight-only quantization (com.microsoft MatMulNBits), where supported

    python scripts/make_quantized_fixtures.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "torch"
OUT = ROOT / "tests" / "fixtures" / "quantized"
MODELS = {"lenet_default.legacy.onnx": (1, 3, 32, 32), "separable_xavier.legacy.onnx": (1, 16, 8, 8)}
NBITS_MODELS = ["encoder_default.legacy.onnx"]


class RandomInputs(CalibrationDataReader):
    def __init__(self, name: str, shape: tuple[int, ...], count: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for filename, shape in MODELS.items():
        source = SOURCE / filename
        stem = filename.split(".")[0]
        input_name = onnx.load(str(source)).graph.input[0].name
        for fmt, suffix in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")):
            quantize_static(str(source), str(OUT / f"{stem}.{suffix}.onnx"), RandomInputs(input_name, shape),
                            quant_format=fmt, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)
        quantize_dynamic(str(source), str(OUT / f"{stem}.dynamic.onnx"), weight_type=QuantType.QInt8)
        print(f"{stem}: quantized")
    # 4-bit weight-only quantization rewrites MatMul (not Gemm): the encoder's projections
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    for filename in NBITS_MODELS:
        quantizer = MatMulNBitsQuantizer(onnx.load(str(SOURCE / filename)), block_size=16, is_symmetric=False)
        quantizer.process()
        quantizer.model.save_model_to_file(str(OUT / f"{filename.split('.')[0]}.nbits.onnx"))
        print(f"{filename}: MatMulNBits")


if __name__ == "__main__":
    main()
