"""Each rule's check, asserted so that removing or loosening it fails a test.

Expected values are worked out independently: counts by hand, variances with numpy in float64,
the bands' noise quantiles from the chi-square law integrated numerically (not from the
Wilson–Hilferty formula the code uses).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import TensorProto, helper

import initaudit
from initaudit.judge.bands import bands_for

RNG = np.random.default_rng(1234)


def only_layer(tmp_path, m, name="w", **options):
    layers = {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), **options).models[0].layers}
    return layers[name]


def codes(layer) -> list[str]:
    return [f.code for f in layer.findings]


def matmul_model(w: np.ndarray):
    return model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])


def xavier_matrix(rows: int, cols: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (rows + cols))
    return RNG.uniform(-bound, bound, (rows, cols)).astype(np.float32)


# --- IA3xx ---------------------------------------------------------------------------------------------------------


def test_ia304_scale_computed_at_run_time(tmp_path):
    q = RNG.integers(-128, 128, (16, 8)).astype(np.int8)
    m = model([helper.make_node("DequantizeLinear", ["w", "scale"], ["w_f"]),
               helper.make_node("MatMul", ["x", "w_f"], ["y"])], [tensor("w", q)],
              inputs=[("x", TensorProto.FLOAT, None), ("scale", TensorProto.FLOAT, [])])
    layer = only_layer(tmp_path, m)
    (finding,) = [f for f in layer.findings if f.code == "IA304"]
    assert finding.severity == "warn" and "scale computed at run time" in finding.message


# --- recurrent parts -----------------------------------------------------------------------------------------------


def _gates(directions: int, hidden: int, n_in: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (n_in + hidden))  # Xavier per gate: fans (I, H)
    return RNG.uniform(-bound, bound, (directions, 4 * hidden, n_in)).astype(np.float32)


def test_lstm_one_weak_gate_fails_although_the_average_is_ok(tmp_path):
    hidden, n_in = 20, 10
    w = _gates(1, hidden, n_in)
    w[0, 2 * hidden:3 * hidden] *= 0.6  # gate f (ONNX order i, o, f, c) at 0.36× the variance
    r = _gates(1, hidden, hidden)
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=hidden)], [tensor("w", w), tensor("r", r)])
    layer = only_layer(tmp_path, m)
    target = 2.0 / (n_in + hidden)
    assert layer.ratio == pytest.approx(var64(w) / target, rel=1e-6) and 0.8 < layer.ratio < 1.25
    assert [p.name for p in layer.parts] == ["forward.i", "forward.o", "forward.f", "forward.c"]
    weak = layer.parts[2]
    assert weak.ratio == pytest.approx(var64(w[0, 40:60]) / target, rel=1e-6)
    assert weak.status == "fail"
    part_findings = [f for f in layer.findings if f.code == "IA101" and "forward.f" in f.message]
    assert len(part_findings) == 1 and layer.status == "fail"


def test_bidirectional_lstm_parts_read_the_reverse_slices(tmp_path):
    hidden, n_in = 16, 12
    w = _gates(2, hidden, n_in)
    w[1, hidden:2 * hidden] *= 0.5  # reverse direction, gate o: 0.25× the variance
    r = _gates(2, hidden, hidden)
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=hidden, direction="bidirectional")],
              [tensor("w", w), tensor("r", r)])
    layer = only_layer(tmp_path, m)
    names = [p.name for p in layer.parts]
    assert names == [f"{d}.{g}" for d in ("forward", "reverse") for g in "iofc"]
    target = 2.0 / (n_in + hidden)
    for part, (d, g) in zip(layer.parts, [(d, g) for d in range(2) for g in range(4)]):
        expected = var64(w[d, g * hidden:(g + 1) * hidden]) / target
        assert part.ratio == pytest.approx(expected, rel=1e-6), part.name
    assert layer.parts[5].status == "fail" and layer.parts[1].status == "ok"
    assert any(f.code == "IA101" and "reverse.o" in f.message for f in layer.findings)


def test_gru_gate_parts(tmp_path):
    hidden, n_in = 8, 6
    bound = math.sqrt(6.0 / (n_in + hidden))
    w = RNG.uniform(-bound, bound, (1, 3 * hidden, n_in)).astype(np.float32)
    m = model([helper.make_node("GRU", ["x", "w", "r"], ["y"], hidden_size=hidden)],
              [tensor("w", w), tensor("r", RNG.uniform(-0.3, 0.3, (1, 3 * hidden, hidden)).astype(np.float32))])
    layer = only_layer(tmp_path, m)
    assert [p.name for p in layer.parts] == ["forward.z", "forward.r", "forward.h"]
    assert [p.stats.count for p in layer.parts] == [hidden * n_in] * 3


def var64(values) -> float:
    return float(np.asarray(values, np.float64).var())


# --- bands: the z-values, against the exact chi-square law ----------------------------------------------------------


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _chi2_quantile(nu: int, p: float) -> float:
    """The p-quantile of χ²(ν), by integrating its density (trapezoids, float64)."""
    x = np.linspace(1e-9, 6.0 * nu + 60.0, 2_000_001)
    log_pdf = (nu / 2 - 1) * np.log(x) - x / 2 - (nu / 2) * math.log(2.0) - math.lgamma(nu / 2)
    pdf = np.exp(log_pdf)
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


def _normal_law_kurtosis_estimate(n: int) -> float:
    """The sample excess kurtosis that makes the band's conservative kurtosis exactly 0 (a normal law)."""
    return -2.0 * math.sqrt(24.0 / n)


