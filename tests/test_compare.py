"""The comparison pass of ``initaudit diff`` (``measure/compare.py``) against numpy in float64: the
figures of a pair, per output unit, across chunks, pieces and transposed layouts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto

from initaudit.measure import compare
from initaudit.measure.compare import Pair, PairSums, Side, change_of, compare_range, sample_correlation
from initaudit.measure.units import unit_axes
from initaudit.read.tensors import MemoryPayload, TensorSource
from initaudit.trace.plan import MeasureTask

RNG = np.random.default_rng(22)


def task(values: np.ndarray) -> MeasureTask:
    values = np.ascontiguousarray(values, np.float32)
    return MeasureTask(TensorSource("w", TensorProto.FLOAT, values.shape, MemoryPayload(values.tobytes())))


def expected(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    d = b - a
    return {"rel": np.linalg.norm(d) / np.linalg.norm(a), "corr": np.corrcoef(a, b)[0, 1],
            "sqnr": 10 * np.log10((a @ a) / (d @ d)), "max": np.abs(d).max()}


def test_figures_of_a_pair_match_numpy_in_float64():
    a = RNG.normal(0.01, 0.05, (300, 500)).astype(np.float32)
    b = (a + RNG.normal(0, 0.004, a.shape)).astype(np.float32)
    c = change_of(compare_range(Pair(Side(task(a), a.shape), Side(task(b), b.shape))))
    want = expected(a, b)
    assert c.count == a.size and not c.identical
    assert c.rel_change == pytest.approx(want["rel"], rel=1e-9)
    assert c.correlation == pytest.approx(want["corr"], rel=1e-9)
    assert c.sqnr_db == pytest.approx(want["sqnr"], rel=1e-9)
    assert c.max_abs_diff == pytest.approx(want["max"], rel=1e-12)


def test_chunks_windows_and_pieces_give_the_same_sums_as_one_read(monkeypatch):
    """Sums over windows of a few values, merged across pieces, equal one pass (Chan's merge is exact)."""
    a = RNG.normal(0, 1, (64, 48)).astype(np.float32)
    b = (0.5 * a + RNG.normal(0, 0.3, a.shape)).astype(np.float32)
    pair = Pair(Side(task(a), a.shape), Side(task(b), b.shape))
    whole = change_of(compare_range(pair))
    monkeypatch.setattr(compare, "chunk_size", lambda t, kernel=None: 7)
    merged = compare_range(pair, 0, 1000).merge(compare_range(pair, 1000, 2000)).merge(compare_range(pair, 2000))
    pieces = change_of(merged)
    want = expected(a, b)
    for c in (whole, pieces):
        assert c.correlation == pytest.approx(want["corr"], rel=1e-9)
        assert c.rel_change == pytest.approx(want["rel"], rel=1e-9)


@pytest.mark.parametrize("layout,shape,axis", [("OI", (40, 30), 0), ("IO", (30, 40), 1), ("OIHW", (12, 5, 3, 3), 0),
                                               ("IOHW", (5, 12, 3, 3), 1)])
def test_the_worst_unit_is_the_crushed_output_channel(layout, shape, axis):
    a = RNG.normal(0, 0.05, shape)
    b = a + RNG.normal(0, 0.0005, shape)
    index = [slice(None)] * len(shape)
    index[axis] = 7
    b[tuple(index)] = np.round(a[tuple(index)] / 0.05) * 0.05  # unit 7 rounded to a coarse step
    units = unit_axes(shape, layout)
    c = change_of(compare_range(Pair(Side(task(a), shape), Side(task(b), shape), units)))
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    moved = np.moveaxis(a32, axis, 0).reshape(shape[axis], -1), np.moveaxis(b32, axis, 0).reshape(shape[axis], -1)
    per_unit = 10 * np.log10((moved[0] ** 2).sum(1) / ((moved[1] - moved[0]) ** 2).sum(1))
    assert c.units == shape[axis] and c.worst_unit == 7
    assert c.worst_unit_sqnr_db == pytest.approx(per_unit.min(), rel=1e-9)
    assert c.worst_unit_sqnr_db < c.sqnr_db - 3


def test_identical_values_have_no_sqnr_and_no_worst_unit():
    a = RNG.normal(0, 1, (16, 8)).astype(np.float32)
    c = change_of(compare_range(Pair(Side(task(a), a.shape), Side(task(a.copy()), a.shape), unit_axes(a.shape, "OI"))))
    assert c.identical and c.sqnr_db is None and c.rel_change == 0 and c.max_abs_diff == 0
    assert c.worst_unit is None and c.correlation == pytest.approx(1.0)


def test_one_changed_value_is_not_identical():
    a = RNG.normal(0, 1, 1000).astype(np.float32)
    b = a.copy()
    b[500] = np.nextafter(b[500], np.float32(np.inf))
    c = change_of(compare_range(Pair(Side(task(a), a.shape), Side(task(b), b.shape))))
    assert not c.identical and c.sqnr_db is not None and c.sqnr_db > 100


def test_nonfinite_values_are_counted_and_left_out_of_the_sums():
    a = RNG.normal(0, 1, 400).astype(np.float32)
    b = (a * 1.01).astype(np.float32)
    b[[3, 77]] = [np.nan, np.inf]
    c = change_of(compare_range(Pair(Side(task(a), a.shape), Side(task(b), b.shape))))
    keep = np.ones(400, bool)
    keep[[3, 77]] = False
    assert c.nonfinite == 2 and c.count == 400 and not c.identical
    assert c.correlation == pytest.approx(np.corrcoef(a[keep], b[keep])[0, 1], rel=1e-9)
    assert c.sqnr_db == pytest.approx(expected(a[keep], b[keep])["sqnr"], rel=1e-9)


def test_a_transposed_side_is_compared_in_the_other_sides_order():
    """A MatMul weight W[in, out] against a Gemm(transB=1) weight W[out, in] holding the same matrix."""
    w = RNG.normal(0, 0.1, (20, 30)).astype(np.float32)
    b = (w.T + np.float32(0.001)).astype(np.float32)  # [out, in] = [30, 20]
    units = unit_axes((30, 20), "OI")
    pair = Pair(Side(task(w), w.shape, (1, 0)), Side(task(b), b.shape, (0, 1)), units)
    c = change_of(compare_range(pair))
    assert c.max_abs_diff == pytest.approx(0.001, rel=1e-3) and c.correlation == pytest.approx(1.0, abs=1e-6)
    assert c.units == 30


def test_a_multiplier_scales_each_output_unit_before_comparing():
    """A BatchNorm folded on one side: A × γ/√(var + ε) per output channel equals B."""
    a = RNG.normal(0, 0.1, (6, 3, 3, 3)).astype(np.float32)
    scale = RNG.uniform(0.5, 2.0, 6)
    b = (a.astype(np.float64) * scale[:, None, None, None]).astype(np.float32)
    units = unit_axes(a.shape, "OIHW")
    raw = change_of(compare_range(Pair(Side(task(a), a.shape), Side(task(b), b.shape), units)))
    folded = change_of(compare_range(Pair(Side(task(a), a.shape, None, scale), Side(task(b), b.shape), units)))
    assert raw.rel_change > 0.2
    assert folded.sqnr_db > 120 or folded.identical


def test_unit_totals_and_squares_fast_paths_agree_with_bincount():
    for shape, layout in (((8, 6, 5), "OIH"), ((6, 8), "IO"), ((2, 4, 6), "BIO"), ((3, 4, 5), "OIH")):
        units = unit_axes(shape, layout)
        x = RNG.random(math.prod(shape))
        flat = np.arange(x.size)
        want = np.bincount(units.unit_of(flat), x, minlength=units.units)
        period = units.period[1] if units.period else 1
        for at, stop in ((0, x.size), (period, x.size), (0, x.size - period)):
            got = compare.unit_totals(x[at:stop], at, units)
            part = np.bincount(units.unit_of(flat[at:stop]), x[at:stop], minlength=units.units)
            assert np.allclose(got, part)
            squares = np.bincount(units.unit_of(flat[at:stop]), x[at:stop] ** 2, minlength=units.units)
            assert np.allclose(compare.unit_squares(x[at:stop], at, units), squares)
        assert np.allclose(compare.unit_totals(x, 0, units), want)


def test_sample_correlation_tells_the_same_values_from_others():
    a = RNG.normal(0, 1, (50, 40)).astype(np.float32)
    other = RNG.normal(0, 1, (50, 40)).astype(np.float32)
    assert sample_correlation(task(a), task(a * 0.5 + 0.01)) == pytest.approx(1.0, abs=1e-6)
    assert abs(sample_correlation(task(a), task(other))) < 0.1
    assert sample_correlation(task(np.zeros(10)), task(a)) is None


def test_pair_sums_of_zero_reference_and_changed_b():
    sums = PairSums()
    sums.add(np.zeros(5), np.ones(5), 0, None)
    c = change_of(sums)
    assert c.rel_change is None and c.sqnr_db == -math.inf and not c.identical


@pytest.mark.parametrize("flip", ["a", "b"])
def test_a_large_transposed_pair_is_compared_stripe_by_stripe_as_in_memory(monkeypatch, flip):
    """Above the in-memory bound, the 2-D transpose is read one stripe at a time: the same figures."""
    w = RNG.normal(0, 0.1, (48, 40)).astype(np.float32)   # stored [in, out] on the flipped side
    other = (w.T + RNG.normal(0, 0.01, (40, 48))).astype(np.float32)  # [out, in]
    units = unit_axes((40, 48), "OI")
    flipped, straight = Side(task(w), w.shape, (1, 0)), Side(task(other), other.shape, (0, 1))
    pair = Pair(flipped, straight, units) if flip == "a" else Pair(straight, flipped, units)
    in_memory = change_of(compare_range(pair))
    monkeypatch.setattr(compare, "TRANSPOSE_MAX_ELEMS", 100)
    monkeypatch.setattr(compare, "STRIPE_BYTES", 8 * 48 * 7)  # stripes of 7 output rows
    assert pair.striped is not None and compare.comparable(pair)
    pieces = compare._pieces(pair)
    assert len(pieces) == 6 and pieces[0] == (0, 7 * 48)
    merged = PairSums()
    for start, stop in pieces:
        merged = merged.merge(compare_range(pair, start, stop))
    for c in (change_of(compare_range(pair)), change_of(merged)):
        assert c.sqnr_db == pytest.approx(in_memory.sqnr_db, rel=1e-9)
        assert c.correlation == pytest.approx(in_memory.correlation, rel=1e-9)
        assert c.worst_unit == in_memory.worst_unit and c.units == 40


def test_a_large_permutation_that_is_no_2d_transpose_is_not_comparable(monkeypatch):
    monkeypatch.setattr(compare, "TRANSPOSE_MAX_ELEMS", 10)
    a = RNG.normal(0, 1, (3, 4, 5)).astype(np.float32)
    pair = Pair(Side(task(a), a.shape, (1, 0, 2)), Side(task(a.transpose(1, 0, 2).copy()), (4, 3, 5), (0, 1, 2)))
    assert pair.striped is None and not compare.comparable(pair)
    assert compare.swap_split((2, 0, 1), 3) == 2 and compare.swap_split((1, 2, 0), 3) == 1


def test_a_near_dead_unit_rounded_to_zero_is_not_the_worst_unit():
    """A unit at 0.005× the median norm that quantization zeroes: not what the worst unit reports; one at
    0.05× the median norm is."""
    a = RNG.normal(0, 0.05, (8, 64))
    b = a + RNG.normal(0, 0.0005, a.shape)
    for norm, counted in ((0.005, False), (0.05, True)):
        a2, b2 = a.copy(), b.copy()
        a2[3] *= norm
        b2[3] = 0.0
        c = change_of(compare_range(Pair(Side(task(a2), a2.shape), Side(task(b2), b2.shape), unit_axes(a2.shape, "OI"))))
        assert (c.worst_unit == 3) == counted, norm
