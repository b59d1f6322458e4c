"""The spectral evidence's measurement: the matricization of each layout, the Lanczos estimate of σ₁
against numpy's SVD, and the block a large layer is tested on."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from modelkit import model, save, single_op, tensor
from onnx import helper

import initaudit
from initaudit.measure.spectrum import layer_spectrum, matrix_shape, planned_spectrum, top_singular_value
from initaudit.read.graph import ModelGraph
from initaudit.read.loader import load_model
from initaudit.trace.follow import find_uses
from initaudit.trace.plan import plan


@pytest.mark.parametrize("shape, layout, expected", [
    ((64, 32, 3, 3), "OIHW", (64, 288)),          # Conv: output units × their receptive field
    ((3, 3, 32, 64), "HWIO", (288, 64)),          # Keras conv: the cut falls after I
    ((512, 128), "IO", (512, 128)),               # MatMul [in, out]
    ((120, 400), "OI", (120, 400)),               # Gemm transB=1
    ((2, 256, 64), "BOI", (512, 64)),             # LSTM W[D, 4H, I]
    ((32, 16, 4, 4), "IOHW", (32, 256)),          # ConvTranspose W[C, M/g, k…]
    ((64,), "O", None),                           # a vector is no matrix
    ((1, 64), "OI", None),                        # one row: no bulk to stand out of
    ((0, 8), "OI", None),
    ((2, 2), "OI", (2, 2)),                       # two rows and two columns are enough
    ((3, 3, 8), "HWO", (9, 8)),                   # the first unit axis is the last: cut before it
    ((4, 6), "HW", (4, 6)),                       # no unit axis at all: cut before the last axis
    ((4, 4), "O", None),                          # a layout that does not fit the shape
])
def test_matrix_shape_cuts_after_the_first_unit_axis(shape, layout, expected):
    assert matrix_shape(shape, layout) == expected


@pytest.mark.parametrize("rows, cols", [(8, 64), (64, 576), (300, 300), (520, 700), (1000, 120), (16, 4096)])
def test_top_singular_value_matches_numpy_svd_from_below(rows, cols):
    rng = np.random.default_rng(rows * cols)
    for matrix in (rng.standard_normal((rows, cols)),
                   rng.standard_normal((rows, cols)) + 3.0 * np.outer(rng.standard_normal(rows), rng.standard_normal(cols))
                   / np.sqrt(np.sqrt(rows * cols))):
        exact = float(np.linalg.svd(matrix, compute_uv=False)[0])
        estimate = top_singular_value(matrix)
        assert estimate <= exact * (1 + 1e-12)
        assert estimate >= exact * (1 - 0.005)


def test_top_singular_value_of_a_rank_one_matrix_is_its_norm():
    u, v = np.arange(1.0, 9.0), np.linspace(-1.0, 2.0, 50)
    assert top_singular_value(np.outer(u, v)) == pytest.approx(np.linalg.norm(u) * np.linalg.norm(v), rel=1e-12)


@contextmanager
def _planned(tmp_path, w):
    """The planned weight of ``x @ w``, with its model open."""
    with load_model(save(single_op("MatMul", w), tmp_path)) as model:
        graph = ModelGraph(model.proto)
        yield plan(model, graph, list(find_uses(graph, model.load_array)), "connectivity", False)


def test_a_large_layer_is_tested_on_its_first_rows(tmp_path):
    """A [600, 1000] layer holds more than the 2¹⁹ values tested whole: the block is the first
    524 rows (2¹⁹ // 1000), every column, read exactly."""
    w = np.random.default_rng(3).standard_normal((600, 1000)).astype(np.float32)
    with _planned(tmp_path, w) as planned:
        spectrum = layer_spectrum(planned.task, (600, 1000))
        assert (spectrum.rows, spectrum.cols) == (524, 1000)
        block = w[:524].astype(np.float64)
        assert spectrum.rms == pytest.approx(np.sqrt(np.mean(block ** 2)), rel=1e-12)
        assert spectrum.top == pytest.approx(np.linalg.svd(block, compute_uv=False)[0], rel=0.005)
        whole = layer_spectrum(planned.task, (600, 1000), max_values=10 ** 6)
        assert (whole.rows, whole.cols) == (600, 1000)


def test_a_block_keeps_eight_rows_of_a_very_long_row(tmp_path):
    w = np.random.default_rng(4).standard_normal((20, 70000)).astype(np.float32)
    with _planned(tmp_path, w) as planned:
        assert layer_spectrum(planned.task, (20, 70000)).rows == 8


def test_the_review_measures_the_spectrum_of_fresh_candidates_only(tmp_path):
    """A fresh MatMul gets its σ₁ in the review; a structured (trained-looking) one is not measured."""
    rng = np.random.default_rng(5)
    fresh = rng.normal(0.0, 0.02, (256, 256)).astype(np.float32)
    layer = initaudit.audit(save(single_op("MatMul", fresh), tmp_path, "fresh.onnx"), jobs=1,
                            profile="trained").models[0].layers[0]
    assert layer.review.spectrum is not None
    exact = np.linalg.svd(fresh.astype(np.float64), compute_uv=False)[0]
    assert layer.review.spectrum.top == pytest.approx(exact, rel=0.005)
    trained = (fresh * rng.lognormal(0.0, 0.6, (1, 256))).astype(np.float32)
    layer = initaudit.audit(save(single_op("MatMul", trained), tmp_path, "trained.onnx"), jobs=1,
                            profile="trained").models[0].layers[0]
    assert not layer.review.fresh and layer.review.spectrum is None


def test_top_singular_value_up_to_256_on_the_smaller_side_is_exact_in_float64():
    """A smaller side of 256 (``EXACT_SIDE``, inclusive) is solved exactly, in float64 even for float32 input:
    numpy's SVD to 1e-10, tall or wide.  Singular values spread evenly over [0.5, 1], with no gap under the
    largest, are where 32 Lanczos steps fall short (by ~3e-5 on this one)."""
    w = np.random.default_rng(6).standard_normal((256, 300)).astype(np.float32)
    exact = float(np.linalg.svd(w.astype(np.float64), compute_uv=False)[0])
    assert top_singular_value(w) == pytest.approx(exact, rel=1e-10)
    assert top_singular_value(w.T) == pytest.approx(exact, rel=1e-10)
    rng = np.random.default_rng(6)
    u, v = np.linalg.qr(rng.standard_normal((256, 256)))[0], np.linalg.qr(rng.standard_normal((300, 256)))[0]
    even = u @ np.diag(np.linspace(1.0, 0.5, 256)) @ v.T
    assert top_singular_value(even) == pytest.approx(1.0, rel=1e-10)
    assert top_singular_value(even.T) == pytest.approx(1.0, rel=1e-10)


def test_the_lanczos_estimate_is_the_same_on_every_run():
    """The start vector comes from a fixed seed: one layer, one figure, run after run."""
    w = np.random.default_rng(7).standard_normal((300, 400))
    assert top_singular_value(w) == top_singular_value(w) == top_singular_value(w, seed=0)


def test_a_layer_of_two_rows_is_tested(tmp_path):
    w = np.random.default_rng(8).standard_normal((2, 16)).astype(np.float32)
    with _planned(tmp_path, w) as planned:
        spectrum = layer_spectrum(planned.task, (2, 16))
    assert (spectrum.rows, spectrum.cols) == (2, 16)
    assert spectrum.top == pytest.approx(np.linalg.svd(w.astype(np.float64), compute_uv=False)[0], rel=1e-12)


@pytest.mark.parametrize("fill", [0.0, np.inf, np.nan])
def test_a_block_of_zeros_or_a_non_finite_value_has_no_spectrum(tmp_path, fill):
    w = np.random.default_rng(9).standard_normal((16, 16)).astype(np.float32)
    w[3, 4] = fill
    if fill == 0.0:
        w[:] = 0.0
    with _planned(tmp_path, w) as planned:
        assert layer_spectrum(planned.task, (16, 16)) is None


def test_a_vector_weight_has_no_spectrum(tmp_path):
    """MatMul by a [16, 1] weight: one column, no matrix to test."""
    with _planned(tmp_path, np.ones((16, 1), np.float32)) as planned:
        assert planned_spectrum(planned) is None


def test_packed_matmul_nbits_blocks_have_no_spectrum(tmp_path):
    """MatMulNBits stores [N, blocks, bytes]: not the matrix's shape, so its spectrum is not measured."""
    n, k, block = 24, 32, 16
    codes = np.random.default_rng(10).integers(0, 256, (n, k // block, block)).astype(np.uint8)
    scales = np.full((n, k // block), 0.01, np.float32)
    node = helper.make_node("MatMulNBits", ["x", "B", "scales"], ["y"], domain="com.microsoft", K=k, N=n, bits=8,
                            block_size=block)
    m = model([node], [tensor("B", codes), tensor("scales", scales)],
              extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    with load_model(save(m, tmp_path)) as loaded:
        graph = ModelGraph(loaded.proto)
        uses = [u for u in find_uses(graph, loaded.load_array) if u.source.name == "B"]
        planned = plan(loaded, graph, uses, "connectivity", False)
        assert planned.task.decoder is not None and planned.primary is not None
        assert planned_spectrum(planned) is None
