"""The unit pass (``measure/units.py``): per-output-unit and per-input-unit sums of squares and the power sums,
streamed chunk by chunk, against numpy in float64 for each layout (grouped and transposed convs included)."""
from __future__ import annotations

import numpy as np
import pytest
from modelkit import bfloat16, model, raw_tensor, save, to_external
from onnx import TensorProto, helper, numpy_helper

from initaudit.measure import accel, streaming, units
from initaudit.measure.units import aligned_chunk, measure_units, unit_axes, unit_sums
from initaudit.read.graph import ModelGraph
from initaudit.read.loader import load_model
from initaudit.trace.follow import find_uses
from initaudit.trace.plan import plan


def _axes(shape, layout: str, op: str, groups: int, side: str = "out"):
    """The unit map as the pass builds it: a ConvTranspose W[C, M/g, k…] counts one group's units on O."""
    return unit_axes(shape, layout, groups, side, "O" if op == "ConvTranspose" else "I")


def unit_sums_of(w: np.ndarray, layout: str, op: str = "Conv", groups: int = 1, chunk: int = 1 << 17):
    """The unit pass over ``w`` read with ``layout``, in chunks of ``chunk`` values."""
    flat = w.ravel()
    chunks = ((s, flat[s:s + chunk]) for s in range(0, flat.size, chunk))
    return unit_sums(chunks, _axes(w.shape, layout, op, groups), flat.size, _axes(w.shape, layout, op, groups, "in"))


