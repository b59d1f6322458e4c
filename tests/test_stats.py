"""Streaming statistics against numpy in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelkit import bfloat16

from initaudit.measure.stats import MomentAccumulator, stats_of


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