def test_ok_band_is_the_2_6_sigma_noise_quantile():
    # sample variance of n normal draws / true variance = χ²(n-1)/n; the ok band is its ±2.6σ quantiles
    n = 100
    bands = bands_for(n, _normal_law_kurtosis_estimate(n))
    assert bands.ok_hi == pytest.approx(_chi2_quantile(n - 1, _phi(2.6)) / n, rel=0.004)
    assert bands.ok_lo == pytest.approx(_chi2_quantile(n - 1, _phi(-2.6)) / n, rel=0.004)
    assert (bands.fail_lo, bands.fail_hi) == (0.5, 2.0)  # at n = 100 the fixed fail band is the wider


def test_fail_band_is_the_3_5_sigma_noise_quantile():
    n = 30
    bands = bands_for(n, _normal_law_kurtosis_estimate(n))
    assert bands.fail_hi == pytest.approx(_chi2_quantile(n - 1, _phi(3.5)) / n, rel=0.006)


def test_large_layers_keep_the_fixed_bands():
    bands = bands_for(1_000_000, 0.0)
    assert (bands.ok_lo, bands.ok_hi, bands.fail_lo, bands.fail_hi) == (0.8, 1.25, 0.5, 2.0)
    trained = bands_for(1_000_000, 0.0, "trained")
    assert (trained.ok_lo, trained.ok_hi, trained.fail_lo, trained.fail_hi) == (1 / 3, 3.0, 0.1, 10.0)


# --- Transpose without perm ----------------------------------------------------------------------------------------


def test_transpose_without_perm_reverses_the_axes(tmp_path):
    kernel = RNG.normal(0, 0.1, (3, 5, 2, 8)).astype(np.float32)  # reversed: [8, 2, 5, 3] = OIHW
    m = model([helper.make_node("Transpose", ["w"], ["w_t"]), helper.make_node("Conv", ["x", "w_t"], ["y"])],
              [tensor("w", kernel)])
    layer = only_layer(tmp_path, m)
    assert layer.layout == "WHIO"  # stored axis 0 is the consumer's W, 1 its H, 2 its I, 3 its O
    assert (layer.fan_in, layer.fan_out) == (2 * 15, 8 * 15)