@pytest.mark.parametrize("shape, layout, op, groups, out_sum", [
    ((12, 5, 3, 3), "OIHW", "Conv", 1, lambda v: v.sum(axis=(1, 2, 3))),
    ((7, 11), "OI", "Gemm", 1, lambda v: v.sum(axis=1)),
    ((11, 7), "IO", "MatMul", 1, lambda v: v.sum(axis=0)),
    ((2, 24, 5), "BOI", "LSTM", 1, lambda v: v.sum(axis=2).ravel()),
    # ConvTranspose W[C, M/g, k, k] with g = 2: unit = group·(M/g) + m
    ((6, 4, 3, 3), "IOHW", "ConvTranspose", 2,
     lambda v: np.concatenate([v[:3].sum(axis=(0, 2, 3)), v[3:].sum(axis=(0, 2, 3))])),
])
@pytest.mark.parametrize("chunk", [37, 97, "aligned", 1 << 17])  # 97: whole runs with ragged ends
def test_unit_sums_match_numpy(shape, layout, op, groups, out_sum, chunk):
    w = np.random.default_rng(0).normal(size=shape)
    if chunk == "aligned":  # the smallest chunk the fast paths accept: one run or row at a time
        chunk = aligned_chunk(1, _axes(shape, layout, op, groups), _axes(shape, layout, op, groups, "in"))
    got = unit_sums_of(w, layout, op, groups, chunk=chunk)
    np.testing.assert_allclose(got.unit_sq, out_sum(w ** 2), rtol=1e-12)
    np.testing.assert_allclose(got.unit_sum, out_sum(w), rtol=1e-12, atol=1e-13 * np.abs(w).sum())
    np.testing.assert_allclose(got.power, [(w ** k).sum() for k in (2, 4, 6, 8)], rtol=1e-12)
    assert got.count == w.size and got.max_abs == np.abs(w).max()
    assert (got.per_unit, got.in_per_unit) == (w.size // got.units, w.size // got.in_units)
    assert type(got.per_unit) is int and type(got.in_per_unit) is int     # whole values per unit (the JSON's)
    if op not in ("ConvTranspose",) and groups == 1:
        kept = tuple(i for i, letter in enumerate(layout) if letter in "IB")
        expected_in = (w ** 2).sum(axis=tuple(i for i in range(w.ndim) if i not in kept)).ravel()
        np.testing.assert_allclose(got.in_sq, expected_in, rtol=1e-12)


def test_input_units_of_a_grouped_conv_are_per_group():
    w = np.random.default_rng(1).normal(size=(8, 3, 3, 3))  # groups 2: 4 output channels per group
    got = unit_sums_of(w, "OIHW", "Conv", 2)
    expected = np.concatenate([(w[:4] ** 2).sum(axis=(0, 2, 3)), (w[4:] ** 2).sum(axis=(0, 2, 3))])
    np.testing.assert_allclose(got.in_sq, expected, rtol=1e-12)


# ---------------------------------------------------------------- the pass inside the statistics pass

RNG = np.random.default_rng(19)


def _sums_axes(w, out_axes, in_axes):
    """Per-unit sums written out with numpy: Σ over ``out_axes`` / ``in_axes`` (the axes that are not units),
    units in C order of the axes kept."""
    return (lambda v: v.sum(axis=out_axes).ravel()), (lambda v: v.sum(axis=in_axes).ravel())


def _special(w: np.ndarray) -> np.ndarray:
    """Values the review counts apart: zeros, float16 subnormals (|w| < 2^-14) and flushed ones (< 2^-25)."""
    flat = w.reshape(-1)
    flat[[3, 50, 51]] = 0.0
    flat[[7, 90]] = [3e-6, -2e-5]
    flat[[11, 140]] = [1e-9, -2.5e-8]
    return w


def _float_weight(kind: str, shape) -> tuple[TensorProto, np.ndarray]:
    """An initializer ``w`` of ``kind`` and the float64 values it holds."""
    values = _special(RNG.normal(0.0, 0.05, shape))
    if kind == "float32":
        v = values.astype(np.float32)
        return numpy_helper.from_array(v, "w"), v.astype(np.float64)
    if kind == "float16":
        v = values.astype(np.float16)
        return numpy_helper.from_array(v, "w"), v.astype(np.float64)
    codes, exact = bfloat16(values)
    return raw_tensor("w", TensorProto.BFLOAT16, shape, codes.tobytes()), exact.astype(np.float64)


def _float_case(kind: str, op: str):
    """(model, float64 weight, output-unit sums, input-unit sums) of one op reading a float weight."""
    if op in ("MatMul", "WideMatMul"):  # W[K, N]: output units are the columns (wide: several column tiles)
        t, w = _float_weight(kind, (48, 40) if op == "MatMul" else (5, 1100))
        node, (out, inn) = helper.make_node("MatMul", ["x", "w"], ["y"]), _sums_axes(None, 0, 1)
    elif op == "Gemm":       # W[N, K] with transB: output units are the rows
        t, w = _float_weight(kind, (40, 48))
        node, (out, inn) = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), _sums_axes(None, 1, 0)
    elif op == "BatchedMatMul":  # W[B, K, N]: units (b, n) and (b, k)
        t, w = _float_weight(kind, (3, 16, 20))
        node, (out, inn) = helper.make_node("MatMul", ["x", "w"], ["y"]), _sums_axes(None, 1, 2)
    elif op == "LSTM":       # W[D, 4H, I]: units (d, gate row) and (d, i)
        t, w = _float_weight(kind, (2, 20, 7))
        node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=5, direction="bidirectional")
        out, inn = _sums_axes(None, 2, 1)
        r = numpy_helper.from_array(RNG.normal(0, 0.1, (2, 20, 5)).astype(np.float32), "r")
        return model([node], [t, r]), w, out, inn
    elif op == "Conv":       # W[M, C/g, k, k], 2 groups: input unit = group·(C/g) + c
        t, w = _float_weight(kind, (8, 3, 3, 3))
        node = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
        out = lambda v: v.sum(axis=(1, 2, 3))  # noqa: E731
        inn = lambda v: np.concatenate([v[:4].sum(axis=(0, 2, 3)), v[4:].sum(axis=(0, 2, 3))])  # noqa: E731
    else:                    # ConvTranspose W[C, M/g, k, k], 2 groups: output unit = group·(M/g) + m
        t, w = _float_weight(kind, (6, 4, 3, 3))
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2)
        out = lambda v: np.concatenate([v[:3].sum(axis=(0, 2, 3)), v[3:].sum(axis=(0, 2, 3))])  # noqa: E731
        inn = lambda v: v.sum(axis=(1, 2, 3))  # noqa: E731
    return model([node], [t]), w, out, inn


