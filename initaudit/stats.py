"""Streaming statistics of a weight tensor: one pass, float64 accumulation, no I/O.

Moments are accumulated around a fixed shift (the mean of the first chunk), so
that the variance of data whose mean is far from zero does not cancel away:
``var = E[(x-s)^2] - E[x-s]^2`` loses nothing when ``s`` is close to the mean.
Non-finite values are counted and left out of the moments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


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


@dataclass
class MomentAccumulator:
    """Sums of powers of (x - shift); ``add`` chunks in any order, then ``result``."""

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
    _buffers: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def add(self, chunk: np.ndarray) -> None:
        x = np.ravel(chunk)
        if x.size == 0:
            return
        self.zeros += x.size - int(np.count_nonzero(x))
        lo, hi = x.min(), x.max()
        # min/max propagate NaN and show Inf: a finite pair means a finite chunk.
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = np.isfinite(x)
            kept = int(np.count_nonzero(finite))
            self.nonfinite += x.size - kept
            if kept == 0:
                return
            x = x[finite]
            lo, hi = x.min(), x.max()
        self.lo = min(self.lo, float(lo))
        self.hi = max(self.hi, float(hi))
        if self.shift is None:
            self.shift = float(np.mean(x, dtype=np.float64))
        d, d2 = self._scratch(x.size)
        np.subtract(x, self.shift, out=d, dtype=np.float64, casting="unsafe")
        np.multiply(d, d, out=d2)
        self.count += x.size
        self.s1 += float(d.sum())
        self.s2 += float(d2.sum())
        self.s3 += float(np.dot(d2, d))
        self.s4 += float(np.dot(d2, d2))

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._buffers is None or self._buffers[0].size < n:
            self._buffers = (np.empty(n, np.float64), np.empty(n, np.float64))
        d, d2 = self._buffers
        return d[:n], d2[:n]

    def result(self) -> TensorStats:
        n = self.count
        if n == 0:
            nan = math.nan
            return TensorStats(0, nan, nan, nan, nan, None, self.nonfinite, self.zeros)
        m1 = self.s1 / n
        e2, e3, e4 = self.s2 / n, self.s3 / n, self.s4 / n
        var = max(e2 - m1 * m1, 0.0)
        m4 = e4 - 4 * m1 * e3 + 6 * m1 * m1 * e2 - 3 * m1**4
        kurtosis = None if var == 0 or self.lo == self.hi else m4 / (var * var) - 3.0
        return TensorStats(
            count=n,
            mean=self.shift + m1,
            var=0.0 if self.lo == self.hi else var,
            min=self.lo,
            max=self.hi,
            excess_kurtosis=kurtosis,
            nonfinite=self.nonfinite,
            zeros=self.zeros,
        )


def stats_of(values: np.ndarray) -> TensorStats:
    """Statistics of an in-memory array (tests and small tensors)."""
    acc = MomentAccumulator()
    acc.add(values)
    return acc.result()
