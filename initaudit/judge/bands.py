"""How far an observed variance may stray from a target by sampling noise alone.

A layer of n weights drawn i.i.d. with variance σ² and excess kurtosis κ gives a
sample variance whose relative standard error is about sqrt((2 + κ)/n).  For a
normal law the sample variance is σ²·χ²(n-1)/n, a skewed law for small n; we use
that law with ν = 2(n-1)/(2+κ) effective degrees of freedom (a moment match that
covers the other families) and its Wilson–Hilferty quantiles:

    q(z) = (n-1)/n · (1 - 2/(9ν) + z·sqrt(2/(9ν)))³

The bands a ratio var/target is held to are the profile's fixed bands, widened to
q(-z)..q(+z) where noise alone could reach further.  κ itself is estimated from
the same small sample and biased low, so the band uses an upper confidence value
κ̂ + 2·sqrt(24/n), never below the uniform law's -1.2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Profile = Literal["init", "trained"]
PROFILES: tuple[str, ...] = ("init", "trained")

#: z for the fail band: a correct layer fails with probability ≈ 2·Φ(-3.5) ≈ 0.05 %.
Z_FAIL = 3.5
#: z for the ok band: a correct layer is at worst "warn" about 1 % of the time.
Z_OK = 2.6
#: z for `matches`: a layer is consistent with a scheme if the ratio to it is within noise.
Z_MATCH = 3.5
#: Relative slack for `matches` beyond noise (float32 rounding of bounds, etc.).
MATCH_SLACK = 0.02

#: Cap on the kurtosis used for bands: beyond it the sample variance says nothing at any n we meet.
HEAVIEST = 1e6

FIXED_BANDS: dict[str, tuple[float, float, float, float]] = {
    # profile: (ok_lo, ok_hi, fail_lo, fail_hi)
    "init": (0.8, 1.25, 0.5, 2.0),
    "trained": (1 / 3, 3.0, 0.1, 10.0),
}


@dataclass(frozen=True)
class Bands:
    ok_lo: float
    ok_hi: float
    fail_lo: float
    fail_hi: float

    def status(self, ratio: float) -> str:
        if not (self.fail_lo <= ratio <= self.fail_hi):
            return "fail"
        if not (self.ok_lo <= ratio <= self.ok_hi):
            return "warn"
        return "ok"


def band_kurtosis(n: int, excess_kurtosis: float | None) -> float:
    """A conservative kurtosis for the noise band (upper confidence value, ≥ -1.2)."""
    estimate = 0.0 if excess_kurtosis is None else excess_kurtosis
    if not math.isfinite(estimate):  # moments overflowed: nothing is known of the tails
        return HEAVIEST
    return min(HEAVIEST, max(-1.2, estimate + 2.0 * math.sqrt(24.0 / max(n, 1))))


def noise_quantile(n: int, kurtosis: float, z: float) -> float:
    """Quantile ``z`` of (sample variance / true variance) for n draws of kurtosis κ."""
    if n < 2:
        return 0.0 if z < 0 else math.inf
    nu = 2.0 * (n - 1) / (2.0 + max(kurtosis, -1.9))
    c = 2.0 / (9.0 * nu)
    base = 1.0 - c + z * math.sqrt(c)
    return (n - 1) / n * max(base, 0.0) ** 3


def bands_for(n: int, excess_kurtosis: float | None, profile: str = "init") -> Bands:
    ok_lo, ok_hi, fail_lo, fail_hi = FIXED_BANDS[profile]
    k = band_kurtosis(n, excess_kurtosis)
    return Bands(
        ok_lo=min(ok_lo, noise_quantile(n, k, -Z_OK)),
        ok_hi=max(ok_hi, noise_quantile(n, k, Z_OK)),
        fail_lo=min(fail_lo, noise_quantile(n, k, -Z_FAIL)),
        fail_hi=max(fail_hi, noise_quantile(n, k, Z_FAIL)),
    )


def consistent(ratio: float, n: int, excess_kurtosis: float | None) -> bool:
    """Could a layer whose true variance is the reference show this ratio by noise?"""
    k = band_kurtosis(n, excess_kurtosis)
    lo = noise_quantile(n, k, -Z_MATCH) * (1 - MATCH_SLACK)
    hi = noise_quantile(n, k, Z_MATCH) * (1 + MATCH_SLACK)
    return lo <= ratio <= hi
