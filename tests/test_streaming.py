"""The streaming pass (``initaudit/measure/streaming.py``) against plain numpy: every dtype, inline /
external / Constant storage, sequential and spread over worker processes."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import bfloat16, model, raw_tensor, save, tensor, to_external
from onnx import TensorProto, helper

import initaudit
from initaudit.measure import streaming as measure_module
from initaudit.measure.streaming import measure_all
from initaudit.read.tensors import FilePayload, TensorSource
from initaudit.trace.ops import axis_part
from initaudit.trace.plan import MeasureTask

RNG = np.random.default_rng(11)
DTYPES = {
    "float32": (np.float32, TensorProto.FLOAT),
    "float64": (np.float64, TensorProto.DOUBLE),
    "float16": (np.float16, TensorProto.FLOAT16),
}


def _bf16_tensor(name: str, values: np.ndarray) -> tuple[TensorProto, np.ndarray]:
    codes, exact = bfloat16(values)
    return raw_tensor(name, TensorProto.BFLOAT16, codes.shape, codes.tobytes()), exact.astype(np.float64)


@pytest.mark.parametrize("dtype", [*DTYPES, "bfloat16"])
@pytest.mark.parametrize("storage", ["inline", "external", "external-unaligned", "constant"])
def test_streamed_statistics_match_numpy(tmp_path, dtype, storage):
    values = RNG.normal(0.003, 0.05, (96, 80))
    if dtype == "bfloat16":
        t, expected = _bf16_tensor("w", values)
    else:
        np_dtype, _ = DTYPES[dtype]
        t, expected = tensor("w", values.astype(np_dtype)), values.astype(np_dtype).astype(np.float64)
    if storage == "constant":
        m = model([helper.make_node("Constant", [], ["w"], value=t), helper.make_node("MatMul", ["x", "w"], ["y"])], [])
    else:
        m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [t])
        if storage.startswith("external"):
            to_external(m, tmp_path, offset_pad=3 if storage.endswith("unaligned") else 0)
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert layer.storage == ("inline" if storage == "inline" else "constant" if storage == "constant" else "external")
    assert layer.stats.count == expected.size
    assert layer.stats.var == pytest.approx(expected.var(), rel=1e-9)
    assert layer.stats.mean == pytest.approx(expected.mean(), rel=1e-9)
    assert (layer.stats.min, layer.stats.max) == (expected.min(), expected.max())


def test_workers_give_the_same_statistics(tmp_path, monkeypatch):
    values = RNG.normal(0.5, 0.1, (4, 200, 64)).astype(np.float32)
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * 5 + values.tobytes())
    with open(path, "rb") as handle:
        source = TensorSource("w", TensorProto.FLOAT, values.shape, FilePayload(handle.fileno(), 5, values.nbytes))
        parts = tuple(axis_part(f"p{i}", values.shape, 1, 50 * i, 50 * (i + 1)) for i in range(4))
        task = MeasureTask(source, None, parts)
        sequential = measure_all([task], jobs=1)
        monkeypatch.setattr(measure_module, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(measure_module, "PIECE_ELEMS", 3000)
        monkeypatch.setattr(measure_module, "CHUNK_ELEMS", 1000)
        assert len(measure_module._pieces(task)) == 18  # pieces cut across part rows
        parallel = measure_all([task, MeasureTask(source)], jobs=2)
    (whole, part_stats), (again, _) = parallel
    assert whole.var == pytest.approx(values.astype(np.float64).var(), rel=1e-9)
    assert whole.var == pytest.approx(sequential[0][0].var, rel=1e-12) and again.var == pytest.approx(whole.var)
    for i, stats in enumerate(part_stats):
        expected = values[:, 50 * i:50 * (i + 1), :].astype(np.float64)
        assert stats.count == expected.size and stats.var == pytest.approx(expected.var(), rel=1e-9)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("zero_point", [True, False])
def test_dequantize_whole_periods_and_ragged_ranges_match_numpy(axis, zero_point):
    """Ranges of whole channel rows / runs take the path without an index per value: the same numbers."""
    from initaudit.measure.streaming import dequantize
    from initaudit.trace.follow import Dequant

    shape = (6, 5, 4)
    q = RNG.integers(-128, 128, shape).astype(np.int8)
    s = RNG.uniform(0.001, 0.02, shape[axis]).astype(np.float32)
    z = RNG.integers(-3, 3, shape[axis]).astype(np.int8)
    view = [1, 1, 1]
    view[axis] = shape[axis]
    offset = z.astype(np.float64).reshape(view) if zero_point else 0.0
    expected = ((q.astype(np.float64) - offset) * s.astype(np.float64).reshape(view)).ravel()
    dq = Dequant(s, z if zero_point else None, axis)
    flat = q.ravel()
    for start, stop in [(0, flat.size), (20, 100), (40, 80), (3, 77)]:
        np.testing.assert_array_equal(dequantize(flat[start:stop], start, dq, shape), expected[start:stop])
