"""Histograms of flagged layers' values, for the HTML report's picture against the target.

A second streaming pass, run only when a report that draws them is asked for and
only over flagged layers: fixed bins over a range chosen from the statistics
already measured, so memory is the bins plus one chunk whatever the tensor's size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from initaudit.measure.streaming import chunk_size, task_values
from initaudit.trace.plan import MeasureTask

BINS = 60


@dataclass(frozen=True)
class Histogram:
    lo: float
    hi: float
    counts: tuple[int, ...]     # equal-width bins over [lo, hi]
    below: int = 0              # finite values under lo / over hi (outside the drawn range)
    above: int = 0

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / len(self.counts)


def value_range(vmin: float, vmax: float, std: float, target_std: float | None) -> tuple[float, float]:
    """Symmetric around zero, wide enough for the target's ±4σ and the data's ±4σ, no wider than the data needs."""
    reach = 4.0 * max(std, target_std or 0.0)
    extent = max(abs(vmin), abs(vmax))
    half = max(min(extent, reach), (target_std or 0.0) * 4.0) or 1.0
    return -half, half


def histogram(task: MeasureTask, lo: float, hi: float, scale: float = 1.0, bins: int = BINS) -> Histogram:
    counts = np.zeros(bins, dtype=np.int64)
    below = above = 0
    with np.errstate(all="ignore"):
        for _, chunk in task_values(task, chunk_size(task)):
            values = chunk.astype(np.float64, copy=False) * scale
            values = values[np.isfinite(values)]
            below += int(np.count_nonzero(values < lo))
            above += int(np.count_nonzero(values > hi))
            counts += np.histogram(values, bins=bins, range=(lo, hi))[0]
    return Histogram(lo, hi, tuple(int(c) for c in counts), below, above)


def layer_histogram(task: MeasureTask, stats_min: float, stats_max: float, std: float,
                    target_var: float | None, scale: float) -> Histogram | None:
    if not (math.isfinite(stats_min) and math.isfinite(stats_max)):
        return None
    target_std = math.sqrt(target_var) if target_var else None
    lo, hi = value_range(stats_min * scale, stats_max * scale, std * abs(scale), target_std)
    return histogram(task, lo, hi, scale)
