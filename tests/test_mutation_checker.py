"""Verdicts, findings, matches and families, case by case (written from the survivors of
`mutmut run "initaudit.checker.*"`).

The statistics are built by hand (``TensorStats(...)``) so that every input is exact; expected values
are worked by hand from the rule table of the README ("Rule codes") and the formulas of "How a verdict
is reached": ν = 2(n-1)/(2+κ), q(z) = (n-1)/n·(1 - c + z√c)³ with c = 2/(9ν), κ = κ̂ + 2√(24/n).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from initaudit.findings import Finding
from initaudit.judge.verdict import distribution, effective_var, matches, pathologies, verdict
from initaudit.measure.stats import TensorStats, stats_of
from initaudit.trace.fans import Fans

NAN = math.nan


def stats(count, mean=0.0, var=1.0, lo=-1.0, hi=1.0, kurtosis=0.0, nonfinite=0, zeros=0) -> TensorStats:
    return TensorStats(count, mean, var, lo, hi, kurtosis, nonfinite, zeros)


EMPTY = TensorStats(0, NAN, NAN, NAN, NAN, None, 0, 0)

# --- pathologies (IA2xx) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,expected", [
    (EMPTY, []),
    (TensorStats(0, NAN, NAN, NAN, NAN, None, 3, 0), [("IA201", "fail", "3 of 3 values are NaN or infinite")]),
    (stats(4, nonfinite=2), [("IA201", "fail", "2 of 6 values are NaN or infinite")]),
    (stats(5, 0.0, 0.0, 0.0, 0.0, None, zeros=5), [("IA202", "fail", "all 5 values are zero")]),
    # zeros and a NaN: not all values are zero, but the finite ones are constant
    (stats(5, 0.0, 0.0, 0.0, 0.0, None, nonfinite=1, zeros=5),
     [("IA201", "fail", "1 of 6 values are NaN or infinite"), ("IA203", "fail", "all 5 finite values equal 0")]),
    (stats(10, 0.5, 0.0, 0.5, 0.5, None), [("IA203", "fail", "all 10 finite values equal 0.5")]),  # no IA204
    # two values 10 and 11: mean 10.5, σ 0.5, 21 σ from zero, beyond the noise floor 5/√2 = 3.54 σ
    (stats(2, 10.5, 0.25, 10.0, 11.0, -2.0), [("IA204", "warn", "mean 10.5 is 21.00 σ away from zero")]),
    # n = 100: noise floor 5/√100 = 0.5 σ
    (stats(100, 0.55, 1.0), [("IA204", "warn", "mean 0.55 is 0.55 σ away from zero")]),
    (stats(100, -0.55, 1.0), [("IA204", "warn", "mean -0.55 is 0.55 σ away from zero")]),
    (stats(100, 0.5, 1.0), []),                  # exactly at the noise floor: not beyond it
    (stats(10**6, 0.1, 1.0), []),                # exactly at the 0.1 σ limit: not beyond it
    (stats(10**6, 0.12, 0.25), [("IA204", "warn", "mean 0.12 is 0.24 σ away from zero")]),
    (stats(10, 0.0, 1.0, zeros=5), [("IA205", "warn", "5 of 10 values (50%) are zero")]),
    (stats(10, 0.0, 1.0, zeros=7, nonfinite=2),
     [("IA201", "fail", "2 of 12 values are NaN or infinite"), ("IA205", "warn", "7 of 12 values (58%) are zero")]),
    (stats(10, 0.0, 1.0, zeros=4), []),
])
def test_pathologies_by_hand(case, expected):
    assert pathologies(case) == [Finding(*f) for f in expected]


def test_mean_shift_limit_by_profile():
    shifted = stats(10**6, 0.3, 1.0)  # 0.3 σ: beyond 0.1 σ (init, the default), within 0.5 σ (trained)
    assert [f.code for f in pathologies(shifted)] == ["IA204"]
    assert [f.code for f in pathologies(shifted, "init")] == ["IA204"]
    assert pathologies(shifted, "trained") == []
    assert [f.code for f in pathologies(stats(10**6, 0.6, 1.0), "trained")] == ["IA204"]


@pytest.mark.parametrize("lo,hi,flagged,shown", [
    (-70000.0, 10.0, True, "7e+04"),      # the larger magnitude is the minimum
    (-10.0, 70000.0, True, "7e+04"),
    (-65504.0, 65504.0, False, None),     # float16's largest value still fits
    (-1.0, 1.0, False, None),
])
def test_ia206_float16_overflow(lo, hi, flagged, shown):
    case = stats(3, 0.0, 1.0, lo, hi)
    found = pathologies(case, fp16=True)
    if flagged:
        assert found == [Finding("IA206", "warn", f"max |w| = {shown} overflows float16")]
    else:
        assert found == []
    assert pathologies(case) == [] and pathologies(case, fp16=False) == []  # off by default


# --- matches -------------------------------------------------------------------------------------------------------

# Fans(1, 1): xavier 2/2 = 1, he_fan_in 2, he_fan_out 2, lecun 1, torch_default 1/3
ONE = Fans(1, 1)


def test_matches_of_a_variance_of_exactly_one():
    # n = 10⁴, κ̂ = 0: ratio 1 is consistent (band ≈ 0.94–1.06), 0.5 and 3 are not
    assert matches(stats(10_000, var=1.0), ONE) == ("xavier", "lecun")


def test_matches_use_the_scaled_variance():
    assert effective_var(stats(10, var=0.25), 2.0) == 1.0
    assert effective_var(stats(10, var=0.25)) == 0.25  # no scale: the stored values' own variance
    assert matches(stats(10_000, var=0.25), ONE, scale=2.0) == ("xavier", "lecun")
    assert matches(stats(10_000, var=4.0), ONE, scale=0.5) == ("xavier", "lecun")


def test_matches_widen_with_the_kurtosis():
    # n = 1000, κ̂ = 20: κ = 20.31, ν = 89.5, match band 0.546–1.640 (with 2 % slack):
    # ratio 1.4 (xavier, lecun) and 0.7 (he) are consistent, 4.2 (torch_default) is not.
    # With κ̂ = 0 the band is 0.823–1.199 and none is.
    assert matches(stats(1000, var=1.4, kurtosis=20.0), ONE) == ("xavier", "he_fan_in", "he_fan_out", "lecun")
    assert matches(stats(1000, var=1.4, kurtosis=0.0), ONE) == ("other",)


def test_two_values_are_consistent_with_every_rule():
    # n = 2, κ̂ = -2: κ = -2 + 2√12 = 4.93, ν = 0.22: the lower quantile is 0, the upper 18
    assert matches(stats_of(np.array([-1.0, 1.0])), ONE) == ("xavier", "he_fan_in", "he_fan_out", "lecun",
                                                             "torch_default")


@pytest.mark.parametrize("values", [[0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.5]])
def test_constant_values_match_no_rule(values):
    # a constant has no variance to compare; with n = 2 even a ratio of 0 would be within noise
    assert matches(stats_of(np.array(values)), ONE) == ("other",)


def test_matches_of_zero_and_of_nothing():
    assert matches(stats(5, 0.0, 0.0, 0.0, 0.0, None, zeros=5), ONE) == ("zero",)
    assert matches(EMPTY, ONE) == ("other",)
    assert matches(TensorStats(0, NAN, NAN, NAN, NAN, None, 4, 0), ONE) == ("other",)


# --- distribution --------------------------------------------------------------------------------------------------

N = 10_000  # kurtosis tolerance 4√(24/n) = 0.196; edge limits √3·(1 + 2.5√(0.8/n)) = 1.7708 (uniform),
#             2.27367·(1 + 2.5√(1.4/n)) = 2.3409 (truncated normal)


def family(edge: float, kurt: float, n: int = N, side: str = "max") -> str:
    """The family of values with mean 0.5, σ 2 and the farthest value ``edge`` σ from the mean."""
    mean, std = 0.5, 2.0
    far, near = mean + edge * std, mean - std
    lo, hi = (near, far) if side == "max" else (2 * mean - far, 2 * mean - near)
    return distribution(stats(n, mean, std * std, lo, hi, kurt))


@pytest.mark.parametrize("side", ["max", "min"])
@pytest.mark.parametrize("edge,kurt,name", [
    (1.75, -1.2, "uniform"),
    (1.75, -1.2 + 0.19, "uniform"),         # within the kurtosis tolerance 0.196
    (1.75, -1.2 - 0.19, "uniform"),
    (1.75, -1.2 + 0.198, "other"),          # just beyond it
    (1.78, -1.2, "other"),                  # edge beyond 1.7708
    (2.0, -1.2, "other"),
    (3.0, -1.2, "other"),                   # far edge, uniform kurtosis: neither law
    (1.0, -1.2, "uniform"),
    (2.3, -0.634, "truncated_normal"),
    (2.3, -0.634 + 0.19, "truncated_normal"),
    (2.3, -0.634 + 0.2, "other"),
    (2.35, -0.634, "other"),                # edge beyond 2.3409
    (2.5, -0.634, "other"),
    (1.75, -0.634, "truncated_normal"),     # above √3 and below 2.3409
    (2.35, 0.0, "normal"),                  # edge beyond 2.3409, kurtosis 0
    (3.0, 0.0, "normal"),
    (3.0, 0.19, "normal"),
    (3.0, -0.19, "normal"),
    (3.0, 0.2, "other"),
    (2.3, 0.0, "other"),                    # normal kurtosis, but an edge no normal sample of 10⁴ has
])
def test_distribution_by_hand(edge, kurt, name, side):
    assert family(edge, kurt, side=side) == name


def test_distribution_edge_exactly_at_the_uniform_limit():
    # edge exactly √3 is the uniform law's own edge, not beyond it: never truncated_normal
    assert distribution(stats(N, 0.0, 1.0, -1.0, math.sqrt(3.0), -0.634)) == "other"


def test_distribution_needs_64_values_and_a_kurtosis():
    # n = 64: tolerance 4√(24/64) = 2.45, uniform edge limit √3·(1 + 2.5√(0.8/64)) = 2.216
    assert distribution(stats(64, 0.0, 1.0, -1.6, 1.6, -1.2)) == "uniform"
    assert distribution(stats(63, 0.0, 1.0, -1.6, 1.6, -1.2)) == "other"
    assert distribution(stats(10, 0.0, 1.0, -1.5, 1.5, -1.2)) == "other"
    assert distribution(stats(1000, 0.0, 1.0, -1.5, 1.5, None)) == "other"
    assert distribution(stats(1000, 0.5, 0.0, 0.5, 0.5, None)) == "constant"
    assert distribution(EMPTY) == "other"


# --- verdict (IA101 / IA102) ---------------------------------------------------------------------------------------

FANS = Fans(300, 100)  # Xavier target 2/400 = 0.005
T = 0.005


@pytest.mark.parametrize("ratio,code,message", [
    (0.4, "IA101", "variance 0.4× the xavier target, below the fail band 0.50–2.00 for n=200000"),
    (0.7, "IA102", "variance 0.7× the xavier target, below the ok band 0.80–1.25 for n=200000"),
    (1.5, "IA102", "variance 1.5× the xavier target, above the ok band 0.80–1.25 for n=200000"),
    (2.5, "IA101", "variance 2.5× the xavier target, above the fail band 0.50–2.00 for n=200000"),
])
def test_verdict_messages(ratio, code, message):
    result = verdict(stats(200_000, var=ratio * T, lo=-1.0, hi=1.0), FANS, "xavier")
    assert result.status_findings == (Finding(code, "fail" if code == "IA101" else "warn", message),)
    assert result.target_var == pytest.approx(T, rel=1e-15)
    assert result.ratio == pytest.approx(ratio, rel=1e-12)


def test_verdict_carries_matches_and_family():
    # uniform of variance 1 (edge √3), n = 10⁴, against Fans(1, 1)
    result = verdict(stats(N, 0.0, 1.0, -math.sqrt(3.0), math.sqrt(3.0), -1.2), ONE, "xavier")
    assert result.status_findings == ()
    assert result.ratio == pytest.approx(1.0, rel=1e-15)
    assert result.matches == ("xavier", "lecun") and result.distribution == "uniform"


def test_verdict_scale_and_gain():
    # variance 0.25 stored, scale 2: effective 1.0; He with gain 1 asks 1/fan_in = 1
    result = verdict(stats(N, var=0.25), ONE, "he", gain=1.0, scale=2.0)
    assert result.target_var == 1.0 and result.ratio == pytest.approx(1.0, rel=1e-15)
    assert result.status_findings == () and result.matches == ("xavier", "lecun")


def test_verdict_bands_use_the_kurtosis_and_the_profile():
    # n = 1000, κ̂ = 20: ok band widened to 0.653–1.430; with κ̂ = 0 it stays 0.80–1.25
    assert verdict(stats(1000, var=1.35 * T, kurtosis=20.0), FANS, "xavier").status_findings == ()
    assert [f.code for f in verdict(stats(1000, var=1.35 * T), FANS, "xavier").status_findings] == ["IA102"]
    # trained profile: ok band 1/3–3
    assert verdict(stats(10**6, var=2.5 * T), FANS, "xavier", profile="trained").status_findings == ()


@pytest.mark.parametrize("case,ratio", [
    (EMPTY, None),
    (stats(5, 0.0, 0.0, 0.0, 0.0, None, zeros=5), None),                   # all zero: no ratio
    (stats(5, 0.0, 0.0, 0.0, 0.0, None, nonfinite=1, zeros=5), 0.0),       # zeros and a NaN: ratio 0
    (stats(1, 0.3, 0.0, 0.3, 0.3, None), 0.0),                             # one value: variance 0
    (stats(10, 0.3, 0.0, 0.3, 0.3, None), 0.0),                            # constant: IA203's, not IA101's
])
def test_no_variance_finding_without_variance(case, ratio):
    result = verdict(case, FANS, "xavier")
    assert result.ratio == ratio and result.status_findings == ()
