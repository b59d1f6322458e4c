"""Per-output-unit sums of a weight tensor, streamed chunk by chunk (the trained-model review's sums).

An output unit is one output channel / row / column: the cell of a weight that feeds one
output of the op.  Which stored axes index it comes from the layout letters the tracer
produced for the stored tensor: every ``O`` axis (output units) and every ``B`` axis
(independent matrices: LSTM directions, batched MatMul), and, for a grouped
ConvTranspose ``W[C, M/g, k…]``, the group that the ``I`` axis falls in (unit = group ·
M/g + m).  Memory is one float64 per unit (three arrays: output Σw², output Σw, input Σw²)
and one chunk of values, whatever the tensor's size; no value is kept.

The sums are taken in the statistics pass itself (``measure_units``): each chunk that pass
reads is handed to a ``UnitSink`` too, in the worker that reads it, so the weights are read
once, spread over ``--jobs``, and a large tensor's pieces merge by adding their sums.  With
the compiled kernel (``accel.unit_grid``) one loop widens or dequantizes each value and takes
the unit sums, the power sums and the moments' sums at once (the statistics pass then skips its
own kernel for that chunk); otherwise numpy computes the same sums in float64 (``_numpy_add``,
the reference).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from onnx import TensorProto

from initaudit.measure import accel
from initaudit.measure.kernels import CODE_TYPES, HALF_TYPES
from initaudit.measure.stats import TensorStats
from initaudit.measure.streaming import dequantize, measure_pass
from initaudit.read.nbits import NBitsDecoder
from initaudit.trace.plan import MeasureTask, Planned

#: float16: values below half the smallest subnormal (2^-24) round to zero.
FLOAT16_FLUSH = 2.0 ** -25
#: float16's smallest normal: below it values lose precision (subnormals).
FLOAT16_TINY = 2.0 ** -14
#: Tensors with more output units than this are not reviewed per unit (memory stays bounded).
MAX_UNITS = 1 << 22
#: Row length of the kernel's grid when no unit axis sets one (any length gives the same sums).
FREE_ROW = 4096
#: Columns the kernel takes over all of a chunk's rows at a time (wider rows are cut in tiles).  Measured in
#: place on 4096-column float32 rows (CPU time of the pass): whole rows 1.92 ns a value, tiles of 512 columns
#: (whose units' sums stay in the first-level cache) 2.02-2.06: the strided reads cost more than they save.
TILE = 4096


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

    @property
    def period(self) -> tuple[str, int] | None:
        """How a row of the kernel's grid meets the units: ``("row", n)``, runs of n values in one unit;
        ``("col", n)``, rows of n values whose columns are n consecutive units; None, neither."""
        if not self.terms:
            return None
        stride, dim, divisor, _ = self.terms[-1]
        if self.block > 1:
            return "row", self.block
        return ("col", dim) if stride == 1 and divisor == 1 else None

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
    unit_sum: np.ndarray | None = None  # Σ w of each output unit, float64, shaped as unit_sq (always set by the pass)


@dataclass
class UnitPartial:
    """The sums of some of a tensor's values (a chunk, a worker's piece): they add up (``merge``)."""

    sq: np.ndarray                # Σ y² per output unit
    total: np.ndarray             # Σ y per output unit
    in_sq: np.ndarray | None      # Σ y² per input unit
    values: int = 0               # values seen, finite or not
    count: int = 0                # finite values
    power: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])   # Σy², Σy⁴, Σy⁶, Σy⁸
    max_abs: float = 0.0
    zeros: int = 0                # y == 0, non-finite values included (they count as 0)
    tiny: int = 0                 # |y| < 2^-14, zeros included
    lost: int = 0                 # |y| < 2^-25, zeros included
    lost_sq: float = 0.0

    def merge(self, other: UnitPartial) -> UnitPartial:
        self.sq += other.sq
        self.total += other.total
        if self.in_sq is not None and other.in_sq is not None:
            self.in_sq += other.in_sq
        self.values += other.values
        self.count += other.count
        self.power = [a + b for a, b in zip(self.power, other.power)]
        self.max_abs = max(self.max_abs, other.max_abs)
        self.zeros += other.zeros
        self.tiny += other.tiny
        self.lost += other.lost
        self.lost_sq += other.lost_sq
        return self


def _empty(axes: UnitAxes | None, in_axes: UnitAxes | None) -> UnitPartial:
    units = axes.units if axes is not None else 1
    return UnitPartial(np.zeros(units), np.zeros(units), np.zeros(in_axes.units) if in_axes is not None else None)


def _finish(part: UnitPartial, axes: UnitAxes | None, in_axes: UnitAxes | None, total: int) -> UnitSums:
    units = axes.units if axes is not None else 1
    in_units = in_axes.units if in_axes is not None else 0
    p = part.power
    return UnitSums(units, total // units if units else 0, part.sq, part.count, (p[0], p[1], p[2], p[3]),
                    part.max_abs, part.lost - part.zeros, part.tiny - part.zeros, part.values - part.zeros,
                    part.lost_sq, in_units, total // in_units if in_units else 0, part.in_sq, part.total)


# ---------------------------------------------------------------- the numpy reference


def _numpy_add(part: UnitPartial, values: np.ndarray, start: int, axes: UnitAxes | None,
               in_axes: UnitAxes | None) -> None:
    """Add elements ``[start, start + len)`` (floats, any dtype) in float64, value by value."""
    x = np.asarray(values, np.float64).ravel()
    if x.size == 0:
        return
    with np.errstate(all="ignore"):
        x2 = x * x
        s2 = float(x2.sum())
        if not math.isfinite(s2):  # NaN or Inf among them (or squares past float64): counted as 0
            finite = np.isfinite(x)
            part.count += int(np.count_nonzero(finite))
            x = np.where(finite, x, 0.0)
            x2 = x * x
            s2 = float(x2.sum())
        else:
            part.count += x.size
        part.values += x.size
        part.max_abs = max(part.max_abs, -float(x.min()), float(x.max()))
        x4 = x2 * x2
        part.power[0] += s2
        part.power[1] += float(x4.sum())
        part.power[2] += float(np.dot(x4, x2))
        part.power[3] += float(np.dot(x4, x4))
    small = np.flatnonzero(x2 < FLOAT16_TINY * FLOAT16_TINY * 4)  # every |x| < 2^-14, and a few more
    if small.size:
        a = np.abs(x[small])
        part.zeros += int(np.count_nonzero(a == 0))
        part.tiny += int(np.count_nonzero(a < FLOAT16_TINY))
        lost = a < FLOAT16_FLUSH
        part.lost += int(np.count_nonzero(lost))
        part.lost_sq += float((a[lost] * a[lost]).sum())
    if axes is not None:
        part.sq += _per_unit_aligned(x2, start, axes)
        part.total += _per_unit_aligned(x, start, axes)
    if in_axes is not None and part.in_sq is not None:
        part.in_sq += _per_unit_aligned(x2, start, in_axes)


def _row_span(start: int, n: int, row: int) -> tuple[int, int, int, int]:
    """Elements ``[start, start + n)`` of a grid of ``row``-long rows: (first row, rows touched, column the
    first starts at, column the last ends at)."""
    first, last = start // row, (start + n - 1) // row
    return first, last - first + 1, start - first * row, start + n - last * row


def _per_unit_aligned(w: np.ndarray, start: int, axes: UnitAxes) -> np.ndarray:
    """``_per_unit`` over the whole runs of the range, value by value only at its two ragged ends."""
    period = _run_period(axes) if axes.terms else 1
    end = start + w.size
    lo, hi = -(-start // period) * period, end // period * period
    if period == 1 or lo >= hi or (lo == start and hi == end):
        return _per_unit(w, start, axes)
    out = _per_unit(w[lo - start:hi - start], lo, axes)
    if lo > start:
        out += _per_unit(w[:lo - start], start, axes)
    if hi < end:
        out += _per_unit(w[hi - start:], hi, axes)
    return out


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


def unit_sums(chunks: Iterator[tuple[int, np.ndarray]], axes: UnitAxes | None, total: int,
              in_axes: UnitAxes | None = None) -> UnitSums:
    """Accumulate over ``(start, values)`` chunks of one tensor (values already dequantized), in numpy."""
    part = _empty(axes, in_axes)
    for start, values in chunks:
        _numpy_add(part, values, start, axes, in_axes)
    return _finish(part, axes, in_axes, total)


def _run_period(axes: UnitAxes) -> int:
    """Values in one run of a unit (``block`` > 1), or in one row whose columns are consecutive units."""
    return axes.block if axes.block > 1 else axes.terms[-1][1]


def aligned_chunk(chunk: int, *axes: UnitAxes | None) -> int:
    """A chunk length near ``chunk`` that is a whole number of every map's runs (and rows, when the
    innermost axis is a unit axis); the periods are strides of one tensor, so they divide each other."""
    periods = [_run_period(a) for a in axes if a is not None and a.terms]
    block = max(periods, default=1)
    return chunk if block > chunk else max(1, chunk // block) * block


# ---------------------------------------------------------------- the compiled grid


@dataclass(frozen=True)
class Grid:
    """How the compiled kernel reads one tensor: rows of ``row`` logical values (each row inside one unit
    of a ``row``-mode side, or its columns the consecutive units of a ``col``-mode side), dequantized with
    a scale per column (``col``: per tensor, or per channel along the row), per row (``block`` with one
    block: a channel of ``inner`` ≥ ``row`` values) or per block of ``bw`` (blocked, MatMulNBits)."""

    row: int
    out: str | None                  # row | col | None
    inn: str | None
    deq: str = "none"                # none | col | block
    scale: np.ndarray | None = None  # col: [row]; block per-axis: [channels]; blocked: [rows, nb]
    zero: np.ndarray | None = None
    inner: int = 0                   # per-axis blocks: a channel's values
    nb: int = 1                      # blocks per row (blocked, MatMulNBits)
    bw: int = 0                      # stored elements per block
    full: bool = False               # some scale below 2^-14 (the kernel counts value by value: col, and the
    #                                  blocks that hold one; MatMulNBits scales are only known chunk by chunk)
    nbits: NBitsDecoder | None = None


def _sides(axes: UnitAxes | None, in_axes: UnitAxes | None) -> tuple[int, str | None, str | None] | None:
    """The grid's row length (0: no side sets it) and each side's mode, or None when a side fits neither."""
    modes: list[str | None] = []
    periods = []
    for a in (axes, in_axes):
        if a is None:
            modes.append(None)
            continue
        period = a.period
        if period is None:
            return None
        modes.append(period[0])
        periods.append(period)
    if not periods:
        return 0, None, None
    row = min(n for _, n in periods)
    if any(n % row or (mode == "col" and n != row) for mode, n in periods):
        return None
    return row, modes[0], modes[1]


def _half_values(codes: np.ndarray, data_type: int) -> np.ndarray:
    """16-bit float patterns as float64 values, converted (exact; a lookup in the 65,536-value table gathers
    at several times the cost)."""
    if data_type == TensorProto.FLOAT16:
        return codes.view(np.float16).astype(np.float64)
    return (codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def _float64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64).reshape(-1)


def plan_grid(task: MeasureTask, shape: tuple[int, ...], axes: UnitAxes | None,
              in_axes: UnitAxes | None) -> Grid | None:
    """The compiled kernel's reading of a task (``shape``: its logical values), or None: numpy reads it."""
    sides = _sides(axes, in_axes)
    if sides is None or not shape:
        return None
    row, out, inn = sides
    col_side = "col" in (out, inn)
    source = task.source
    if isinstance(task.decoder, NBitsDecoder):
        lay = task.decoder.layout
        if lay.bits not in (4, 8) or lay.k != lay.k_blocks * lay.block_size or (row and row % lay.k) or \
                (col_side and row != lay.k):
            return None
        per = 8 // lay.bits
        return Grid(lay.k, out, inn, "block", nb=lay.k_blocks, bw=lay.blob_size, nbits=task.decoder) \
            if lay.blob_size * per == lay.block_size else None
    if task.decoder is not None:
        return None
    dq = task.dequant
    if dq is None:
        return Grid(row or FREE_ROW, out, inn) if source.is_float else None
    if source.data_type not in CODE_TYPES:
        return None
    scale = np.asarray(dq.scale)
    zero = np.zeros(scale.shape) if dq.zero_point is None else np.asarray(dq.zero_point)
    if scale.dtype.kind != "f" or zero.dtype.kind not in "iuf" or zero.shape != scale.shape:
        return None
    scale, zero = _float64(scale), _float64(zero)
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(zero))) or \
            float(np.abs(scale).max(initial=0.0)) * (float(np.abs(zero).max(initial=0.0)) + 65536) > 1e300:
        return None  # values that could overflow: numpy (which counts what is not finite)
    full = bool(np.abs(scale).min(initial=1.0) < FLOAT16_TINY)
    if dq.axis is None:
        if scale.size != 1:
            return None
        width = row or FREE_ROW
        return Grid(width, out, inn, "col", np.full(width, scale[0]), np.full(width, zero[0]), full=full)
    axis = dq.axis
    if dq.block_size:
        length = shape[-1]
        if axis != len(shape) - 1 or length % dq.block_size or scale.size * dq.block_size != math.prod(shape) or \
                (row and row % length) or (col_side and row != length):
            return None
        nb = length // dq.block_size
        return Grid(length, out, inn, "block", scale.reshape(-1, nb), zero.reshape(-1, nb), nb=nb, bw=dq.block_size,
                    full=full)
    inner, channels = math.prod(shape[axis + 1:]), shape[axis]
    if scale.size != channels:
        return None
    period = inner * channels
    if not row:  # no unit axis: a row of whole channel periods, or one channel's run
        row = period * max(1, FREE_ROW // period) if period <= 1 << 16 else inner if inner >= 64 else 0
        if not row:
            return None
    if inner >= row:
        return Grid(row, out, inn, "block", scale, zero, inner=inner, bw=row, full=full) if inner % row == 0 else None
    if row % period:
        return None
    channel = (np.arange(row) // inner) % channels
    return Grid(row, out, inn, "col", scale[channel], zero[channel], full=full)


#: The unit kernel's value kind of each stored type, as the pass reads it: floats (bfloat16 as its
#: patterns, other small floats decoded to float32) and integer codes (int4/uint4 unpacked to bytes).
VALUE_KINDS: dict[int, str] = {TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16", TensorProto.DOUBLE: "float64"}
CODE_KINDS: dict[int, str] = {TensorProto.INT8: "int8", TensorProto.INT4: "int8", TensorProto.UINT8: "uint8", TensorProto.UINT4: "uint8",
              TensorProto.INT16: "int16", TensorProto.UINT16: "uint16"}


class UnitSink:
    """The unit sums of one task's range (one worker's piece), fed chunk by chunk by the statistics pass."""

    def __init__(self, plan: UnitPlan) -> None:
        self.plan = plan
        self.part = _empty(plan.axes, plan.in_axes)
        self.rows: tuple[np.ndarray, np.ndarray] | None = None

    def result(self) -> UnitPartial:
        return self.part

    # -- entry points: return the chunk's moments' power sums about 0 when the kernel took every value

    def add_values(self, values: np.ndarray, at: int) -> accel.PowerSums | None:
        """Values as the statistics pass measured them (floats; decoded rows for a decoder task)."""
        plan = self.plan
        start = at
        if plan.task.decoder is not None:
            layout = getattr(plan.task.decoder, "layout", None)
            start = at // layout.row_bytes * layout.k if layout is not None else at
        grid = plan.grid
        kind = accel.unit_kind(values, False)
        if grid is not None and grid.deq == "none" and kind is not None and accel.ready():
            return self._floats(np.ravel(values), start, kind)
        _numpy_add(self.part, values, start, plan.axes, plan.in_axes)
        return None

    def add_codes(self, codes: np.ndarray, at: int) -> accel.PowerSums | None:
        """Stored elements from ``at`` as the kernels read them: 16-bit float patterns, integer codes,
        MatMulNBits bytes."""
        plan, task = self.plan, self.plan.task
        grid = plan.grid
        data_type = task.source.data_type
        if task.decoder is not None:
            if grid is not None and grid.nbits is not None and accel.ready():
                fused = self._nbits(codes, at, grid)
                if fused is not False:
                    return fused
            return self.add_values(task.decoder(codes, at), at)
        if task.dequant is None and data_type in HALF_TYPES:
            if grid is not None and accel.ready():
                if data_type == TensorProto.FLOAT16:
                    return self._floats(codes.view(np.float16), at, "float16")
                return self._floats(codes, at, "bfloat16")
            _numpy_add(self.part, _half_values(codes, data_type), at, plan.axes, plan.in_axes)
            return None
        if task.dequant is not None and grid is not None and accel.ready():
            kind = accel.unit_kind(codes, True)
            if kind is not None:
                fused = self._dequantized(codes, at, kind, grid)
                if fused is not False:
                    return fused
        values = task.decoder(codes, at) if task.decoder is not None else \
            dequantize(codes, at, task.dequant, task.source.shape) if task.dequant is not None else codes
        _numpy_add(self.part, values, at, plan.axes, plan.in_axes)
        return None

    # -- the kernel

    def _ids(self, first_row: int, rows: int, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The units of rows ``[first_row, first_row + rows)`` of the grid (of ``row`` values), on each side:
        of the whole tensor once when it has few rows (most chunks then cost no numpy call for them)."""
        total = -(-self.plan.total // row)
        if total <= 1 << 16:
            if self.rows is None:
                self.rows = self._units(0, total, row)
            return self.rows[0][first_row:first_row + rows], self.rows[1][first_row:first_row + rows]
        return self._units(first_row, rows, row)

    def _units(self, first_row: int, rows: int, row: int) -> tuple[np.ndarray, np.ndarray]:
        starts = np.arange(first_row, first_row + rows, dtype=np.int64) * row
        out = self.plan.axes.unit_of(starts) if self.plan.axes is not None else np.zeros(rows, np.int64)
        inn = self.plan.in_axes.unit_of(starts) if self.plan.in_axes is not None else np.zeros(rows, np.int64)
        return out, inn

    def _call(self, values: np.ndarray, kind: str, grid: Grid, first_row: int, rows: int, stride: int, c0: int,
              cend: int, nb: int, bw: int, scale: np.ndarray, zero: np.ndarray, full: bool,
              ids: tuple[np.ndarray, np.ndarray] | None = None) -> accel.UnitChunk:
        part = self.part
        oid, iid = ids if ids is not None else self._ids(first_row, rows, grid.row)
        flags = (grid.out == "row") | (grid.inn == "row") << 1
        in_sq = part.in_sq if part.in_sq is not None else part.sq
        got = accel.unit_grid(values, kind, grid.deq, rows, stride, c0, cend, nb, bw, scale, zero, oid, iid,
                              flags, grid.out == "col", grid.inn == "col", part.sq, part.total, in_sq, full)
        assert got is not None  # ready() was checked
        part.values += got.n
        part.count += got.n
        power = part.power
        power[0] += got.s2
        power[1] += got.p4
        power[2] += got.p6
        power[3] += got.p8
        if got.n:
            part.max_abs = max(part.max_abs, -got.lo, got.hi)
        part.zeros += got.zeros
        part.tiny += got.tiny
        part.lost += got.lost
        part.lost_sq += got.lost_sq
        return got

    def _floats(self, values: np.ndarray, start: int, kind: str) -> accel.PowerSums | None:
        """Float values from logical position ``start``, rows of the grid cut anywhere; a chunk holding NaN
        or Inf goes to numpy (which counts them)."""
        grid = self.plan.grid
        assert grid is not None
        row, n = grid.row, values.size
        if n == 0:
            return None
        values = np.ascontiguousarray(values)
        first, rows, c0, cend = _row_span(start, n, row)
        none = np.zeros(1)
        got = self._call(values, kind, grid, first, rows, row, c0, cend, -(-row // TILE), min(row, TILE), none, none,
                         False)
        if got.stop < rows:  # nothing was summed
            _numpy_add(self.part, values, start, self.plan.axes, self.plan.in_axes)
            return None
        if kind == "float64":  # the statistics pass's numpy path takes these itself
            return None
        return accel.PowerSums(got.s1, got.s2, got.s3, got.p4, got.lo, got.hi, got.zeros)

    def _dequantized(self, codes: np.ndarray, at: int, kind: str, grid: Grid) -> accel.PowerSums | None | Literal[False]:
        """Integer codes from ``at``; False when the grid cannot take this chunk (numpy then does)."""
        row, n = grid.row, codes.size
        if n == 0:
            return None
        codes = np.ascontiguousarray(codes)
        first, rows, c0, cend = _row_span(at, n, row)
        if grid.deq == "col":
            assert grid.scale is not None and grid.zero is not None
            got = self._call(codes, kind, grid, first, rows, row, c0, cend, -(-row // TILE), min(row, TILE), grid.scale,
                             grid.zero, grid.full)
        else:
            assert grid.scale is not None and grid.zero is not None
            if c0 or cend != row:
                return False  # blocks need whole rows (the statistics kernels cut chunks so)
            if grid.inner:  # one channel per row
                channel = (np.arange(first, first + rows, dtype=np.int64) * row // grid.inner) % grid.scale.size
                scale, zero, nb = grid.scale[channel], grid.zero[channel], 1
            else:
                scale, zero, nb = grid.scale[first:first + rows].ravel(), grid.zero[first:first + rows].ravel(), grid.nb
            full = bool(np.abs(scale).min() < FLOAT16_TINY)
            got = self._call(codes, kind, grid, first, rows, row, 0, grid.bw, nb, grid.bw, np.ascontiguousarray(scale),
                             np.ascontiguousarray(zero), full)
        return accel.PowerSums(got.s1, got.s2, got.s3, got.p4, got.lo, got.hi, got.zeros)

    def _nbits(self, codes: np.ndarray, at: int, grid: Grid) -> accel.PowerSums | None | Literal[False]:
        decoder = grid.nbits
        assert decoder is not None
        lay = decoder.layout
        if at % lay.row_bytes or codes.size % lay.row_bytes:
            return False
        first, rows = at // lay.row_bytes, codes.size // lay.row_bytes
        if rows == 0:
            return None
        scale, zero = decoder.rows(first, rows)
        scale, zero = _float64(scale), _float64(zero)
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(zero))):
            return False
        full = bool(np.abs(scale).min() < FLOAT16_TINY)
        kind = "uint4x2" if lay.bits == 4 else "uint8"
        got = self._call(np.ascontiguousarray(codes), kind, grid, first, rows, lay.row_bytes, 0, grid.bw, grid.nb,
                         grid.bw, scale, zero, full)
        return accel.PowerSums(got.s1, got.s2, got.s3, got.p4, got.lo, got.hi, got.zeros)


@dataclass(frozen=True)
class UnitPlan:
    """What the unit pass needs of one task: its unit maps (on the logical values) and the kernel's grid."""

    task: MeasureTask
    total: int
    axes: UnitAxes | None
    in_axes: UnitAxes | None
    grid: Grid | None

    def sink(self) -> UnitSink:
        return UnitSink(self)

    def kernels(self) -> set[str]:
        """The compiled unit kernels this tensor's chunks will call (a MatMulNBits block of scales below
        2^-14 may call one more: those scales are read chunk by chunk)."""
        grid, source = self.grid, self.task.source
        if grid is None:
            return set()
        if grid.nbits is not None:
            kind = "uint4x2" if grid.nbits.layout.bits == 4 else "uint8"
        elif grid.deq == "none":
            kind = VALUE_KINDS.get(source.data_type, "float32")
        else:
            kind = CODE_KINDS.get(source.data_type, "")
        if not kind:
            return set()
        ocol, icol = grid.out == "col", grid.inn == "col"
        names = {accel.unit_function(kind, grid.deq, ocol, icol, grid.full)}
        if grid.deq == "block" and grid.full:  # chunk by chunk: blocks of small scales, and the others
            names.add(accel.unit_function(kind, grid.deq, ocol, icol))
        return names

    def finish(self, part: UnitPartial | None) -> UnitSums:
        return _finish(part if part is not None else _empty(self.axes, self.in_axes), self.axes, self.in_axes,
                       self.total)


def reviewable(p: Planned) -> bool:
    """Float weights, dequantized ones or MatMulNBits blocks: values the pass can read one by one."""
    if p.integer_units:
        return False
    if p.task.decoder is not None:
        return isinstance(p.task.decoder, NBitsDecoder)
    return p.source.is_float or p.task.dequant is not None


def unit_plan(p: Planned) -> UnitPlan | None:
    """The unit plan of a weight, or None when it is not reviewed per unit."""
    if not reviewable(p):
        return None
    role = p.primary.role if p.primary else None
    shape, layout = p.source.shape, p.primary.layout if p.primary is not None else ""
    total = p.source.count
    if isinstance(p.task.decoder, NBitsDecoder):  # the logical [N, K] of the stored blocks
        lay = p.task.decoder.layout
        shape, layout, total = (lay.n, lay.k), "OI", lay.n * lay.k
    axes = in_axes = None
    if role is not None and role.kind == "layer":
        axes = unit_axes(shape, layout, role.groups, per_group=role.per_group)
        in_axes = unit_axes(shape, layout, role.groups, "in", role.per_group)
    return UnitPlan(p.task, total, axes, in_axes, plan_grid(p.task, shape, axes, in_axes))


def measure_units(planned: Sequence[Planned], jobs: int = 1, review: bool = True
                  ) -> tuple[list[tuple[TensorStats, list[TensorStats]]], list[UnitSums | None]]:
    """The statistics of every weight and, with ``review``, the unit sums of the reviewable ones (None for
    the others), from one read of the weights over ``jobs`` processes."""
    plans = [unit_plan(p) for p in planned] if review else None
    measured, partials = measure_pass([p.task for p in planned], jobs, plans)
    if plans is None:
        return measured, []
    return measured, [plan.finish(part) if plan is not None else None for plan, part in zip(plans, partials)]
