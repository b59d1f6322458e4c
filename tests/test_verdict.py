"""The verdict on one weight (``initaudit/judge/verdict.py``): the pathologies IA2xx, the variance findings
IA101 / IA102, the schemes a variance matches, the distribution family and orthogonality.

Most statistics are built by hand (``TensorStats(...)``) so that every input is exact; expected values
are worked by hand from the rule table of the README ("Rule codes") and the formulas of "How a verdict
is reached": ν = 2(n-1)/(2+κ), q(z) = (n-1)/n·(1 - c + z√c)³ with c = 2/(9ν), κ = κ̂ + 2√(24/n). The
others are numpy draws whose variance is set exactly (statistics checked against numpy in float64), and a
few models audited end to end, where a rule's finding is what a user reads.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit
from initaudit.findings import Finding
from initaudit.judge.verdict import distribution, effective_var, matches, orthogonal_gain, pathologies, verdict
from initaudit.measure.stats import TensorStats, stats_of
from initaudit.trace.fans import Fans

NAN = math.nan


def stats(count, mean=0.0, var=1.0, lo=-1.0, hi=1.0, kurtosis=0.0, nonfinite=0, zeros=0) -> TensorStats:
    return TensorStats(count, mean, var, lo, hi, kurtosis, nonfinite, zeros)


EMPTY = TensorStats(0, NAN, NAN, NAN, NAN, None, 0, 0)


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
    shifted = stats(10**6, 0.3, 1.0)  # 0.3 σ: beyond 0.1 σ (init, the default)
    assert [f.code for f in pathologies(shifted)] == ["IA204"]
    assert [f.code for f in pathologies(shifted, "init")] == ["IA204"]
    # a trained layer's mean is judged by the trained review (judge.review.shift_finding), which knows its units
    for mean in (0.3, 0.6, 5.0):
        assert pathologies(stats(10**6, mean, 1.0), "trained") == []


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


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_ia201_a_single_non_finite_value_fails(tmp_path, bad):
    w = xavier_matrix(40, 10)
    w[3, 7] = bad  # one value of 400: far from a majority
    layer = only_layer(tmp_path, matmul_model(w))
    (finding,) = [f for f in layer.findings if f.code == "IA201"]
    assert finding.severity == "fail" and "1 of 400" in finding.message
    assert layer.status == "fail"
    finite = np.delete(w.ravel(), 3 * 10 + 7).astype(np.float64)
    assert layer.stats.count == 399 and layer.stats.var == pytest.approx(finite.var(), rel=1e-9)


def test_ia201_counts_every_non_finite_value():
    values = np.array([np.nan, np.inf, 1.0, 2.0, -np.inf, 3.0])
    (finding,) = pathologies(stats_of(values))
    assert finding.code == "IA201" and finding.message.startswith("3 of 6 ")


def test_ia203_constant_weights_fail(tmp_path):
    layer = only_layer(tmp_path, matmul_model(np.full((20, 10), 0.05, np.float32)))
    assert "IA203" in codes(layer) and "IA202" not in codes(layer)
    (finding,) = [f for f in layer.findings if f.code == "IA203"]
    assert finding.severity == "fail" and layer.status == "fail"
    assert "200" in finding.message


def test_ia202_rather_than_ia203_for_all_zero():
    assert [f.code for f in pathologies(stats_of(np.zeros(50)))] == ["IA202"]


@pytest.mark.parametrize("zero_fraction,flagged", [(0.6, True), (0.5, True), (0.4, False), (0.0, False)])
def test_ia205_mostly_zero(tmp_path, zero_fraction, flagged):
    w = RNG.normal(0, math.sqrt(2 / 80), (50, 30)).astype(np.float32)
    flat = w.ravel()
    flat[: int(zero_fraction * flat.size)] = 0.0
    layer = only_layer(tmp_path, matmul_model(flat.reshape(50, 30)))
    found = [f for f in layer.findings if f.code == "IA205"]
    assert bool(found) == flagged
    if flagged:
        assert found[0].severity == "warn"
        assert found[0].message.startswith(f"{int(zero_fraction * 1500)} of 1500 values")


@pytest.mark.parametrize("profile,shift,flagged", [
    ("init", 0.15, True),     # limit 0.1 σ
    ("init", 0.06, False),
    ("trained", 0.3, False),  # the trained review's, not the pathologies'
    ("trained", 4.0, False),
])
def test_ia204_mean_shift_limit(profile, shift, flagged):
    n = 40_000  # the noise floor 5/√n = 0.025 σ is below every shift tried
    values = np.random.default_rng(5).standard_normal(n)
    values = (values - values.mean()) / values.std() + shift  # mean exactly `shift` σ
    found = [f for f in pathologies(stats_of(values), profile) if f.code == "IA204"]
    assert bool(found) == flagged
    if flagged:
        assert found[0].severity == "warn" and f"{shift:.2f} σ" in found[0].message


def test_ia204_is_not_raised_within_sampling_noise():
    values = np.random.default_rng(6).standard_normal(100)
    values = (values - values.mean()) / values.std() + 0.3  # 0.3 σ < 5/√100 = 0.5 σ: noise could do it
    assert [f.code for f in pathologies(stats_of(values))] == []


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


@pytest.mark.parametrize("family,draw", [
    ("uniform", lambda r, n: r.uniform(-1, 1, n)),
    ("normal", lambda r, n: r.normal(0, 1, n)),
    ("truncated_normal", lambda r, n: _truncated(r, n)),
])
@pytest.mark.parametrize("n", [2_000, 50_000])
def test_distribution_family(family, draw, n):
    rng = np.random.default_rng(n)
    found = [distribution(stats_of(draw(rng, n))) for _ in range(20)]
    assert found.count(family) >= 19


def _truncated(rng, n):
    out = rng.normal(0, 1, 2 * n)
    out = out[np.abs(out) <= 2]
    return out[:n]


def test_constant_distribution():
    assert distribution(stats_of(np.full(100, 0.3))) == "constant"


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


@pytest.mark.parametrize("ratio,code,direction", [
    (0.40, "IA101", "below"), (0.70, "IA102", "below"), (1.00, None, None), (1.50, "IA102", "above"),
    (2.50, "IA101", "above"),
])
def test_variance_findings_at_each_band(ratio, code, direction):
    fans = Fans(300, 100)  # Xavier target 2/400 = 0.005
    values = np.random.default_rng(8).standard_normal(200_000)
    values = (values - values.mean()) / values.std() * math.sqrt(ratio * 0.005)  # variance exactly ratio × target
    result = verdict(stats_of(values), fans, "xavier")
    assert result.target_var == pytest.approx(0.005, rel=1e-12)
    assert result.ratio == pytest.approx(ratio, rel=1e-9)
    found = [(f.code, f.severity) for f in result.status_findings]
    if code is None:
        assert found == []
    else:
        assert found == [(code, "fail" if code == "IA101" else "warn")]
        assert direction in result.status_findings[0].message


# --- orthogonal_gain -----------------------------------------------------------------------------------------------


def test_orthogonal_gain_of_a_two_row_matrix():
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(5, 2)))  # 5×2, orthonormal columns
    assert orthogonal_gain(1.5 * q.T) == pytest.approx(1.5, rel=1e-9)  # 2×5: two orthogonal rows of norm 1.5
    assert orthogonal_gain(1.5 * q) == pytest.approx(1.5, rel=1e-9)
    assert orthogonal_gain(np.ones((1, 5))) is None  # a single row is trivially "orthogonal": not counted


def test_orthogonal_gain_tolerance_is_relative_to_the_size():
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    noise = rng.normal(size=(16, 16))
    for eps, detected in ((1e-5, True), (4e-5, True), (4e-3, False)):
        m = q + eps * noise
        gram = m @ m.T
        error = np.linalg.norm(gram / np.mean(np.diag(gram)) - np.eye(16)) / 4.0  # ‖G/s − I‖_F / √n
        assert (error < 1e-3) == detected, error  # the cases straddle the 1e-3 tolerance as intended
        assert (orthogonal_gain(m) is not None) == detected, eps


def test_orthogonal_gain_needs_equal_norms_and_right_angles():
    """Orthogonal rows of unequal norms fail on the diagonal; equal norms at other angles fail off it."""
    rng = np.random.default_rng(12)
    q, _ = np.linalg.qr(rng.normal(size=(32, 8)))  # 32×8, orthonormal columns
    assert orthogonal_gain(q.T * 0.7) == pytest.approx(0.7, rel=1e-9)
    unequal = q.T * np.linspace(0.9, 1.1, 8)[:, None]  # still at right angles, norms 0.9…1.1
    assert orthogonal_gain(unequal) is None
    skewed = q.T.copy()
    skewed[1] = (q.T[0] + q.T[1]) / np.sqrt(2)  # norm 1, at 45° to row 0
    assert np.allclose(np.linalg.norm(skewed, axis=1), 1.0)
    assert orthogonal_gain(skewed) is None
    assert orthogonal_gain(np.zeros((4, 6))) is None


def test_orthogonal_detection():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(128, 64)))
    assert orthogonal_gain(q.T * 1.5) == pytest.approx(1.5)
    assert orthogonal_gain(q) == pytest.approx(1.0)
    assert orthogonal_gain(rng.normal(0, 0.1, (64, 128))) is None


def test_orthogonal_in_matches_from_a_model(tmp_path):
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(64, 64)))
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", q.astype(np.float32))])
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert "orthogonal" in layer.matches


def test_trained_profile_is_wide_but_keeps_pathologies():
    rng = np.random.default_rng(6)
    w = rng.normal(0, math.sqrt(2.5 * 2 / 400), 20_000)
    assert verdict(stats_of(w), Fans(200, 200), "xavier").status_findings[0].severity == "fail"
    assert verdict(stats_of(w), Fans(200, 200), "xavier", profile="trained").status_findings == ()
    shifted = rng.normal(0.5, 0.5, 10_000)
    assert [f.code for f in pathologies(stats_of(shifted))] == ["IA204"]
    assert pathologies(stats_of(shifted), "trained") == []   # the trained review judges a trained mean
    big = np.concatenate([rng.normal(0, 1, 1000), [1e5]])
    assert [f.code for f in pathologies(stats_of(big), "trained", fp16=True)] == ["IA206"]
    assert pathologies(stats_of(big), "trained", fp16=False) == []
