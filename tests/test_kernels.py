"""The exact fast kernels (16-bit pattern histograms, grouped integer power sums) against numpy
float64 on the dequantized values, computed here independently, and against the general path."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto

from initaudit.measure import kernels
from initaudit.measure import streaming as measure_module
from initaudit.measure.streaming import measure_all
from initaudit.read.nbits import NBitsLayout, make_decoder
from initaudit.read.tensors import MemoryPayload, TensorSource
from initaudit.trace.follow import Dequant
from initaudit.trace.ops import axis_part
from initaudit.trace.plan import MeasureTask

RNG = np.random.default_rng(5)


def reference(values: np.ndarray) -> dict[str, float | int | None]:
    x = np.asarray(values, np.float64).ravel()
    finite = x[np.isfinite(x)]
    d = finite - finite.mean()
    var = float(np.mean(d * d))
    return {"count": finite.size, "nonfinite": x.size - finite.size, "zeros": int(np.count_nonzero(x == 0)),
            "mean": float(finite.mean()), "var": var, "min": float(finite.min()), "max": float(finite.max()),
            "kurt": float(np.mean(d ** 4) / var ** 2 - 3) if var else None}


def check(stats, ref, kurt_rel: float = 1e-9) -> None:
    assert (stats.count, stats.nonfinite, stats.zeros) == (ref["count"], ref["nonfinite"], ref["zeros"])
    assert (stats.min, stats.max) == (ref["min"], ref["max"])
    scale = math.sqrt(ref["var"]) if ref["var"] else abs(ref["mean"]) or 1.0
    assert stats.mean == pytest.approx(ref["mean"], rel=1e-12, abs=1e-12 * scale)
    assert stats.var == pytest.approx(ref["var"], rel=1e-9)
    if ref["kurt"] is None:
        assert stats.excess_kurtosis is None
    else:
        assert stats.excess_kurtosis == pytest.approx(ref["kurt"], rel=kurt_rel, abs=kurt_rel)


def measured(task: MeasureTask, general: bool = False, monkeypatch=None):
    if general:
        monkeypatch.setattr(measure_module, "plan_kernel", lambda task: None)
    return measure_all([task])[0]


def source(data_type: int, shape: tuple[int, ...], raw: bytes) -> TensorSource:
    return TensorSource("w", data_type, shape, MemoryPayload(raw))


# ---------------------------------------------------------------- 16-bit floats

SPECIAL_HALF = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE01]
SPECIAL_BF16 = [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1]


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def half_case(kind: str, size: int, rng: np.random.Generator,
              special_within: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Normal values stored as float16 or bfloat16 bit patterns: (patterns, their float64 values, ONNX type).
    ``special_within``: NaN, ±Inf, ±0, subnormals and the largest finite values scattered, 40 of
    each, among the first that many patterns."""
    normal = rng.normal(0.01, 0.05, size)
    if kind == "float16":
        bits = normal.astype(np.float16).view(np.uint16)
        extra, data_type = SPECIAL_HALF, TensorProto.FLOAT16
    else:
        bits = (normal.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        extra, data_type = SPECIAL_BF16, TensorProto.BFLOAT16
    if special_within is not None:
        at = rng.choice(special_within, 40 * len(extra), replace=False)
        bits = bits.copy()
        bits[at] = np.repeat(np.array(extra, np.uint16), 40)
    values = bits.view(np.float16).astype(np.float64) if kind == "float16" else _bf16_values(bits)
    return bits, values, data_type


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
@pytest.mark.parametrize("special", [False, True])
def test_half_histogram_matches_numpy(kind, special, monkeypatch):
    bits, values, data_type = half_case(kind, 70_001, RNG, 70_001 if special else None)
    task = MeasureTask(source(data_type, (bits.size,), bits.tobytes()))
    assert isinstance(kernels.plan_kernel(task), kernels.HistogramKernel)
    fast, _ = measured(task)
    check(fast, reference(values))
    general, _ = measured(task, general=True, monkeypatch=monkeypatch)
    assert (general.count, general.zeros, general.nonfinite, general.min, general.max) == \
        (fast.count, fast.zeros, fast.nonfinite, fast.min, fast.max)
    assert general.var == pytest.approx(fast.var, rel=1e-9)


def test_half_parts_and_worker_pieces(monkeypatch):
    values = RNG.normal(0.0, 0.1, (4, 300, 70)).astype(np.float16)
    parts = tuple(axis_part(f"p{i}", values.shape, 1, 75 * i, 75 * (i + 1)) for i in range(4))
    task = MeasureTask(source(TensorProto.FLOAT16, values.shape, values.tobytes()), None, parts)
    whole, part_stats = measured(task)
    check(whole, reference(values))
    for i, stats in enumerate(part_stats):
        check(stats, reference(values[:, 75 * i:75 * (i + 1), :]))
    monkeypatch.setattr(measure_module, "HISTOGRAM_CHUNK", 1000)  # chunks that cut part rows
    whole_small, parts_small = measured(task)
    assert whole_small.var == pytest.approx(whole.var, rel=1e-12)
    assert [p.var for p in parts_small] == pytest.approx([p.var for p in part_stats], rel=1e-12)


def test_only_nonfinite_half():
    bits = np.array([0x7C00, 0xFE00, 0x7E00], np.uint16)
    stats, _ = measured(MeasureTask(source(TensorProto.FLOAT16, (3,), bits.tobytes())))
    assert stats.count == 0 and stats.nonfinite == 3


# ---------------------------------------------------------------- DequantizeLinear and friends

INT_TYPES = {
    "int8": (TensorProto.INT8, np.int8, -128, 128),
    "uint8": (TensorProto.UINT8, np.uint8, 0, 256),
    "int16": (TensorProto.INT16, np.int16, -32768, 32768),
    "uint16": (TensorProto.UINT16, np.uint16, 0, 65536),
    "int4": (TensorProto.INT4, np.int8, -8, 8),
    "uint4": (TensorProto.UINT4, np.uint8, 0, 16),
}


def _stored(kind: str, q: np.ndarray) -> bytes:
    data_type, np_type, _, _ = INT_TYPES[kind]
    if kind in ("int4", "uint4"):
        nibbles = (q.ravel().astype(np.int16) & 15).astype(np.uint8)
        if nibbles.size % 2:
            nibbles = np.append(nibbles, np.uint8(0))
        return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()
    return q.astype(np_type).tobytes()


def _codes(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    _, _, lo, hi = INT_TYPES[kind]
    centre, spread = (lo + hi) / 2, (hi - lo) / 6
    return np.clip(np.round(RNG.normal(centre, spread, shape)), lo, hi - 1).astype(np.int64)


def _zero(kind: str, shape) -> np.ndarray:
    _, _, lo, hi = INT_TYPES[kind]
    return RNG.integers(lo, hi, shape)


def _dequant_case(kind: str, layout: str):
    """Codes, the Dequant initaudit traces, and the dequantized values computed here."""
    shape = {"tensor": (33, 17), "axis1": (40, 24), "axis0": (24, 5, 3), "blocked": (6, 45),
             "blocked-odd": (5, 7, 30)}[layout]
    q = _codes(kind, shape)
    if layout == "tensor":
        s, z = np.float32(0.0123), _zero(kind, ())
        return q, Dequant(np.asarray(s), np.asarray(z), None), (q - float(z)) * np.float64(s)
    if layout.startswith("axis"):
        axis = 1 if layout == "axis1" else 0
        c = shape[axis]
        s = RNG.uniform(0.001, 0.02, c).astype(np.float32)
        s[2] = -s[2]  # a negative scale flips min and max
        z = _zero(kind, c)
        view = [1] * len(shape)
        view[axis] = c
        expected = (q - z.reshape(view)) * s.astype(np.float64).reshape(view)
        return q, Dequant(s, z, axis), expected
    block = 8 if layout == "blocked" else 7  # 45 = 5·8 + 5, 30 = 4·7 + 2: padded last blocks
    blocks = -(-shape[-1] // block)
    s = RNG.uniform(0.001, 0.02, (*shape[:-1], blocks)).astype(np.float32)
    z = _zero(kind, s.shape)
    index = np.arange(shape[-1]) // block
    expected = (q - z[..., index]) * s.astype(np.float64)[..., index]
    return q, Dequant(s, z, len(shape) - 1, block), expected


def _scaled(q: np.ndarray, dq: Dequant) -> np.ndarray:
    """``s·q`` in float64 for a dequantization without zero point, by broadcasting in numpy."""
    scale = dq.scale.astype(np.float64)
    if dq.axis is None:
        return q * scale
    if dq.block_size:
        return q * scale[..., np.arange(q.shape[-1]) // dq.block_size]
    view = [1] * q.ndim
    view[dq.axis] = q.shape[dq.axis]
    return q * scale.reshape(view)


@pytest.mark.parametrize("kind", list(INT_TYPES))
@pytest.mark.parametrize("layout", ["tensor", "axis1", "axis0", "blocked", "blocked-odd"])
@pytest.mark.parametrize("zero_point", [True, False])
def test_dequantized_statistics_match_numpy(kind, layout, zero_point, monkeypatch):
    q, dq, expected = _dequant_case(kind, layout)
    if not zero_point:
        dq = Dequant(dq.scale, None, dq.axis, dq.block_size)
        expected = _scaled(q, dq)
    task = MeasureTask(source(INT_TYPES[kind][0], q.shape, _stored(kind, q)), dq)
    assert kernels.plan_kernel(task) is not None
    fast, _ = measured(task)
    check(fast, reference(expected), kurt_rel=1e-5)
    general, _ = measured(task, general=True, monkeypatch=monkeypatch)
    check(general, reference(expected), kurt_rel=1e-5)


def test_zero_scale_and_zero_codes_count_as_zeros():
    q = np.array([[0, 1, 2, 0], [3, 4, 5, 6]], np.int8)
    s = np.array([0.5, 0.0, 0.25, 1.0], np.float32)
    dq = Dequant(s, np.zeros(4, np.int8), 1)
    stats, _ = measured(MeasureTask(source(TensorProto.INT8, q.shape, q.tobytes()), dq))
    check(stats, reference(q * s.astype(np.float64)))


def test_nonfinite_scale_uses_the_general_path():
    q = np.arange(12, dtype=np.int8).reshape(3, 4)  # column 1 holds 1, 5, 9
    dq = Dequant(np.array([1.0, np.inf, 1.0, 1.0], np.float32), None, 1)
    task = MeasureTask(source(TensorProto.INT8, q.shape, q.tobytes()), dq)
    assert kernels.plan_kernel(task) is None
    stats, _ = measured(task)
    assert stats.nonfinite == 3 and stats.count == 9


def test_quantized_chunks_and_worker_pieces_agree(monkeypatch):
    q, dq, expected = _dequant_case("int8", "axis1")
    q = np.tile(q, (50, 1))
    expected = np.tile(expected, (50, 1))
    task = MeasureTask(source(TensorProto.INT8, q.shape, _stored("int8", q)), dq)
    monkeypatch.setattr(measure_module, "CHUNK_ELEMS", 100)  # chunks of a few rows, merged
    stats, _ = measured(task)
    check(stats, reference(expected), kurt_rel=1e-5)
    left, _ = measure_module.measure_range(task, 0, 24 * 700)
    right, _ = measure_module.measure_range(task, 24 * 700, q.size)
    check(left.merge(right).stats(), reference(expected), kurt_rel=1e-5)


# ---------------------------------------------------------------- MatMulNBits


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    per = 8 // bits
    codes = codes.reshape(*codes.shape[:-1], -1, per).astype(np.uint8)
    out = np.zeros(codes.shape[:-1], np.uint8)
    for i in range(per):
        out |= codes[..., i] << (bits * i)
    return out


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k,block", [(64, 16), (100, 32), (45, 16)])
@pytest.mark.parametrize("zeros", ["packed", "float", "none"])
def test_nbits_matches_numpy(bits, k, block, zeros, monkeypatch):
    n = 12
    lay = NBitsLayout(n, k, bits, block)
    codes = RNG.integers(0, 1 << bits, (n, lay.k_blocks, block))
    scales = RNG.uniform(0.001, 0.05, (n, lay.k_blocks)).astype(np.float32)
    if zeros == "packed":
        zero_codes = RNG.integers(0, 1 << bits, (n, lay.k_blocks))
        width = -(-lay.k_blocks * bits // 8) * (8 // bits)
        padded = np.zeros((n, width), np.int64)
        padded[:, :lay.k_blocks] = zero_codes
        zero_arg: np.ndarray | None = _pack(padded, bits)
        zero_values = zero_codes.astype(np.float64)
    elif zeros == "float":
        zero_arg = RNG.uniform(0, (1 << bits) - 1, (n, lay.k_blocks)).astype(np.float32)
        zero_values = zero_arg.astype(np.float64)
    else:
        zero_arg, zero_values = None, np.full((n, lay.k_blocks), float(1 << (bits - 1)))
    expected = ((codes - zero_values[:, :, None]) * scales.astype(np.float64)[:, :, None]).reshape(n, -1)[:, :k]
    packed = _pack(codes, bits)
    decoder = make_decoder(lay, scales, zero_arg)
    task = MeasureTask(source(TensorProto.UINT8, lay.stored_shape, packed.tobytes()), decoder=decoder,
                       granularity=lay.row_bytes)
    assert isinstance(kernels.plan_kernel(task), kernels.NBitsKernel)
    fast, _ = measured(task)
    check(fast, reference(expected), kurt_rel=1e-5)
    general, _ = measured(task, general=True, monkeypatch=monkeypatch)
    check(general, reference(expected), kurt_rel=1e-5)


def test_nbits_nonfinite_scale_is_counted(monkeypatch):
    lay = NBitsLayout(6, 64, 4, 32)
    codes = RNG.integers(0, 16, (6, 2, 32))
    scales = RNG.uniform(0.01, 0.02, (6, 2)).astype(np.float32)
    scales[4, 1] = np.nan
    expected = ((codes - 8.0) * scales.astype(np.float64)[:, :, None]).reshape(6, -1)
    task = MeasureTask(source(TensorProto.UINT8, lay.stored_shape, _pack(codes, 4).tobytes()),
                       decoder=make_decoder(lay, scales, None), granularity=lay.row_bytes)
    monkeypatch.setattr(measure_module, "CHUNK_ELEMS", 2 * lay.row_bytes)  # the NaN rows are one chunk of three
    stats, _ = measured(task)
    check(stats, reference(expected), kurt_rel=1e-5)
    assert stats.nonfinite == 32


def test_nbits_scales_read_from_the_file(tmp_path):
    lay = NBitsLayout(8, 64, 4, 16)
    codes = RNG.integers(0, 16, (8, 4, 16))
    scales = RNG.uniform(0.01, 0.02, (8, 4)).astype(np.float16)
    zeros = RNG.integers(0, 16, (8, 4))
    packed_zeros = _pack(zeros, 4)
    path = tmp_path / "scales.bin"
    path.write_bytes(b"\0" * 3 + scales.tobytes() + packed_zeros.tobytes())
    with open(path, "rb") as handle:
        from initaudit.read.tensors import FilePayload
        scale_source = TensorSource("s", TensorProto.FLOAT16, (32,), FilePayload(handle.fileno(), 3, scales.nbytes))
        zero_source = TensorSource("z", TensorProto.UINT8, (16,),
                                   FilePayload(handle.fileno(), 3 + scales.nbytes, packed_zeros.nbytes))
        decoder = make_decoder(lay, scale_source, zero_source)
        task = MeasureTask(source(TensorProto.UINT8, lay.stored_shape, _pack(codes, 4).tobytes()), decoder=decoder,
                           granularity=lay.row_bytes)
        stats, _ = measured(task)
    expected = (codes - zeros[:, :, None]) * scales.astype(np.float64)[:, :, None]
    check(stats, reference(expected), kurt_rel=1e-5)


@pytest.mark.parametrize("layout", ["axis1", "axis0", "blocked-odd"])
def test_mean_far_from_zero_keeps_every_moment(layout):
    """Codes far from their zero point: the mean is many standard deviations from zero."""
    q, dq, _ = _dequant_case("uint8", layout)
    q = np.clip(200 + (q - 128) // 20, 0, 255)
    narrow = (0.01 * (1 + 0.001 * np.arange(dq.scale.size))).astype(np.float32).reshape(dq.scale.shape)
    dq = Dequant(narrow, None, dq.axis, dq.block_size)
    expected = _scaled(q, dq)
    ref = reference(expected)
    assert ref["mean"] ** 2 > 4 * ref["var"]
    stats, _ = measured(MeasureTask(source(TensorProto.UINT8, q.shape, _stored("uint8", q)), dq))
    check(stats, ref, kurt_rel=1e-5)


def test_worker_pieces_keep_kernel_alignment(tmp_path, monkeypatch):
    """Pieces handed to worker processes start on whole rows, channel periods and packed bytes."""
    from initaudit.read.tensors import FilePayload

    half = RNG.normal(0, 0.1, (300, 70)).astype(np.float16)
    q, dq, expected_q = _dequant_case("int4", "axis1")
    q, expected_q = np.tile(q, (30, 1)), np.tile(expected_q, (30, 1))
    lay = NBitsLayout(40, 64, 4, 32)
    codes = RNG.integers(0, 16, (40, 2, 32))
    scales = RNG.uniform(0.01, 0.02, (40, 2)).astype(np.float32)
    expected_n = ((codes - 8.0) * scales.astype(np.float64)[:, :, None]).reshape(40, -1)
    blobs = [half.tobytes(), _stored("int4", q), _pack(codes, 4).tobytes()]
    path = tmp_path / "w.bin"
    path.write_bytes(b"".join(blobs))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    with open(path, "rb") as handle:
        fd = handle.fileno()
        tasks = [
            MeasureTask(TensorSource("h", TensorProto.FLOAT16, half.shape, FilePayload(fd, 0, len(blobs[0])))),
            MeasureTask(TensorSource("q", TensorProto.INT4, q.shape, FilePayload(fd, int(offsets[1]), len(blobs[1]))),
                        dq),
            MeasureTask(TensorSource("n", TensorProto.UINT8, lay.stored_shape,
                                     FilePayload(fd, int(offsets[2]), len(blobs[2]))),
                        decoder=make_decoder(lay, scales, None), granularity=lay.row_bytes),
        ]
        sequential = measure_all(tasks, jobs=1)
        monkeypatch.setattr(measure_module, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(measure_module, "PIECE_ELEMS", 500)
        monkeypatch.setattr(measure_module, "CHUNK_ELEMS", 100)
        monkeypatch.setattr(measure_module, "HISTOGRAM_CHUNK", 300)
        assert all(len(measure_module._pieces(t)) >= 3 for t in tasks)
        parallel = measure_all(tasks, jobs=2)
    for (one, _), (two, _), expected in zip(sequential, parallel, (half, expected_q, expected_n)):
        check(one, reference(expected), kurt_rel=1e-5)
        check(two, reference(expected), kurt_rel=1e-5)


@pytest.mark.parametrize("offset", [0.0, 0.3, 1.5, 40.0])
def test_combine_groups_matches_numpy_on_either_side_of_the_raw_sum_path(offset):
    """Many groups ``s·e`` whose mean is 0, 0.3, 1.5 and 40 standard deviations from zero: the
    plain power sums serve while the mean is within a standard deviation, per-group centring beyond."""
    n, groups = 32, 500
    e = RNG.integers(-7, 8, (groups, n)).astype(np.float64) + np.round(offset * 4.3)
    s = RNG.uniform(0.5, 1.5, groups).astype(np.float32).astype(np.float64)
    x = e * s[:, None]
    sums = [np.sum(e ** k, axis=1) for k in (1, 2, 3, 4)]
    got = kernels.combine_groups(n, s, *sums, float(x.min()), float(x.max()), int(np.count_nonzero(x == 0)))
    ref = reference(x)
    check(got.stats(), ref, kurt_rel=1e-9)
