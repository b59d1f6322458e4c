"""The unit pass (``measure/units.py``): per-output-unit and per-input-unit sums of squares and the power sums,
streamed chunk by chunk, against numpy in float64 for each layout (grouped and transposed convs included)."""
from __future__ import annotations

import numpy as np
import pytest

from initaudit.measure.units import aligned_chunk, unit_axes, unit_sums


def _axes(shape, layout: str, op: str, groups: int, side: str = "out"):
    """The unit map as the pass builds it: a ConvTranspose W[C, M/g, k…] counts one group's units on O."""
    return unit_axes(shape, layout, groups, side, "O" if op == "ConvTranspose" else "I")


def unit_sums_of(w: np.ndarray, layout: str, op: str = "Conv", groups: int = 1, chunk: int = 1 << 17):
    """The unit pass over ``w`` read with ``layout``, in chunks of ``chunk`` values."""
    flat = w.ravel()
    chunks = ((s, flat[s:s + chunk]) for s in range(0, flat.size, chunk))
    return unit_sums(chunks, _axes(w.shape, layout, op, groups), flat.size, _axes(w.shape, layout, op, groups, "in"))


@pytest.mark.parametrize("shape, layout, op, groups, out_sum", [
    ((12, 5, 3, 3), "OIHW", "Conv", 1, lambda w: (w ** 2).sum(axis=(1, 2, 3))),
    ((7, 11), "OI", "Gemm", 1, lambda w: (w ** 2).sum(axis=1)),
    ((11, 7), "IO", "MatMul", 1, lambda w: (w ** 2).sum(axis=0)),
    ((2, 24, 5), "BOI", "LSTM", 1, lambda w: (w ** 2).sum(axis=2).ravel()),
    # ConvTranspose W[C, M/g, k, k] with g = 2: unit = group·(M/g) + m
    ((6, 4, 3, 3), "IOHW", "ConvTranspose", 2,
     lambda w: np.concatenate([(w[:3] ** 2).sum(axis=(0, 2, 3)), (w[3:] ** 2).sum(axis=(0, 2, 3))])),
])
@pytest.mark.parametrize("chunk", [37, "aligned", 1 << 17])
def test_unit_sums_match_numpy(shape, layout, op, groups, out_sum, chunk):
    w = np.random.default_rng(0).normal(size=shape)
    if chunk == "aligned":  # the smallest chunk the fast paths accept: one run or row at a time
        chunk = aligned_chunk(1, _axes(shape, layout, op, groups), _axes(shape, layout, op, groups, "in"))
    got = unit_sums_of(w, layout, op, groups, chunk=chunk)
    np.testing.assert_allclose(got.unit_sq, out_sum(w), rtol=1e-12)
    np.testing.assert_allclose(got.power, [(w ** k).sum() for k in (2, 4, 6, 8)], rtol=1e-12)
    assert got.count == w.size and got.max_abs == np.abs(w).max()
    in_axis = [i for i, letter in enumerate(layout) if letter == "I"][0]
    if op not in ("ConvTranspose",) and groups == 1:
        kept = tuple(i for i, letter in enumerate(layout) if letter in "IB")
        expected_in = (w ** 2).sum(axis=tuple(i for i in range(w.ndim) if i not in kept)).ravel()
        np.testing.assert_allclose(got.in_sq, expected_in, rtol=1e-12)
    assert in_axis >= 0


def test_input_units_of_a_grouped_conv_are_per_group():
    w = np.random.default_rng(1).normal(size=(8, 3, 3, 3))  # groups 2: 4 output channels per group
    got = unit_sums_of(w, "OIHW", "Conv", 2)
    expected = np.concatenate([(w[:4] ** 2).sum(axis=(0, 2, 3)), (w[4:] ** 2).sum(axis=(0, 2, 3))])
    np.testing.assert_allclose(got.in_sq, expected, rtol=1e-12)
