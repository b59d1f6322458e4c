"""The noise bands (``initaudit/judge/bands.py``).

Statistically sound: no false alarms on small correct layers, no misses on large wrong ones, each
property checked over many seeds, with the statistics computed by the same code path the tool uses
(``stats_of`` + ``verdict``).

Value by value: the README's formulas worked by hand, with n and κ chosen so that
c = 2/(9ν) = (2+κ)/(9(n-1)) is a perfect square and every quantile is a fraction:

    ν = 2(n-1)/(2+κ),  c = 2/(9ν),  q(z) = (n-1)/n · max(1 - c + z·√c, 0)³

Against the exact law: the bands' noise quantiles from the chi-square law integrated numerically (not
from the Wilson–Hilferty formula the code uses).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from initaudit.judge.bands import FIXED_BANDS, Bands, band_kurtosis, bands_for, consistent, noise_quantile
from initaudit.judge.verdict import verdict
from initaudit.measure.stats import stats_of
from initaudit.trace.fans import Fans

SEEDS = 1000


def statuses(n: int, factor: float, draw: str, seeds: int = SEEDS, fans: Fans | None = None) -> list[str]:
    """Status of a layer of n weights whose variance is ``factor`` × the Xavier target."""
    fans = fans or Fans(n // 10 if n >= 20 else 1, 10)
    fans = Fans(max(fans.fan_in, 1), fans.fan_out)
    target = 2.0 / (fans.fan_in + fans.fan_out)
    std = math.sqrt(factor * target)
    rng = np.random.default_rng(12345 + n)
    out = []
    for _ in range(seeds):
        if draw == "uniform":
            w = rng.uniform(-math.sqrt(3) * std, math.sqrt(3) * std, n)
        else:
            w = rng.normal(0, std, n)
        result = verdict(stats_of(w.astype(np.float32)), fans, "xavier")
        out.append(result.status_findings[0].severity if result.status_findings else "ok")
    return out


@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_xavier_layer_of_150_weights_does_not_fail(draw):
    got = statuses(150, 1.0, draw)
    assert got.count("fail") <= 1  # at least 999 of 1000 seeds pass


@pytest.mark.parametrize("n", [16, 40, 150, 1000])
@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_correct_layers_of_any_size_rarely_fail(n, draw):
    got = statuses(n, 1.0, draw)
    assert got.count("fail") <= 1  # < 0.1 %


@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_three_times_xavier_with_5000_weights_fails(draw):
    assert statuses(5000, 3.0, draw).count("fail") >= 999


@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_1_6_times_xavier_with_5000_weights_is_flagged(draw):
    assert statuses(5000, 1.6, draw).count("ok") <= 1


@pytest.mark.parametrize("factor,least", [(2.0, "warn"), (0.5, "warn"), (3.0, "fail"), (1 / 3, "fail")])
@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_wrong_layers_of_2000_weights_are_caught(factor, least, draw):
    got = statuses(2000, factor, draw, seeds=300)
    hits = sum(s == "fail" or (least == "warn" and s == "warn") for s in got)
    assert hits >= 0.99 * len(got)


def test_bands_widen_for_small_layers_only():
    small, large = bands_for(16, 0.0), bands_for(100_000, 0.0)
    assert small.fail_lo < 0.5 and small.fail_hi > 2.0
    assert (large.ok_lo, large.ok_hi, large.fail_lo, large.fail_hi) == (0.8, 1.25, 0.5, 2.0)


def test_noise_quantile_tracks_chi_square():
    # chi2(15)/16 quantiles at z = ±3.09 (0.1 % tails) are 0.218 and 2.35 (scipy).
    assert noise_quantile(16, 0.0, -3.09) == pytest.approx(0.218, rel=0.04)
    assert noise_quantile(16, 0.0, 3.09) == pytest.approx(2.35, rel=0.04)


def test_overflowed_moments_do_not_break_the_bands():
    for kurtosis in (math.inf, math.nan, 1e300):
        bands = bands_for(48_000, kurtosis)
        assert bands.fail_lo <= 0.5 and bands.fail_hi >= 2.0


# --- value by value ------------------------------------------------------------------------------------------------

INIT = Bands(*FIXED_BANDS["init"])


@pytest.mark.parametrize("ratio,status", [
    (0.5, "warn"), (2.0, "warn"),      # "fail outside 0.5–2": the edges themselves are not outside
    (0.8, "ok"), (1.25, "ok"),         # "ok inside 0.8–1.25": the edges are inside
    (0.4999, "fail"), (2.0001, "fail"), (0.7999, "warn"), (1.2501, "warn"), (1.0, "ok"),
])
def test_band_edges_belong_to_the_milder_status(ratio, status):
    assert INIT.status(ratio) == status


@pytest.mark.parametrize("n,kurtosis,expected", [
    (24, None, 2.0),                   # no estimate counts as 0: 0 + 2·√(24/24)
    (6, None, 4.0),                    # 0 + 2·√(24/6)
    (6, 1.0, 5.0),                     # 1 + 2·√(24/6)
    (2400, -1.5, -1.2),                # -1.5 + 2·√0.01 = -1.3, held at the uniform law's -1.2
    (2400, -1.3, -1.1),                # -1.3 + 0.2: above the floor, kept
    (1, 0.0, 2.0 * math.sqrt(24.0)),   # n = 1: √(24/1)
    (0, 0.0, 2.0 * math.sqrt(24.0)),   # n = 0 counts as 1 (no division by zero)
    (24, 1e300, 1e6),                  # capped at HEAVIEST
    (24, math.inf, 1e6), (24, -math.inf, 1e6), (24, math.nan, 1e6),  # overflowed moments
])
def test_band_kurtosis_by_hand(n, kurtosis, expected):
    assert band_kurtosis(n, kurtosis) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,kurtosis,z,expected", [
    # n = 3, κ = 0: ν = 2, c = 1/9, √c = 1/3
    (3, 0.0, 0.0, 2 / 3 * (8 / 9) ** 3),
    (3, 0.0, 2.6, 2 / 3 * (15.8 / 9) ** 3),
    (3, 0.0, -2.6, 2 / 3 * (0.2 / 9) ** 3),
    (3, 0.0, -3.5, 0.0),                       # 1 - 1/9 - 3.5/3 < 0: clamped to 0
    # n = 2, κ = 0: ν = 1, c = 2/9
    (2, 0.0, 0.0, 1 / 2 * (7 / 9) ** 3),
    # n = 11, κ = -1.9 (the floor): ν = 200, c = 1/900, √c = 1/30
    (11, -1.9, 3.0, 10 / 11 * (1 - 1 / 900 + 3 / 30) ** 3),
    (11, -2.5, 3.0, 10 / 11 * (1 - 1 / 900 + 3 / 30) ** 3),   # below -1.9 counts as -1.9
    (11, -1.9, -3.0, 10 / 11 * (1 - 1 / 900 - 3 / 30) ** 3),
    # n = 28, κ = 4: ν = 9, c = 2/81
    (28, 4.0, 3.5, 27 / 28 * (1 - 2 / 81 + 3.5 * math.sqrt(2) / 9) ** 3),
    # n = 19, κ = 0: ν = 18, c = 1/81, √c = 1/9
    (19, 0.0, 2.0, 18 / 19 * (1 - 1 / 81 + 2 / 9) ** 3),
    (19, 0.0, -2.0, 18 / 19 * (1 - 1 / 81 - 2 / 9) ** 3),
])
def test_noise_quantile_by_hand(n, kurtosis, z, expected):
    assert noise_quantile(n, kurtosis, z) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n", [0, 1])
def test_one_value_says_nothing_of_the_variance(n):
    # the band is [0, ∞): any lower quantile is 0, any upper quantile unbounded
    assert noise_quantile(n, 0.0, -3.5) == 0.0
    assert noise_quantile(n, 0.0, -0.5) == 0.0
    assert noise_quantile(n, 0.0, 0.5) == math.inf
    assert noise_quantile(n, 0.0, 3.5) == math.inf


def test_bands_for_by_hand():
    # n = 24, κ̂ = 19: κ = 19 + 2·√(24/24) = 21, ν = 2·23/23 = 2, c = 1/9, √c = 1/3
    def q(z):
        return 23 / 24 * max(8 / 9 + z / 3, 0.0) ** 3

    assert q(-3.5) == 0.0 and q(-2.6) < 0.8 and q(2.6) > 1.25 and q(3.5) > 2.0
    got = bands_for(24, 19.0)
    assert got.ok_lo == pytest.approx(q(-2.6), rel=1e-9)
    assert got.ok_hi == pytest.approx(q(2.6), rel=1e-12)
    assert got.fail_lo == 0.0
    assert got.fail_hi == pytest.approx(q(3.5), rel=1e-12)
    # the trained profile's fixed bands 1/3–3 (ok) and 0.1–10 (fail) are wider where noise is narrower
    trained = bands_for(24, 19.0, "trained")
    assert trained.ok_lo == pytest.approx(q(-2.6), rel=1e-9)
    assert trained.ok_hi == pytest.approx(q(2.6), rel=1e-12)
    assert (trained.fail_lo, trained.fail_hi) == (0.0, 10.0)
    assert bands_for(10**6, 0.0, "trained") == Bands(1 / 3, 3.0, 0.1, 10.0)


def test_bands_for_no_kurtosis_counts_as_normal():
    # n = 24, κ̂ unknown: κ = 0 + 2 = 2, ν = 23/2, c = 4/207
    c = 4 / 207
    got = bands_for(24, None)
    assert got.fail_lo == pytest.approx(min(0.5, 23 / 24 * (1 - c - 3.5 * math.sqrt(c)) ** 3), rel=1e-12)
    assert got.fail_hi == pytest.approx(23 / 24 * (1 - c + 3.5 * math.sqrt(c)) ** 3, rel=1e-12)


def test_consistent_by_hand():
    # n = 96, κ̂ = 1: κ = 1 + 2·√(24/96) = 2, ν = 2·95/4 = 47.5, c = 2/(9·47.5) = 4/855;
    # within 3.5 σ of noise, widened by 2 %
    c = 4 / 855
    lo = 95 / 96 * (1 - c - 3.5 * math.sqrt(c)) ** 3 * 0.98
    hi = 95 / 96 * (1 - c + 3.5 * math.sqrt(c)) ** 3 * 1.02
    assert 0.3 < lo < 0.6 and 1.6 < hi < 2.0
    for ratio, inside in [(lo * 1.0001, True), (lo * 0.9999, False), (hi * 0.9999, True), (hi * 1.0001, False),
                          (1.0, True)]:
        assert consistent(ratio, 96, 1.0) == inside, ratio
    # with no kurtosis estimate κ = 1: narrower, so the ratio just inside the band above is outside it
    assert not consistent(lo * 1.0001, 96, None)


# --- the z-values, against the exact chi-square law ----------------------------------------------------------------


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
