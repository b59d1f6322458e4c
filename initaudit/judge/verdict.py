"""Verdicts: a layer's statistics against its target, and the findings they raise.

Pure functions of statistics and fans; no graph, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from initaudit.findings import Finding, finding
from initaudit.judge.bands import bands_for, consistent
from initaudit.judge.schemes import SCHEMES, target_variance
from initaudit.measure.stats import TensorStats
from initaudit.trace.fans import Fans

FLOAT16_MAX = 65504.0
UNIFORM_EDGE = math.sqrt(3.0)              # max|w| / σ of U(-a, a)
TRUNCATED_EDGE = 2.0 / 0.87962566103423978  # max|w| / σ of a normal cut at ±2σ (reference §7.4)
TRUNCATED_KURTOSIS = -0.634463
MIN_COUNT_FOR_FAMILY = 64
#: IA204 in the init profile: every init scheme draws around zero, so a mean beyond 0.1 σ (and beyond
#: sampling noise, ``SHIFT_NOISE_Z``/√n σ) is a wrong draw.  A trained layer's mean is the trained
#: review's (``judge.review.shift_finding``): healthy classifier heads and upsamplers lean up to 0.95 σ.
SHIFT_INIT = 0.1
SHIFT_NOISE_Z = 5.0


@dataclass(frozen=True)
class Verdict:
    target_var: float
    ratio: float | None
    status_findings: tuple[Finding, ...]
    matches: tuple[str, ...]
    distribution: str


def effective_var(stats: TensorStats, scale: float = 1.0) -> float:
    return stats.var * scale * scale


def pathologies(stats: TensorStats, profile: str = "init", fp16: bool = False) -> list[Finding]:
    """IA2xx: what is wrong with the values whatever the target."""
    findings = []
    total = stats.total
    if stats.nonfinite:
        findings.append(finding("IA201", f"{stats.nonfinite} of {total} values are NaN or infinite"))
    if total and stats.zeros == total:
        findings.append(finding("IA202", f"all {total} values are zero"))
        return findings
    if stats.count and stats.var == 0:
        findings.append(finding("IA203", f"all {stats.count} finite values equal {stats.min:.6g}"))
        return findings
    if profile == "init" and stats.count > 1 and stats.var > 0:
        shift = abs(stats.mean) / math.sqrt(stats.var)
        if shift > SHIFT_INIT and shift > SHIFT_NOISE_Z / math.sqrt(stats.count):
            findings.append(finding("IA204", f"mean {stats.mean:.4g} is {shift:.2f} σ away from zero"))
    if total and 0.5 <= stats.zeros / total < 1.0:
        findings.append(finding("IA205", f"{stats.zeros} of {total} values ({stats.zeros / total:.0%}) are zero"))
    if fp16 and stats.count and max(abs(stats.min), abs(stats.max)) > FLOAT16_MAX:
        findings.append(finding("IA206",
                                f"max |w| = {max(abs(stats.min), abs(stats.max)):.4g} overflows float16"))
    return findings


def matches(stats: TensorStats, fans: Fans, scale: float = 1.0) -> tuple[str, ...]:
    """The schemes (``matches`` vocabulary) whose variance the observed one is consistent with."""
    if stats.total and stats.zeros == stats.total:
        return ("zero",)
    if stats.count < 2 or stats.var == 0:
        return ("other",)
    var = effective_var(stats, scale)
    found = tuple(
        scheme.name for scheme in SCHEMES
        if scheme.by_variance and consistent(var / scheme.variance(fans), stats.count, stats.excess_kurtosis)
    )
    return found or ("other",)


def distribution(stats: TensorStats) -> str:
    """The family the values look drawn from: uniform, normal, truncated_normal, constant, other.

    Two features (reference §7.4): the excess kurtosis (uniform -1.2, normal cut at
    ±2σ -0.634, normal 0) and the edge max|w - mean|/σ (uniform √3, cut normal
    2.274, normal growing like √(2 ln n)), each with a tolerance from n.
    """
    if stats.count and stats.var == 0:
        return "constant"
    if stats.count < MIN_COUNT_FOR_FAMILY or stats.excess_kurtosis is None:
        return "other"
    n, kurt = stats.count, stats.excess_kurtosis
    std = math.sqrt(stats.var)
    edge = max(stats.max - stats.mean, stats.mean - stats.min) / std
    kurt_tol = 4.0 * math.sqrt(24.0 / n)
    if edge <= UNIFORM_EDGE * (1 + 2.5 * math.sqrt(0.8 / n)) and abs(kurt + 1.2) <= kurt_tol:
        return "uniform"
    if (UNIFORM_EDGE < edge <= TRUNCATED_EDGE * (1 + 2.5 * math.sqrt(1.4 / n))
            and abs(kurt - TRUNCATED_KURTOSIS) <= kurt_tol):
        return "truncated_normal"
    if edge > TRUNCATED_EDGE * (1 + 2.5 * math.sqrt(1.4 / n)) and abs(kurt) <= kurt_tol:
        return "normal"
    return "other"


def verdict(stats: TensorStats, fans: Fans, target: str, gain: float | None = None,
            profile: str = "init", scale: float = 1.0) -> Verdict:
    """Ratio to the target and the IA1xx finding it earns."""
    target_var = target_variance(target, fans, gain)
    found: list[Finding] = []
    ratio = None
    if stats.count >= 1 and not (stats.total and stats.zeros == stats.total):
        ratio = effective_var(stats, scale) / target_var
        if stats.var > 0:
            bands = bands_for(stats.count, stats.excess_kurtosis, profile)
            status = bands.status(ratio)
            if status != "ok":
                band = (bands.fail_lo, bands.fail_hi) if status == "fail" else (bands.ok_lo, bands.ok_hi)
                direction = "above" if ratio > 1 else "below"
                found.append(finding(
                    "IA101" if status == "fail" else "IA102",
                    f"variance {ratio:.3g}× the {target} target, {direction} the "
                    f"{'fail' if status == 'fail' else 'ok'} band {band[0]:.2f}–{band[1]:.2f} for n={stats.count}"))
    return Verdict(target_var, ratio, tuple(found), matches(stats, fans, scale), distribution(stats))


def orthogonal_gain(matrix: np.ndarray, tolerance: float = 1e-3) -> float | None:
    """The gain g when the rows (or columns, whichever are fewer) are orthogonal with norm g.

    Checks the Gram matrix of the shorter side against g²·I (Saxe et al. 2013;
    torch's orthogonal_, Keras' Orthogonal): relative Frobenius error below ``tolerance``.
    """
    rows, cols = matrix.shape
    if min(rows, cols) < 2:
        return None
    short = matrix if rows <= cols else matrix.T
    # The Gram matrix's diagonal alone (the squared norms, O(n)) bounds the error from below:
    # most matrices fail there, before the O(n·k) product is formed.
    norms = np.einsum("ij,ij->i", short, short)
    scale = float(np.mean(norms))
    if scale <= 0:
        return None
    if np.linalg.norm(norms / scale - 1) / math.sqrt(norms.size) >= tolerance:
        return None
    gram = short @ short.T
    error = np.linalg.norm(gram / scale - np.eye(gram.shape[0])) / math.sqrt(gram.shape[0])
    return math.sqrt(scale) if error < tolerance else None
