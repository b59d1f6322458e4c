"""Streaming statistics (``initaudit/measure/stats.py``) against numpy in float64.

Expected values are numpy float64 (central sums Σ(x - mean)^k of the same values) or worked by hand.
Small integers are used where the streaming sums must be exact: their powers are exact in float32, so
the float32 summation of the third and fourth powers costs nothing there.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelkit import bfloat16

from initaudit.measure.stats import MomentAccumulator, Moments, TensorStats, stats_of


def numpy_reference(values: np.ndarray) -> dict[str, float]:
    x = values.astype(np.float64).ravel()
    x = x[np.isfinite(x)]
    d = x - x.mean()
    var = float(np.mean(d * d))
    return {"mean": float(x.mean()), "var": float(np.var(x)), "min": float(x.min()), "max": float(x.max()),
            "kurt": float(np.mean(d**4) / var**2 - 3.0) if var else None}


def streamed(values: np.ndarray, chunk: int) -> object:
    acc = MomentAccumulator()
    flat = values.ravel()
    for start in range(0, flat.size, chunk):
        acc.add(flat[start:start + chunk])
    return acc.result()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("chunk", [7, 1000, 1 << 16])
def test_matches_numpy(dtype, chunk):
    values = np.random.default_rng(0).normal(0.01, 0.05, 50_001).astype(dtype)
    got, ref = streamed(values, chunk), numpy_reference(values)
    assert got.count == values.size
    assert got.var == pytest.approx(ref["var"], rel=1e-9)
    assert got.mean == pytest.approx(ref["mean"], rel=1e-9, abs=1e-15)
    assert got.min == ref["min"] and got.max == ref["max"]
    assert got.excess_kurtosis == pytest.approx(ref["kurt"], rel=1e-5, abs=1e-5)  # fourth powers summed in float32


@pytest.mark.parametrize("mean", [1e3, -5e4, 1e6])
def test_large_mean_keeps_variance_exact(mean):
    values = (mean + np.random.default_rng(1).uniform(-0.01, 0.01, 200_000)).astype(np.float64)
    got = streamed(values, 4096)
    assert got.var == pytest.approx(float(np.var(values)), rel=1e-9)


def test_bfloat16_values():
    _, as_float = bfloat16(np.random.default_rng(2).normal(0, 0.1, 10_000))
    got = stats_of(as_float)
    assert got.var == pytest.approx(float(np.var(as_float.astype(np.float64))), rel=1e-9)


def test_nonfinite_and_zero_counts():
    values = np.array([0.0, 1.0, np.nan, -np.inf, 0.0, 3.0, -0.0], dtype=np.float32)
    got = stats_of(values)
    assert got.nonfinite == 2 and got.zeros == 3 and got.count == 5
    assert got.var == pytest.approx(np.var([0.0, 1.0, 0.0, 3.0, 0.0]))
    assert got.min == 0.0 and got.max == 3.0


def test_constant_and_empty():
    assert stats_of(np.full(10, 0.5)).var == 0.0
    assert stats_of(np.full(10, 0.5)).excess_kurtosis is None
    empty = stats_of(np.array([np.nan, np.nan]))
    assert empty.count == 0 and empty.nonfinite == 2 and math.isnan(empty.var)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=2, max_size=300),
       st.integers(1, 50))
def test_any_values_any_chunking(values, chunk):
    x = np.array(values, np.float32)
    got = streamed(x, chunk)
    ref = float(np.var(x.astype(np.float64)))
    assert got.var == pytest.approx(ref, rel=1e-9, abs=1e-9 * float(np.mean(x.astype(np.float64) ** 2)) + 1e-30)


@pytest.mark.parametrize("split", [1, 3, 1000, 49_999])
def test_merged_partials_equal_one_pass(split):
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.normal(5.0, 0.1, 50_000), rng.uniform(4.0, 7.0, 30_000)])
    left, right = MomentAccumulator(), MomentAccumulator()
    left.add(values[:split])
    right.add(values[split:])
    merged = left.moments().merge(right.moments()).stats()
    ref = numpy_reference(values)
    assert merged.var == pytest.approx(ref["var"], rel=1e-9)
    assert merged.mean == pytest.approx(ref["mean"], rel=1e-12)
    assert merged.excess_kurtosis == pytest.approx(ref["kurt"], rel=1e-5, abs=1e-5)
    assert (merged.min, merged.max) == (ref["min"], ref["max"])


# --- moments, field by field ----------------------------------------------------------------------------


def central(values, nonfinite: int = 0, zeros: int | None = None) -> Moments:
    """Moments of ``values`` from numpy float64, the reference the streaming code must reproduce."""
    x = np.asarray(values, np.float64)
    d = x - x.mean()
    return Moments(x.size, float(x.mean()), float(np.sum(d**2)), float(np.sum(d**3)), float(np.sum(d**4)),
                   float(x.min()), float(x.max()), nonfinite,
                   int(np.count_nonzero(x == 0)) if zeros is None else zeros)


def assert_moments(got: Moments, want: Moments, rel: float = 1e-12) -> None:
    assert got.n == want.n
    for name in ("mean", "m2", "m3", "m4"):
        scale = abs(want.m2) ** (int(name[1]) / 2) if name != "mean" else 0.0  # |m3| may be ~0
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=rel, abs=rel * scale), name
    assert (got.lo, got.hi, got.nonfinite, got.zeros) == (want.lo, want.hi, want.nonfinite, want.zeros)


def test_std_and_total():
    s = TensorStats(count=5, mean=0.0, var=6.25, min=-1.0, max=1.0, excess_kurtosis=None, nonfinite=2, zeros=0)
    assert s.std == 2.5
    assert s.total == 7


# two parts of different sizes, different means, both skewed: every term of Pébay's update counts
LEFT = [1.0, 2.0, 4.0, 8.0, 16.0, 3.0]
RIGHT = [-5.0, 0.0, 7.0, 10.0]


@pytest.mark.parametrize("first,second", [(LEFT, RIGHT), (RIGHT, LEFT)])
def test_merge_equals_numpy_on_the_union(first, second):
    a, b = central(first, nonfinite=2), central(second, nonfinite=3)
    assert_moments(a.merge(b), central(first + second, nonfinite=5))


def test_merge_of_a_single_value():
    a, b = central([10.0]), central(RIGHT, nonfinite=1)
    assert_moments(a.merge(b), central([10.0] + RIGHT, nonfinite=1))
    assert_moments(b.merge(a), central(RIGHT + [10.0], nonfinite=1))


def test_merge_with_an_empty_part_returns_the_other_exactly():
    # mean 0.1 of 3 values: 0.1·3/3 is not 0.1 in floating point, so a pass through the general
    # update would show
    part = Moments(3, 0.1, 0.02, 0.001, 0.0002, 0.0, 0.2, 1, 0)
    empty = Moments(nonfinite=4, zeros=2)
    want = Moments(part.n, part.mean, part.m2, part.m3, part.m4, part.lo, part.hi, 5, part.zeros + 2)
    assert part.merge(empty) == want
    assert empty.merge(part) == want
    both = Moments(nonfinite=1, zeros=3).merge(Moments(nonfinite=2, zeros=4))
    assert (both.n, both.nonfinite, both.zeros) == (0, 3, 7)


def _moments(values: np.ndarray) -> Moments:
    acc = MomentAccumulator()
    acc.add(values)
    return acc.moments()


def test_merging_many_uneven_partials_keeps_every_moment():
    # far from zero, skewed, cut in uneven pieces: M3 and M4 of the merge must equal numpy's
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 1.5, 5000) + 40.0
    cuts = [0, 7, 800, 801, 2600, 5000]
    merged = Moments()
    for a, b in zip(cuts, cuts[1:]):
        merged = merged.merge(_moments(values[a:b]))
    d = values.astype(np.float64) - values.mean()
    assert merged.n == 5000
    assert merged.mean == pytest.approx(values.mean(), rel=1e-12)
    assert merged.m2 == pytest.approx(float(np.sum(d ** 2)), rel=1e-9)
    assert merged.m3 == pytest.approx(float(np.sum(d ** 3)), rel=1e-5)
    assert merged.m4 == pytest.approx(float(np.sum(d ** 4)), rel=1e-5)
    stats = merged.stats()
    assert stats.excess_kurtosis == pytest.approx(float(np.mean(d ** 4) / np.mean(d ** 2) ** 2 - 3), rel=1e-5)


def test_merge_adds_counts_and_range_whatever_the_order():
    a = _moments(np.array([1.0, np.nan, 0.0, np.inf, 0.0]))  # finite 1, 0, 0; 2 non-finite
    b = _moments(np.array([-2.0, 0.0, np.nan, 5.0]))         # finite -2, 0, 5; 1 non-finite
    empty = _moments(np.array([np.nan, np.nan]))               # nothing finite; 2 non-finite
    finite = np.array([1.0, 0.0, 0.0, -2.0, 0.0, 5.0])
    for merged, nonfinite in ((a.merge(b), 3), (b.merge(a), 3), (a.merge(empty).merge(b), 5),
                              (empty.merge(a).merge(b), 5)):
        stats = merged.stats()
        assert (stats.count, stats.nonfinite, stats.zeros) == (6, nonfinite, 3)
        assert (stats.min, stats.max) == (-2.0, 5.0)
        assert stats.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert stats.var == pytest.approx(finite.var(), rel=1e-12)


def test_stats_of_no_values():
    s = Moments(nonfinite=3, zeros=0).stats()
    assert s.count == 0 and s.excess_kurtosis is None and (s.nonfinite, s.zeros) == (3, 0)
    assert all(math.isnan(v) for v in (s.mean, s.var, s.min, s.max))


def test_stats_of_one_value():
    s = stats_of(np.array([2.5]))
    assert (s.count, s.mean, s.var, s.min, s.max, s.excess_kurtosis) == (1, 2.5, 0.0, 2.5, 2.5, None)


def test_stats_by_hand():
    # [-2, -1, 1, 2]: mean 0, var 10/4 = 2.5, m4/n = 34/4 = 8.5, kurtosis 8.5/6.25 - 3 = -1.64
    s = stats_of(np.array([-2.0, -1.0, 1.0, 2.0]))
    assert (s.count, s.mean, s.min, s.max) == (4, 0.0, -2.0, 2.0)
    assert s.var == pytest.approx(2.5, rel=1e-15)
    assert s.excess_kurtosis == pytest.approx(-1.64, rel=1e-12)


def test_rounding_never_makes_a_variance_negative_nor_a_constant_vary():
    assert Moments(4, 0.5, -1e-20, 0.0, 0.0, 0.0, 1.0).stats().var == 0.0
    constant = Moments(4, 0.5, 1e-20, 0.0, 1e-40, 0.5, 0.5).stats()  # lo == hi: constant whatever m2 says
    assert constant.var == 0.0 and constant.excess_kurtosis is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accumulated_central_moments_without_shift(dtype):
    # mean 3 (m1 = s1/n = 3: every m1 term of the conversion counts), var 58/6 > 9: no shift
    values = np.array([0, 1, 1, 2, 5, 9], dtype)
    acc = MomentAccumulator()
    acc.add(values)
    assert acc.shift == 0.0
    assert_moments(acc.moments(), central(values))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accumulated_central_moments_with_shift(dtype):
    # the first chunk's mean 103 is the shift; the later chunks move the mean away from it
    chunks = [np.array([100, 101, 101, 102, 105, 109], dtype), np.array([110, 120, 90], dtype),
              np.array([131], dtype)]
    acc = MomentAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    assert acc.shift == 103.0
    assert_moments(acc.moments(), central(np.concatenate(chunks)))


def test_float32_kurtosis_far_from_zero():
    values = (1000.0 + np.random.default_rng(3).uniform(-1, 1, 20_000)).astype(np.float32)
    want = central(values)
    got = stats_of(values)
    assert got.excess_kurtosis == pytest.approx(want.m4 / want.n / (want.m2 / want.n) ** 2 - 3.0, abs=1e-4)


def test_float16_squares_do_not_overflow():
    # 1000² overflows float16: the fourth powers must be taken in a wider type
    values = np.random.default_rng(4).uniform(-1000, 1000, 5000).astype(np.float16)
    want = central(values)
    got = stats_of(values)
    assert got.excess_kurtosis == pytest.approx(want.m4 / want.n / (want.m2 / want.n) ** 2 - 3.0, abs=1e-4)


@pytest.mark.parametrize("values,shift", [
    ([0.0, 2.0], 0.0),      # mean 1, std 1: within one std of zero (the edge)
    ([1.0, 3.0], 2.0),      # mean 2, std 1
    ([-4.0, -2.0], -3.0),   # mean -3, std 1
    ([5.0, 5.0, 5.0, 5.0], 5.0),
])
def test_shift_is_the_first_chunk_mean_unless_it_is_within_one_std(values, shift):
    acc = MomentAccumulator()
    acc.add(np.array([]))          # an empty chunk decides nothing
    assert acc.shift is None
    acc.add(np.array(values))
    acc.add(np.array([100.0, -100.0]))   # later chunks do not move it
    assert acc.shift == shift


def test_counts_and_range_over_chunks():
    chunks = [[1.0, 0.0, 2.0], [np.nan, 3.0], [-np.inf, 0.0, -1.0, 0.0], [np.nan, np.inf], [np.inf, 5.0, 1.0],
              [], [0.5]]
    acc = MomentAccumulator()
    for chunk in chunks:
        acc.add(np.array(chunk, np.float32))
    finite = [1.0, 0.0, 2.0, 3.0, 0.0, -1.0, 0.0, 5.0, 1.0, 0.5]
    assert_moments(acc.moments(), central(finite, nonfinite=5))
    s = acc.result()
    assert (s.count, s.nonfinite, s.zeros, s.total, s.min, s.max) == (10, 5, 3, 15, -1.0, 5.0)


@pytest.mark.parametrize("chunk", [[1.0, 2.0, np.inf], [-np.inf, 1.0, 2.0], [np.nan, 1.0, 2.0],
                                   [1.0, np.nan, 2.0], [np.inf, -np.inf, 1.0, 2.0]])
def test_a_nonfinite_value_at_either_end(chunk):
    s = stats_of(np.array(chunk))
    assert (s.count, s.nonfinite, s.mean, s.var, s.min, s.max) == (2, len(chunk) - 2, 1.5, 0.25, 1.0, 2.0)


def test_range_when_the_extremes_are_in_different_chunks():
    for order in ([[1.0, 2.0], [-3.0, 0.5]], [[-3.0, 0.5], [1.0, 2.0]]):
        acc = MomentAccumulator()
        for chunk in order:
            acc.add(np.array(chunk))
        assert (acc.lo, acc.hi) == (-3.0, 2.0)


def test_buffers_are_reused_for_smaller_and_regrown_for_larger_chunks():
    chunks = [np.arange(10.0), np.arange(3.0) * 7, np.arange(25.0) - 4]
    acc = MomentAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    assert_moments(acc.moments(), central(np.concatenate(chunks)))


def test_statistics_from_a_cold_process_and_growing_chunks(monkeypatch):
    """The scratch arrays shared by the process, from none at all, growing with the chunk: each
    size reallocates them, and the moments still match numpy float64."""
    from initaudit.measure import stats as stats_module

    monkeypatch.setattr(stats_module, "_SCRATCH", None)
    rng = np.random.default_rng(21)
    chunks = [rng.normal(0.1, 0.5, size).astype(np.float32) for size in (3, 17, 1000, 4096)]
    acc = stats_module.MomentAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    x = np.concatenate(chunks).astype(np.float64)
    got = acc.result()
    assert got.count == x.size
    assert got.mean == pytest.approx(x.mean(), rel=1e-12)
    assert got.var == pytest.approx(x.var(), rel=1e-10)
    d = x - x.mean()
    assert got.excess_kurtosis == pytest.approx(np.mean(d ** 4) / x.var() ** 2 - 3, rel=1e-4, abs=1e-4)
