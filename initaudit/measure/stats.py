"""Streaming statistics of a weight tensor: one pass, float64 accumulation, no I/O.

Moments are accumulated around a fixed shift (the mean of the first chunk, when
it is far from zero), so that the variance of data whose mean is far from zero
does not cancel away: ``var = E[(x-s)^2] - E[x-s]^2`` loses nothing when ``s``
is close to the mean.  Sums for the mean and variance are float64 throughout
(exact to ~1e-12 relative); the third and fourth powers, which only feed the
kurtosis, are summed in float32 within each chunk and in float64 across chunks (all four in
float64 when the optional compiled kernel, ``accel``, takes the chunk in one pass).
Partial results (other chunks, other processes) combine exactly with the
pairwise update formulas of Pébay (2008).  Non-finite values are counted and
left out of the moments.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from initaudit.measure import accel


@dataclass(frozen=True)
class TensorStats:
    count: int            # finite values the moments are computed over
    mean: float
    var: float            # population variance (ddof=0), as numpy's var
    min: float
    max: float
    excess_kurtosis: float | None  # None when undefined (constant tensor)
    nonfinite: int
    zeros: int

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @property
    def total(self) -> int:
        return self.count + self.nonfinite


@dataclass(frozen=True)
class Moments:
    """Count, mean and central moment sums M2, M3, M4 of finite values, plus counts and range."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    nonfinite: int = 0
    zeros: int = 0

    def merge(self, other: Moments) -> Moments:
        a, b = self, other
        n = a.n + b.n
        lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
        nonfinite, zeros = a.nonfinite + b.nonfinite, a.zeros + b.zeros
        if a.n == 0 or b.n == 0:
            src = b if a.n == 0 else a
            return Moments(src.n, src.mean, src.m2, src.m3, src.m4, lo, hi, nonfinite, zeros)
        delta = b.mean - a.mean
        na, nb = a.n, b.n
        m2 = a.m2 + b.m2 + delta * delta * na * nb / n
        m3 = (a.m3 + b.m3 + delta**3 * na * nb * (na - nb) / n**2
              + 3 * delta * (na * b.m2 - nb * a.m2) / n)
        m4 = (a.m4 + b.m4 + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
              + 6 * delta**2 * (na * na * b.m2 + nb * nb * a.m2) / n**2
              + 4 * delta * (na * b.m3 - nb * a.m3) / n)
        return Moments(n, a.mean + delta * nb / n, m2, m3, m4, lo, hi, nonfinite, zeros)

    def stats(self) -> TensorStats:
        n = self.n
        if n == 0:
            nan = math.nan
            return TensorStats(0, nan, nan, nan, nan, None, self.nonfinite, self.zeros)
        constant = self.lo == self.hi
        var = 0.0 if constant else max(self.m2 / n, 0.0)
        kurtosis = None if var == 0 else (self.m4 / n) / (var * var) - 3.0
        return TensorStats(n, self.mean, var, self.lo, self.hi, kurtosis, self.nonfinite, self.zeros)


