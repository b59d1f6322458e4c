"""Verdicts are statistically sound: no false alarms on small correct layers, no misses on large wrong ones.

Each property is checked over many seeds; the statistics are computed by the
same code path the tool uses (``stats_of`` + ``verdict``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from initaudit.judge.bands import bands_for, noise_quantile
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