def _dequant_case(kind: str):
    """A MatMul reading ``DequantizeLinear(q, s, z)`` of W[K=48, N=40] (wide: [5, 1100]), and the float64 weight."""
    k, n = (5, 1100) if kind.endswith("wide") else (48, 40)
    kind = kind.removesuffix("-wide")
    signed = kind != "uint8-axis0"
    q = RNG.integers(-128 if signed else 0, 128 if signed else 256, (k, n))
    q.reshape(-1)[[5, 6]] = 0
    attrs: dict = {}
    if kind == "int8-tensor":
        s, z = np.float32(0.013), np.int8(-3)
        w = (q - float(z)) * np.float64(s)
    elif kind in ("int8-axis1", "int4-axis1"):
        if kind == "int4-axis1":
            q = np.clip(q // 16, -8, 7)
        s = RNG.uniform(0.002, 0.02, n).astype(np.float32)
        s[2], s[7] = -s[2], 2e-6  # a negative scale; a scale whose values are all below 2^-14
        z = RNG.integers(-3, 3, n).astype(np.int8)
        w = (q - z[None, :].astype(np.float64)) * s[None, :].astype(np.float64)
        attrs = {"axis": 1}
    elif kind == "uint8-axis0":
        s = RNG.uniform(0.002, 0.02, k).astype(np.float32)
        z = RNG.integers(120, 136, k).astype(np.uint8)
        w = (q - z[:, None].astype(np.float64)) * s[:, None].astype(np.float64)
        attrs = {"axis": 0}
    else:  # blocked along N: blocks of 8 (whole) or 7 (a shorter last block)
        block = 8 if kind == "int8-blocked" else 7
        blocks = -(-n // block)
        s = RNG.uniform(0.002, 0.02, (k, blocks)).astype(np.float32)
        z = RNG.integers(-2, 2, (k, blocks)).astype(np.int8)
        index = np.arange(n) // block
        w = (q - z[:, index].astype(np.float64)) * s[:, index].astype(np.float64)
        attrs = {"axis": 1, "block_size": block}
    if kind == "int4-axis1":
        nibbles = (q.ravel().astype(np.int16) & 15).astype(np.uint8)
        wq = raw_tensor("q", TensorProto.INT4, (k, n), (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes())
        zt = raw_tensor("z", TensorProto.INT4, (n,), ((z[0::2].astype(np.int16) & 15) |
                                                       ((z[1::2].astype(np.int16) & 15) << 4)).astype(np.uint8).tobytes())
    else:
        wq = numpy_helper.from_array(q.astype(np.uint8 if not signed else np.int8), "q")
        zt = numpy_helper.from_array(np.asarray(z), "z")
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], **attrs),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    out, inn = _sums_axes(None, 0, 1)
    return model(nodes, [wq, numpy_helper.from_array(np.asarray(s), "s"), zt], opset=21), w, out, inn


def _nbits_case(bits: int, k: int):
    """MatMulNBits (N=24, K=k, blocks of 16) and its logical float64 weight W[N, K]."""
    n, block = 24, 16
    blocks = -(-k // block)
    codes = RNG.integers(0, 1 << bits, (n, blocks, block))
    codes[0, 0, :3] = 1 << (bits - 1)  # dequantized zeros
    scales = RNG.uniform(0.002, 0.03, (n, blocks)).astype(np.float32)
    scales[3, 0] = 1e-6  # a block of values below 2^-14
    zeros = RNG.integers(0, 1 << bits, (n, blocks))
    w = ((codes - zeros[:, :, None]) * scales.astype(np.float64)[:, :, None]).reshape(n, -1)[:, :k]
    per = 8 // bits
    packed = np.zeros((n, blocks, block // per), np.uint8)
    for i in range(per):
        packed |= (codes[..., i::per] << (bits * i)).astype(np.uint8)
    width = -(-blocks * bits // 8) * per
    zpad = np.zeros((n, width), np.int64)
    zpad[:, :blocks] = zeros
    zpacked = np.zeros((n, width // per), np.uint8)
    for i in range(per):
        zpacked |= (zpad[:, i::per] << (bits * i)).astype(np.uint8)
    node = helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft", K=k, N=n, bits=bits,
                            block_size=block)
    inits = [numpy_helper.from_array(packed, "b"), numpy_helper.from_array(scales.ravel(), "s"),
             numpy_helper.from_array(zpacked.ravel(), "z")]
    out, inn = _sums_axes(None, 1, 0)
    return model([node], inits, extra_opsets=[helper.make_opsetid("com.microsoft", 1)]), w, out, inn


CASES = {
    **{f"{kind} {op}": (lambda kind=kind, op=op: _float_case(kind, op))
       for kind in ("float32", "float16", "bfloat16") for op in ("MatMul", "Gemm")},
    **{f"float32 {op}": (lambda op=op: _float_case("float32", op))
       for op in ("WideMatMul", "BatchedMatMul", "LSTM", "Conv", "ConvTranspose")},
    "float16 WideMatMul": lambda: _float_case("float16", "WideMatMul"),
    "float16 LSTM": lambda: _float_case("float16", "LSTM"),
    "bfloat16 Conv": lambda: _float_case("bfloat16", "Conv"),
    **{f"DequantizeLinear {kind}": (lambda kind=kind: _dequant_case(kind))
       for kind in ("int8-tensor", "int8-axis1", "int8-axis1-wide", "int4-axis1", "uint8-axis0", "int8-blocked",
                    "int8-blocked-odd")},
    "MatMulNBits 4 bits": lambda: _nbits_case(4, 64),
    "MatMulNBits 8 bits": lambda: _nbits_case(8, 64),
    "MatMulNBits 4 bits, padded": lambda: _nbits_case(4, 50),
}


def _measured(path, jobs: int, review: bool = True):
    """``audit_model``'s planning and measuring of every weight of a model."""
    with load_model(path) as loaded:
        graph = ModelGraph(loaded.proto)
        grouped: dict = {}
        for use in find_uses(graph, loaded.load_array):
            grouped.setdefault(use.source.key, []).append(use)
        planned = [plan(loaded, graph, uses) for uses in grouped.values()]
        measured, sums = measure_units(planned, jobs, review)
        names = [p.source.name for p in planned]
    return dict(zip(names, measured)), dict(zip(names, sums))


@pytest.fixture(params=["numpy", "compiled", "numpy, 2 workers", "compiled, 2 workers"])
def configuration(request, monkeypatch):
    """The unit pass as the command runs it: numpy only or the compiled kernel, in-process or over two
    workers with tensors cut in pieces across rows, chunks of a prime length (rows cut anywhere)."""
    accel.reset()
    if request.param.startswith("compiled"):
        pytest.importorskip("llvmlite")
        assert accel.prepare()
    monkeypatch.setattr(units, "TILE", 512)  # rows of 1100 columns: three tiles
    monkeypatch.setattr(streaming, "CHUNK_ELEMS", 97)
    monkeypatch.setattr(streaming, "HISTOGRAM_CHUNK", 4 * 97)
    jobs = 1
    if request.param.endswith("workers"):
        monkeypatch.setattr(streaming, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(streaming, "PIECE_ELEMS", 3 * 97)
        jobs = 2
    yield jobs
    accel.reset()


@pytest.mark.parametrize("case", list(CASES))
def test_unit_sums_of_every_storage_match_float64_numpy(tmp_path, configuration, case):
    m, w, out, inn = CASES[case]()
    to_external(m, tmp_path)
    measured, sums = _measured(save(m, tmp_path), configuration)
    name = "b" if case.startswith("MatMulNBits") else "q" if case.startswith("Dequantize") else "w"
    got = sums[name]
    x = np.where(np.isfinite(w), w, 0.0)
    a = np.abs(x)
    np.testing.assert_allclose(got.unit_sq, out(x * x), rtol=1e-12)
    np.testing.assert_allclose(got.in_sq, inn(x * x), rtol=1e-12)
    np.testing.assert_allclose(got.unit_sum, out(x), rtol=1e-12, atol=1e-13 * float(a.sum()))
    np.testing.assert_allclose(got.power, [float((x ** p).sum()) for p in (2, 4, 6, 8)], rtol=1e-12)
    assert (got.units, got.per_unit, got.in_units, got.in_per_unit) == \
        (out(x).size, w.size // out(x).size, inn(x).size, w.size // inn(x).size)
    assert got.count == int(np.isfinite(w).sum()) and got.max_abs == float(a.max())
    assert got.nonzero == int(np.count_nonzero(a))
    assert got.subnormal == int(np.count_nonzero((a > 0) & (a < 2.0 ** -14)))
    flushed = (a > 0) & (a < 2.0 ** -25)
    assert got.flushed == int(np.count_nonzero(flushed))
    assert got.flushed_sq == pytest.approx(float((x[flushed] ** 2).sum()), rel=1e-12, abs=0)
    stats, _ = measured[name]  # the statistics of the same read: those of the values, as without the review
    finite = w[np.isfinite(w)]
    assert stats.count == finite.size and (stats.min, stats.max) == (finite.min(), finite.max())
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12)
    assert stats.var == pytest.approx(finite.var(), rel=1e-9)
    init_stats, _ = _measured(save(m, tmp_path), configuration, review=False)[0][name]
    assert stats.var == pytest.approx(init_stats.var, rel=1e-12) and stats.zeros == init_stats.zeros


def test_non_finite_values_count_as_zero_in_every_unit(tmp_path, configuration):
    """A NaN and an Inf in a float32 MatMul weight: left out of the count and of every sum, the rows
    around them summed as the others (the compiled kernel hands their rows to numpy)."""
    m, w, out, inn = _float_case("float32", "MatMul")
    w[5, 7], w[30, 0], w[31, 39] = np.nan, np.inf, -np.inf
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w.astype(np.float32), "w"))
    to_external(m, tmp_path)
    measured, sums = _measured(save(m, tmp_path), configuration)
    got, x = sums["w"], np.where(np.isfinite(w), w, 0.0)
    np.testing.assert_allclose(got.unit_sq, out(x * x), rtol=1e-12)
    np.testing.assert_allclose(got.in_sq, inn(x * x), rtol=1e-12)
    np.testing.assert_allclose(got.power, [float((x ** p).sum()) for p in (2, 4, 6, 8)], rtol=1e-12)
    assert got.count == w.size - 3 and got.nonzero == int(np.count_nonzero(x))
    assert measured["w"][0].nonfinite == 3 and measured["w"][0].var == pytest.approx(w[np.isfinite(w)].var(), rel=1e-9)


def test_the_compiled_kernel_reads_every_storage_type_but_ragged_blocks(tmp_path, monkeypatch):
    """The speed of ``--profile trained`` rests on the kernel taking these chunks, not numpy: a spy on it."""
    pytest.importorskip("llvmlite")
    accel.reset()
    assert accel.prepare()
    read: dict[str, set[tuple[str, str]]] = {}
    kernel = accel.unit_grid

    def spy(values, kind, deq, *args, **kwargs):
        read.setdefault(current, set()).add((kind, deq))
        return kernel(values, kind, deq, *args, **kwargs)

    monkeypatch.setattr(accel, "unit_grid", spy)
    for index, current in enumerate(CASES):
        folder = tmp_path / str(index)
        folder.mkdir()
        m = CASES[current]()[0]
        to_external(m, folder)
        _measured(save(m, folder), 1)
    accel.reset()
    assert {case for case in CASES if case not in read} == {"DequantizeLinear int8-blocked-odd",
                                                            "MatMulNBits 4 bits, padded"}
    assert read["MatMulNBits 4 bits"] == {("uint4x2", "block")} and read["DequantizeLinear int8-axis1"] == {("int8", "col")}
    assert read["bfloat16 MatMul"] == {("bfloat16", "none")} and read["DequantizeLinear uint8-axis0"] == {("uint8", "block")}


@pytest.mark.parametrize("case", ["float32 MatMul", "bfloat16 Gemm", "float32 Conv", "DequantizeLinear int8-axis1",
                                  "DequantizeLinear uint8-axis0", "DequantizeLinear int8-blocked", "MatMulNBits 4 bits"])
def test_unit_kernels_are_compiled_before_the_workers_fork(tmp_path, monkeypatch, case):
    """Each worker would otherwise load LLVM's code again and compile the same loop (~0.1-0.25 s each)."""
    pytest.importorskip("llvmlite")
    accel.reset()
    monkeypatch.setattr(streaming, "ACCEL_MIN_VALUES", 0)
    compiled: set[str] = set()
    asked: set[str] = set()
    compile_now, function = accel.compile_now, accel._function
    monkeypatch.setattr(accel, "compile_now", lambda names: (compiled.update(names), compile_now(names)))
    monkeypatch.setattr(accel, "_function", lambda name: (asked.add(name), function(name))[1])
    m = CASES[case]()[0]
    to_external(m, tmp_path)
    _measured(save(m, tmp_path), 1)
    accel.reset()
    late = {name for name in asked if name.startswith("units_")} - compiled
    # MatMulNBits scales are read chunk by chunk: its one block of scales below 2^-14 is met in the pass
    assert compiled and late == ({"units_uint4x2_block_rc_full"} if case.startswith("MatMulNBits") else set())


def test_float16_counts_at_the_smallest_normal():
    """2⁻¹⁴ is float16's smallest normal: not a subnormal; just below it is."""
    normal = unit_sums(iter([(0, np.full(16, 2.0 ** -14))]), None, 16)
    below = unit_sums(iter([(0, np.full(16, np.nextafter(2.0 ** -14, 0.0)))]), None, 16)
    assert (normal.subnormal, normal.flushed) == (0, 0)
    assert (below.subnormal, below.flushed) == (16, 0)


def test_partials_merge_by_adding_every_sum():
    """Two workers' pieces of one tensor: every count and sum adds, the largest |w| is the larger."""
    def piece(k):
        return units.UnitPartial(np.full(2, 1.0 * k), np.full(2, 2.0 * k), np.full(3, 3.0 * k), values=10 * k,
                                 count=9 * k, power=[1.0 * k, 2.0 * k, 3.0 * k, 4.0 * k], max_abs=0.5 * k, zeros=k,
                                 tiny=2 * k, lost=3 * k, lost_sq=0.25 * k)
    merged = piece(1).merge(piece(2))
    np.testing.assert_array_equal(merged.sq, [3.0, 3.0])
    np.testing.assert_array_equal(merged.total, [6.0, 6.0])
    np.testing.assert_array_equal(merged.in_sq, [9.0, 9.0, 9.0])
    assert (merged.values, merged.count, merged.power, merged.max_abs) == (30, 27, [3.0, 6.0, 9.0, 12.0], 1.0)
    assert (merged.zeros, merged.tiny, merged.lost, merged.lost_sq) == (3, 6, 9, 0.75)


def test_a_tensor_without_unit_axes_is_one_unit():
    got = unit_sums(iter([(0, np.arange(16.0))]), None, 16)
    assert (got.units, got.per_unit, got.in_units, got.in_per_unit) == (1, 16, 0, 0)


def test_unit_axes_defaults_and_refusals():
    """One group and the input letter counting a group's units by default (a grouped Conv's input units are
    per group); no map for a layout without the side's letter, one that does not fit the shape, an empty
    tensor, or more than 2²² units."""
    assert unit_axes((8, 3, 3, 3), "OIHW", side="in").units == 3
    assert unit_axes((8, 3, 3, 3), "OIHW", 2, "in").units == 6
    assert unit_axes((4, 4), "HW") is None
    assert unit_axes((4, 4), "O") is None
    assert unit_axes((0, 4), "OI") is None
    assert unit_axes((1 << 22, 1), "OI").units == 1 << 22
    assert unit_axes(((1 << 22) + 1, 1), "OI") is None