#: Scratch arrays shared by every accumulator of the process (``add`` keeps nothing in them between
#: calls): a layer's first chunk does not pay for allocating and filling them again.
_SCRATCH: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class MomentAccumulator:
    """Sums of powers of (x - shift) over chunks; ``moments()`` turns them into central moments."""

    shift: float | None = None
    count: int = 0
    s1: float = 0.0
    s2: float = 0.0
    s3: float = 0.0
    s4: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    nonfinite: int = 0
    zeros: int = 0

    def add(self, chunk: np.ndarray) -> None:
        x = np.ravel(chunk)
        if x.size == 0 or self.add_compiled(x):
            return
        lo, hi = x.min(), x.max()
        # min/max propagate NaN and show Inf: a finite pair means a finite chunk.
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = np.isfinite(x)
            kept = int(np.count_nonzero(finite))
            self.nonfinite += x.size - kept
            if kept == 0:
                return
            x = x[finite]
            if self.add_compiled(x):
                return
            lo, hi = x.min(), x.max()
        d, low, low2, ones = self._scratch(x.size)
        np.copyto(d, x, casting="unsafe")  # the one pass that converts to float64
        self.zeros += int(np.count_nonzero(x == 0))
        self.lo = min(self.lo, float(lo))
        self.hi = max(self.hi, float(hi))
        if self.shift is None:
            self.shift = _shift(d, ones)
        if self.shift:
            d -= self.shift
        # mean and variance: float64 BLAS dot products, one pass each
        self.count += x.size
        self.s1 += float(np.dot(d, ones))
        self.s2 += float(np.dot(d, d))
        # third and fourth powers only feed the kurtosis: summed in float32 within the chunk
        # (relative error ~1e-6), which halves the memory traffic of the pass
        if x.dtype == np.float32 and not self.shift:
            low = x
        else:
            np.copyto(low, d, casting="same_kind")
        np.multiply(low, low, out=low2)
        self.s3 += float(np.dot(low2, low))
        self.s4 += float(np.dot(low2, low2))

    def add_compiled(self, x: np.ndarray, kind: str | None = None) -> bool:
        """``add`` through the compiled one-pass kernel (``accel``); False when it is not ready,
        does not read this type (``kind``: see ``accel.power_sums``) or the chunk is not finite."""
        return self.add_power_sums(x.size, lambda shift: accel.power_sums(x, shift, kind))

    def add_power_sums(self, n: int, sums_about: Callable[[float], accel.PowerSums | None]) -> bool:
        """Add ``n`` values given by their power sums about a shift (``sums_about(shift)``, None when
        they cannot be had); False, adding nothing, in that case."""
        sums = sums_about(self.shift or 0.0)
        if sums is None:
            return False
        if self.shift is None:  # as ``_shift``: the first chunk's mean when it is far from zero
            mean, second = sums.s1 / n, sums.s2 / n
            self.shift = 0.0 if mean * mean <= second - mean * mean else mean
            if self.shift:
                sums = sums_about(self.shift)
                assert sums is not None  # the same values
        self.count += n
        self.s1 += sums.s1
        self.s2 += sums.s2
        self.s3 += sums.s3
        self.s4 += sums.s4
        self.lo = min(self.lo, sums.lo)
        self.hi = max(self.hi, sums.hi)
        self.zeros += sums.zeros
        return True

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        global _SCRATCH
        if _SCRATCH is None or _SCRATCH[0].size < n:
            _SCRATCH = (np.empty(n, np.float64), np.empty(n, np.float32), np.empty(n, np.float32),
                        np.ones(n, np.float64))
        d, low, low2, ones = _SCRATCH
        return d[:n], low[:n], low2[:n], ones[:n]

    def moments(self) -> Moments:
        n = self.count
        if n == 0:
            return Moments(nonfinite=self.nonfinite, zeros=self.zeros)
        m1 = self.s1 / n
        m2 = self.s2 - n * m1 * m1
        m3 = self.s3 - 3 * m1 * self.s2 + 2 * n * m1**3
        m4 = self.s4 - 4 * m1 * self.s3 + 6 * m1 * m1 * self.s2 - 3 * n * m1**4
        return Moments(n, (self.shift or 0.0) + m1, m2, m3, m4, self.lo, self.hi, self.nonfinite, self.zeros)

    def result(self) -> TensorStats:
        return self.moments().stats()


def _shift(first: np.ndarray, ones: np.ndarray) -> float:
    """The first chunk's mean, or 0 when that is already within one std of zero.

    A shift only matters when |mean| ≫ std (``E[x²] - mean²`` then cancels);
    weights are centred on zero, and skipping the subtraction saves a pass.
    """
    n = first.size
    mean = float(np.dot(first, ones[:n])) / n
    second = float(np.dot(first, first)) / n
    return 0.0 if mean * mean <= second - mean * mean else mean


def stats_of(values: np.ndarray) -> TensorStats:
    """Statistics of an in-memory array (tests and small tensors)."""
    acc = MomentAccumulator()
    acc.add(values)
    return acc.result()
