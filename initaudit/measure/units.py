"""Per-output-unit sums of a weight tensor, streamed chunk by chunk (the trained-model review's pass).

An output unit is one output channel / row / column: the cell of a weight that feeds one
output of the op.  Which stored axes index it comes from the layout letters the tracer
produced for the stored tensor: every ``O`` axis (output units) and every ``B`` axis
(independent matrices: LSTM directions, batched MatMul), and, for a grouped
ConvTranspose ``W[C, M/g, k…]``, the group that the ``I`` axis falls in (unit = group ·
M/g + m).  Memory is one float64 per unit and one chunk of values, whatever the tensor's
size; no value is kept.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from initaudit.measure.streaming import task_values
from initaudit.read.tensors import CHUNK_ELEMS
from initaudit.trace.plan import Planned

#: float16: values below half the smallest subnormal (2^-24) round to zero.
FLOAT16_FLUSH = 2.0 ** -25
#: float16's smallest normal: below it values lose precision (subnormals).
FLOAT16_TINY = 2.0 ** -14
#: Tensors with more output units than this are not reviewed per unit (memory stays bounded).
MAX_UNITS = 1 << 22


@dataclass(frozen=True)
class UnitAxes:
    """How a flat C-order index maps to an output unit: unit = Σ ((i // stride) % dim // div) · mult."""

    shape: tuple[int, ...]
    terms: tuple[tuple[int, int, int, int], ...]   # (stride, dim, divisor, multiplier) per axis used
    units: int

    @property
    def block(self) -> int:
        """Runs of this many consecutive values share a unit (the innermost used axis's stride)."""
        return min((stride for stride, _, _, _ in self.terms), default=1)

    def unit_of(self, flat: np.ndarray) -> np.ndarray:
        unit = np.zeros(flat.shape, np.int64)
        for stride, dim, divisor, mult in self.terms:
            unit += ((flat // stride) % dim) // divisor * mult
        return unit


def unit_axes(shape: tuple[int, ...], layout: str, groups: int = 1, side: str = "out",
              per_group: str = "I") -> UnitAxes | None:
    """The unit map of a stored tensor of ``shape`` read with ``layout``; None when it has none.

    ``side="out"``: output units (``O`` and ``B`` axes); ``side="in"``: input units (``I`` and
    ``B`` axes).  With ``groups`` > 1, the axis of letter ``per_group`` (``Role.per_group``)
    counts the units of one group, so on that side the other letter's axis gives the group:
    a grouped ConvTranspose W[C, M/g, k…] has its output group on ``I``, a grouped Conv
    W[M, C/g, k…] its input group on ``O``.
    """
    mine, other = ("O", "I") if side == "out" else ("I", "O")
    other_grouped = per_group == mine
    if len(layout) != len(shape) or mine not in layout or math.prod(shape) == 0:
        return None
    strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    used: list[tuple[int, int, int]] = []   # (axis, divisor, size after division)
    for axis, letter in enumerate(layout):
        if letter == mine or letter == "B":
            used.append((axis, 1, shape[axis]))
        elif letter == other and other_grouped and groups > 1 and shape[axis] % groups == 0:
            used.append((axis, shape[axis] // groups, groups))   # which group the unit is in
    terms = []
    mult = 1
    for axis, divisor, size in reversed(used):
        terms.append((strides[axis], shape[axis], divisor, mult))
        mult *= size
    if mult > MAX_UNITS:
        return None
    return UnitAxes(tuple(shape), tuple(reversed(terms)), mult)


@dataclass(frozen=True)
class UnitSums:
    """What the unit pass found: per-unit sums of squares and the raw power sums of the whole tensor."""

    units: int
    per_unit: int                 # values per unit
    unit_sq: np.ndarray           # Σ w² of each output unit (non-finite values counted as 0)
    count: int                    # finite values
    power: tuple[float, float, float, float]   # Σ w², Σ w⁴, Σ w⁶, Σ w⁸ over finite values
    max_abs: float
    flushed: int                  # non-zero values float16 rounds to zero
    subnormal: int                # non-zero values float16 keeps only as subnormals (includes flushed)
    nonzero: int
    flushed_sq: float = 0.0       # Σ w² of the values float16 flushes to zero
    in_units: int = 0
    in_per_unit: int = 0
    in_sq: np.ndarray | None = None   # Σ w² of each input unit
    unit_sum: np.ndarray | None = None   # Σ w of each output unit (non-finite values counted as 0)


def unit_sums(chunks: Iterator[tuple[int, np.ndarray]], axes: UnitAxes | None, total: int,
              in_axes: UnitAxes | None = None) -> UnitSums:
    """Accumulate over ``(start, values)`` chunks of one tensor (values already dequantized)."""
    units = axes.units if axes is not None else 1
    sq = np.zeros(units, np.float64)
    unit_sum = np.zeros(units, np.float64)
    in_sq = np.zeros(in_axes.units, np.float64) if in_axes is not None else None
    max_abs = 0.0
    powers = [0.0, 0.0, 0.0, 0.0]
    count = flushed = subnormal = nonzero = 0
    flushed_sq = 0.0
    for start, values in chunks:
        x = np.asarray(values, np.float64).ravel()
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, 0.0)
        count += int(np.count_nonzero(finite))
        a = np.abs(x)
        if a.size:
            max_abs = max(max_abs, float(a.max()))
        x2 = x * x
        x4 = x2 * x2
        powers[0] += float(x2.sum())
        powers[1] += float(x4.sum())
        powers[2] += float(np.dot(x4, x2))
        powers[3] += float(np.dot(x4, x4))
        zero = int(np.count_nonzero(a == 0))
        nonzero += a.size - zero
        subnormal += int(np.count_nonzero(a < FLOAT16_TINY)) - zero
        lost = int(np.count_nonzero(a < FLOAT16_FLUSH)) - zero
        if lost:
            flushed += lost
            flushed_sq += float(x2[a < FLOAT16_FLUSH].sum())
        if axes is None:
            continue
        sq += _per_unit(x2, start, axes)
        unit_sum += _per_unit(x, start, axes)
        if in_axes is not None and in_sq is not None:
            in_sq += _per_unit(x2, start, in_axes)
    in_units = in_axes.units if in_axes is not None else 0
    return UnitSums(units, total // units if units else 0, sq, count, (powers[0], powers[1], powers[2], powers[3]),
                    max_abs, flushed, subnormal, nonzero, flushed_sq, in_units, total // in_units if in_units else 0, in_sq,
                    unit_sum)


def _per_unit(x2: np.ndarray, start: int, axes: UnitAxes) -> np.ndarray:
    """Σ of ``x2`` per unit for elements ``[start, start + len)``: whole runs of ``block`` values are
    summed first (one id per run), so that ids are computed per run, not per value."""
    block = axes.block
    stride, dim, divisor, mult = axes.terms[-1]
    if block == 1 and stride == 1 and divisor == 1 and mult == 1 and start % dim == 0 and x2.size % dim == 0:
        # the innermost axis is a unit axis (MatMul columns, input units of a Gemm or an LSTM): rows of
        # ``dim`` values add column-wise into units outer + 0 … outer + dim - 1
        rows = x2.reshape(-1, dim)
        outer = sum(((np.arange(start, start + x2.size, dim, dtype=np.int64) // st) % d) // dv * m
                    for st, d, dv, m in axes.terms[:-1]) if len(axes.terms) > 1 else np.zeros(len(rows), np.int64)
        assert isinstance(outer, np.ndarray)
        cuts = np.flatnonzero(np.diff(outer)) + 1
        starts = np.concatenate(([0], cuts))
        sums = np.add.reduceat(rows, starts, axis=0)
        out = np.zeros(axes.units, np.float64)
        np.add.at(out.reshape(-1, dim), outer[starts] // dim, sums)
        return out
    if block > 1 and start % block == 0 and x2.size % block == 0:
        runs = x2.reshape(-1, block).sum(axis=1)
        ids = axes.unit_of(np.arange(start, start + x2.size, block, dtype=np.int64))
        return np.bincount(ids, weights=runs, minlength=axes.units)
    ids = axes.unit_of(np.arange(start, start + x2.size, dtype=np.int64))
    return np.bincount(ids, weights=x2, minlength=axes.units)


def aligned_chunk(chunk: int, *axes: UnitAxes | None) -> int:
    """A chunk length near ``chunk`` that is a whole number of every map's runs (and rows, when the
    innermost axis is a unit axis); the periods are strides of one tensor, so they divide each other."""
    periods = [a.block if a.block > 1 else a.terms[-1][1] for a in axes if a is not None and a.terms]
    block = max(periods, default=1)
    return chunk if block > chunk else max(1, chunk // block) * block


def _chunks(p: Planned, chunk: int = CHUNK_ELEMS) -> Iterator[tuple[int, np.ndarray]]:
    with np.errstate(all="ignore"):
        yield from task_values(p.task, chunk)


def reviewable(p: Planned) -> bool:
    """Float weights (or dequantized ones) the pass can read value by value."""
    return p.task.decoder is None and (p.source.is_float or p.task.dequant is not None) and not p.integer_units


def unit_pass(planned: Sequence[Planned]) -> list[UnitSums | None]:
    """Per-unit sums of every reviewable weight (None for the others)."""
    out: list[UnitSums | None] = []
    for p in planned:
        if not reviewable(p):
            out.append(None)
            continue
        role = p.primary.role if p.primary else None
        axes = in_axes = None
        if role is not None and role.kind == "layer" and p.primary is not None:
            axes = unit_axes(p.source.shape, p.primary.layout, role.groups, per_group=role.per_group)
            in_axes = unit_axes(p.source.shape, p.primary.layout, role.groups, "in", role.per_group)
        out.append(unit_sums(_chunks(p, aligned_chunk(CHUNK_ELEMS, axes, in_axes)), axes, p.source.count, in_axes))
    return out
