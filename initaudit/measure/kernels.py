"""Exact statistics of half-precision and quantized weights without converting value by value.

Two ideas, both exact in float64 (reference: numpy float64 on the dequantized values):

* A 16-bit float has only 65,536 bit patterns: a histogram of the raw patterns
  (``np.bincount``) gives every moment, the range, the zero and non-finite counts
  from a table of the 65,536 values.  Per-tensor quantized weights likewise: a
  histogram of the 256 (or 65,536) codes and the table ``s·(code - z)``.
* Per-channel and blocked quantization ``x = s_g·(q - z_g)``: within one group
  (channel or block) the power sums of the integer ``e = q - z`` are exact in
  float64, the group's central moments follow from them, and the groups combine
  with the many-group form of Pébay's merge.  The range and zero count come from
  ``e·s_g``, which float64 holds exactly (a 24-bit scale times an integer of at
  most 17 bits).

Everything returns ``stats.Moments``, so chunks, parts and worker processes
combine as for float32.  ``plan_kernel`` says which kernel (if any) fits a
measuring task; tasks it declines keep the general path in ``measure.streaming``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
from onnx import TensorProto

from initaudit.measure import accel
from initaudit.measure.stats import MomentAccumulator, Moments
from initaudit.read.tensors import TensorSource, decode_raw, storage_nbytes

if TYPE_CHECKING:
    from initaudit.read.nbits import NBitsDecoder
    from initaudit.trace.follow import Dequant
    from initaudit.trace.plan import MeasureTask

HALF_TYPES = (TensorProto.FLOAT16, TensorProto.BFLOAT16)
#: Stored integer types and (bytes per element, signed); int4/uint4 are decoded to int8/uint8 codes.
CODE_TYPES: dict[int, tuple[int, bool]] = {
    TensorProto.INT8: (1, True), TensorProto.UINT8: (1, False), TensorProto.INT16: (2, True),
    TensorProto.UINT16: (2, False), TensorProto.INT4: (1, True), TensorProto.UINT4: (1, False),
}
#: The longest row (a period of channels, a blocked row, a MatMulNBits row) a chunk must hold whole (bounds memory).
MAX_GROUP_ROW = 1 << 22


@lru_cache(maxsize=2)
def half_table(data_type: int) -> np.ndarray:
    """The float64 value of each of the 65,536 bit patterns of float16 or bfloat16."""
    patterns = np.arange(1 << 16, dtype=np.uint32)
    if data_type == TensorProto.FLOAT16:
        table = patterns.astype(np.uint16).view(np.float16).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
            table = (patterns << 16).view(np.float32).astype(np.float64)
    table.flags.writeable = False
    return table


def table_moments(values: np.ndarray, counts: np.ndarray) -> Moments:
    """Moments of a multiset given as values and how often each occurs (two exact passes)."""
    finite = np.isfinite(values)
    nonfinite = int(counts[~finite].sum())
    present = finite & (counts > 0)
    v = values[present]
    if v.size == 0:
        return Moments(nonfinite=nonfinite)
    c = counts[present].astype(np.float64)
    n = int(counts[present].sum())
    mean = float(c @ v) / n
    d = v - mean
    correction = float(c @ d) / n  # second pass: the rounding of the first mean, removed
    mean += correction
    d -= correction
    d2 = d * d
    zeros = int(counts[present][v == 0].sum())
    return Moments(n, mean, float(c @ d2), float(c @ (d2 * d)), float(c @ (d2 * d2)),
                   float(v.min()), float(v.max()), nonfinite, zeros)


_SCRATCH: dict[str, list[np.ndarray]] = {}


def _scratch(shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Two reused work arrays of ``shape``: a fresh large array per chunk costs page faults."""
    size = math.prod(shape)
    held = _SCRATCH.get(np.dtype(dtype).char)
    if held is None or held[0].size < size:
        held = _SCRATCH[np.dtype(dtype).char] = [np.empty(size, dtype), np.empty(size, dtype)]
    return held[0][:size].reshape(shape), held[1][:size].reshape(shape)


#: float32 holds every integer below this exactly: sums of e and e² stay exact while they stay below it.
FLOAT32_EXACT = 1 << 24


def float32_rows(bits: int) -> int:
    """How many ``bits``-bit codes a float32 sum of ``e²`` (``|e| < 2^bits``) adds up exactly."""
    return FLOAT32_EXACT // ((1 << bits) - 1) ** 2


@dataclass
class GroupSums:
    """Per-group power sums of the integers ``e = q - z`` (float64), and the range and zero
    count of the dequantized values ``s·e``."""

    n: int                 # values per group
    shift: np.ndarray      # per group: the sums are of e - shift (an integer near the group's mean)
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray
    s4: np.ndarray
    lo: float
    hi: float
    zeros: int

    def add(self, other: GroupSums) -> None:
        """Same groups, more values (more rows of the same columns, summed about the same shift)."""
        self.n += other.n
        self.s1 += other.s1
        self.s2 += other.s2
        self.s3 += other.s3
        self.s4 += other.s4
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)
        self.zeros += other.zeros

    def moments(self, scale: np.ndarray) -> Moments:
        s = np.ravel(scale).astype(np.float64)
        if s.size == 1 and self.s1.size > 1:
            s = np.full(self.s1.size, s[0])
        return combine_groups(self.n, s, self.s1, self.s2, self.s3, self.s4, self.lo, self.hi, self.zeros,
                              self.shift)


def grouped_moments(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray | float, rows: bool,
                    bits: int = 16) -> Moments:
    """Moments of ``scale·(codes - zero)`` where each row (``rows``) or column is one group."""
    if codes.size == 0:
        return Moments()
    return group_sums(codes, scale, zero, rows, bits).moments(scale)


def group_sums(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray | float, rows: bool,
               bits: int = 16, shift: np.ndarray | None = None) -> GroupSums:
    """Power sums of each row's (``rows``) or column's ``codes - zero``, and the range of ``scale·(codes - zero)``.

    ``scale`` and ``zero`` broadcast against ``codes`` (shape (R, 1) for row groups,
    (1, C) for column groups); every scale is finite.  With ``bits``-bit codes, integer
    zero points and float32 scales, the work is done in float32 where that is exact (the
    sums of ``e`` and ``e²``; the third and fourth powers, which only feed the kurtosis, to
    float32 rounding), and the range from the float32 products is made exact afterwards.

    The powers are summed about ``shift`` (default: each group's mean rounded to an integer when the
    fourth powers' sums are not exact and some group's mean is far from zero, else zero), so that
    codes far from their zero point keep their kurtosis; sums to be added together must share it.
    """
    n = codes.shape[1] if rows else codes.shape[0]
    scale = np.asarray(scale)
    zero_array = np.asarray(zero)
    single = (scale.dtype == np.float32 and bits <= 8 and n <= float32_rows(bits)
              and (zero_array.dtype.kind in "iu" or bool(np.all(zero_array == np.round(zero_array)))))
    dtype = np.float32 if single else np.float64
    e, x = _scratch(codes.shape, dtype)
    scale_full = scale.astype(dtype, copy=False)
    if rows and n < 256 and scale.size > 1:  # short rows: numpy's broadcasting loop costs more than a copy
        scale_full = np.repeat(scale_full.ravel(), n).reshape(codes.shape)
    np.copyto(e, codes, casting="unsafe")
    if not (zero_array.dtype.kind in "iu" and not zero_array.any()):  # symmetric: nothing to subtract
        zero_full = zero_array.astype(dtype, copy=False)
        if rows and n < 256 and zero_array.size > 1:
            zero_full = np.repeat(zero_full.ravel(), n).reshape(codes.shape)
        e -= zero_full
    if not rows and codes.dtype.kind in "iu" and bool(np.all(scale != 0)):
        lo, hi = _column_range(codes, scale, zero_array)  # from each column's extreme codes, exactly
        zeros = int(np.count_nonzero(e == 0))
    else:
        np.multiply(e, scale_full, out=x)
        lo, hi = x.min(), x.max()
        zeros = int(np.count_nonzero(x == 0))
        if single:  # the float32 products are rounded: the exact extremes are among the ties
            lo, hi = _exact_extreme(x, e, scale, rows, lo, min), _exact_extreme(x, e, scale, rows, hi, max)
    ones = np.ones(n, dtype)
    sums = (lambda a: (a @ ones).astype(np.float64)) if rows else (lambda a: (ones @ a).astype(np.float64))
    s1 = sums(e)
    if shift is None:
        # the fourth powers' sums are rounded (float32 above 2^24, float64 above 2^53): about a
        # group mean far from zero their cancellation would lose the kurtosis, so shift first
        exact = n * ((1 << bits) - 1) ** 4 < (FLOAT32_EXACT if single else 1 << 53)
        mean = s1 / n
        shift = np.round(mean) if not exact and np.abs(mean).max() > 2 else np.zeros_like(s1)
    if shift.any():
        e -= (shift.reshape(-1, 1) if rows else shift.reshape(1, -1)).astype(dtype)
        s1 = s1 - n * shift
    np.multiply(e, e, out=x)           # e² (x is no longer needed)
    s2 = sums(x)
    e *= x                              # e³
    s3 = sums(e)
    np.multiply(x, x, out=e)           # e⁴
    s4 = sums(e)
    return GroupSums(n, shift, s1, s2, s3, s4, float(lo), float(hi), zeros)


def _column_range(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> tuple[float, float]:
    """The smallest and largest ``scale·(code - zero)`` over columns of integer codes, in float64 (exact)."""
    s = np.ravel(scale).astype(np.float64)
    z = np.ravel(zero).astype(np.float64)
    low = s * (codes.min(axis=0).astype(np.float64) - z)
    high = s * (codes.max(axis=0).astype(np.float64) - z)
    return float(min(low.min(), high.min())), float(max(low.max(), high.max()))


def _exact_extreme(x: np.ndarray, e: np.ndarray, scale: np.ndarray, rows: bool, rounded: float, pick) -> float:
    at = np.flatnonzero(x == rounded)
    width = x.shape[1]
    group = at // width if rows else at % width
    exact = e.ravel()[at].astype(np.float64) * np.ravel(scale).astype(np.float64)[group if scale.size > 1 else 0]
    return float(pick(exact))


def combine_groups(n: int, s: np.ndarray, s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, s4: np.ndarray,
                   lo: float, hi: float, zeros: int, shift: np.ndarray | None = None) -> Moments:
    """Groups of ``n`` values ``s·e`` with power sums ``s1..s4`` of ``e - shift``, as one Moments.

    When the groups' mean is within a standard deviation of zero (the usual case for
    quantized weights) the moments follow from the plain power sums over all groups, a
    handful of dot products: M2 = Σx² - N·mean² then loses at most a factor of two to
    cancellation.  Otherwise each group's central moments come from its own sums (exact
    integers in float64 for the mean and M2), then the many-group form of Pébay's merge
    combines them.
    """
    groups = s1.size
    total = n * groups
    shifted = shift is not None and bool(shift.any())
    ss = s * s
    if not shifted:
        x1, x2 = float(s @ s1), float(ss @ s2)
        mean = x1 / total
        m2 = x2 - x1 * mean
        if mean * mean * total <= m2:
            x3, x4 = float((ss * s) @ s3), float((ss * ss) @ s4)
            m3 = x3 - 3 * mean * x2 + 3 * mean * mean * x1 - total * mean ** 3
            m4 = x4 - 4 * mean * x3 + 6 * mean * mean * x2 - 4 * mean ** 3 * x1 + total * mean ** 4
            return Moments(total, mean, m2, m3, m4, lo, hi, 0, zeros)
    m = s1 / n
    c2 = s2 - s1 * m
    np.maximum(c2, 0.0, out=c2)
    group_mean = s * (m + shift) if shift is not None and shifted else s * m
    mean = float(group_mean.sum()) / groups
    delta = group_mean - mean
    correction = float(delta.sum()) / groups
    mean += correction
    delta -= correction
    m2 = float(ss @ c2 + n * (delta @ delta))
    mm = m * m
    c3 = s3 - 3 * m * s2 + 2 * n * mm * m
    c4 = s4 - 4 * m * s3 + 6 * mm * s2 - 3 * n * mm * mm
    m2g = ss * c2
    m3g = ss * s * c3
    m4g = ss * ss * c4
    d2 = delta * delta
    m3 = float(m3g.sum() + 3 * (delta @ m2g) + n * (d2 @ delta))
    m4 = float(m4g.sum() + 4 * (delta @ m3g) + 6 * (d2 @ m2g) + n * (d2 @ d2))
    return Moments(n * groups, mean, m2, m3, m4, lo, hi, 0, zeros)


# ---------------------------------------------------------------- the unit sums' share of the read


class ChunkSink(Protocol):
    """Takes each chunk the statistics pass reads (``measure.units.UnitSink``): its values as measured, or its
    stored elements as the kernels read them.  Either returns the chunk's moments' power sums about 0 when
    it computed them on the way (every value finite), so that the pass need not take them again."""

    def add_values(self, values: np.ndarray, at: int) -> accel.PowerSums | None: ...

    def add_codes(self, codes: np.ndarray, at: int) -> accel.PowerSums | None: ...


def about_zero(n: int, sums: accel.PowerSums) -> Moments | None:
    """The Moments of ``n`` values from their power sums about 0, or None when the accumulator would have
    shifted them (mean far from zero: see ``MomentAccumulator.add_power_sums``)."""
    mean, second = sums.s1 / n, sums.s2 / n
    if mean * mean > second - mean * mean:
        return None
    acc = MomentAccumulator()
    acc.add_power_sums(n, lambda shift: sums)
    return acc.moments()


def add_fused(acc: MomentAccumulator, fused: accel.PowerSums | None, values: np.ndarray,
              kind: str | None = None) -> bool:
    """Add a chunk to ``acc`` from the sums a sink took (about 0); about another shift (the first chunk's
    mean was far from zero) the compiled kernel takes them again.  False, adding nothing, without sums."""
    if fused is None:
        return False
    return acc.add_power_sums(values.size, lambda shift: fused if shift == 0.0 else
                              accel.power_sums(values, shift, kind))


def fed(chunks: Iterator[np.ndarray], sink: ChunkSink | None, start: int) -> Iterator[np.ndarray]:
    """The chunks, each handed to ``sink`` first (the unit sums; their fused moments are not used)."""
    at = start
    for codes in chunks:
        if sink is not None:
            sink.add_codes(codes, at)
        yield codes
        at += codes.size


# ---------------------------------------------------------------- reading raw codes


def raw_chunks(source: TensorSource, chunk_elems: int, start: int, stop: int,
               mapped: bool = False) -> Iterator[np.ndarray]:
    """Elements ``[start, stop)`` as stored integers: 16-bit patterns of half floats, codes of
    integer types (int4/uint4 unpacked to int8/uint8), without converting to float.  ``mapped``:
    see ``FilePayload.iter_bytes``."""
    assert source.payload is not None
    data_type = source.data_type
    per_byte = source.per_byte
    chunk_elems -= chunk_elems % per_byte
    offset = storage_nbytes(data_type, start)
    payload = source.payload.sub(offset, storage_nbytes(data_type, stop) - offset)
    remaining = stop - start
    for buf in payload.iter_bytes(storage_nbytes(data_type, chunk_elems), storage_nbytes(data_type, 1), mapped):
        n = min(chunk_elems, remaining)
        if data_type in HALF_TYPES or data_type in (TensorProto.INT16, TensorProto.UINT16):
            yield np.frombuffer(buf, "<u2" if data_type != TensorProto.INT16 else "<i2", n)
        elif data_type in (TensorProto.INT8, TensorProto.UINT8):
            yield np.frombuffer(buf, np.int8 if data_type == TensorProto.INT8 else np.uint8, n)
        else:
            yield decode_raw(buf, data_type, n)
        remaining -= n


def unsigned(codes: np.ndarray) -> np.ndarray:
    """The same bits as non-negative integers, for ``np.bincount``."""
    if codes.dtype == np.int8:
        return codes.view(np.uint8)
    if codes.dtype == np.int16 or codes.dtype == np.dtype("<i2"):
        return codes.view(np.uint16)
    return codes


def code_table(bits: int, signed: bool, scale: float, zero: float) -> np.ndarray:
    """``scale·(code - zero)`` in float64 for each unsigned bit pattern of a ``bits``-bit code."""
    patterns = np.arange(1 << bits, dtype=np.int64)
    if signed:
        patterns = np.where(patterns >= 1 << (bits - 1), patterns - (1 << bits), patterns)
    return (patterns.astype(np.float64) - zero) * scale


# ---------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Kernel:
    """How one task's chunks become Moments.  ``granularity``: chunks are whole multiples of it."""

    kind: str                # half | compiled-half | table | axis | blocked | nbits
    granularity: int = 1

    def chunk_moments(self, codes: np.ndarray, start: int) -> Moments:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class HistogramKernel(Kernel):
    """Per-tensor: one histogram of the bit patterns over the whole range, one table at the end."""

    table: np.ndarray | None = None

    def histogram(self, codes: np.ndarray) -> np.ndarray:
        assert self.table is not None
        return np.bincount(unsigned(np.ravel(codes)), minlength=self.table.size)

    def finish(self, counts: np.ndarray) -> Moments:
        assert self.table is not None
        return table_moments(self.table, counts)


@dataclass(frozen=True)
class CompiledHalfKernel(Kernel):
    """float16 / bfloat16 through the compiled one-pass kernel (``accel``), straight from the bit patterns."""

    bfloat16: bool = False

    def add(self, acc: MomentAccumulator, patterns: np.ndarray) -> None:
        if not self.bfloat16:
            acc.add(patterns.view(np.float16))
        elif not acc.add_compiled(patterns, "bfloat16"):
            acc.add((patterns.astype(np.uint32) << 16).view(np.float32))


@dataclass(frozen=True)
class AxisKernel(Kernel):
    """Per-axis ``DequantizeLinear``: the tensor viewed as (outer, channels, inner)."""

    scale: np.ndarray | None = None   # (channels,) float32 (float64 if it was stored so)
    zero: np.ndarray | None = None    # (channels,) integers
    inner: int = 1
    bits: int = 8

    def chunk_moments(self, codes: np.ndarray, start: int) -> Moments:
        assert self.scale is not None and self.zero is not None
        channels = self.scale.size
        if self.inner == 1:
            grid = codes.reshape(-1, channels)
            fast = compiled_moments(grid, self.scale, self.zero, columns=True)
            if fast is not None:
                return fast
            sums = column_sums(grid, self.scale, self.zero, self.bits)
            return sums.moments(self.scale) if sums is not None else Moments()
        grid = codes.reshape(-1, self.inner)
        first = start // self.inner
        channel = np.arange(first, first + grid.shape[0]) % channels
        fast = compiled_moments(grid, self.scale[channel], self.zero[channel], columns=False)
        if fast is not None:
            return fast
        return grouped_moments(grid, self.scale[channel, None], self.zero[channel, None], rows=True, bits=self.bits)


@dataclass(frozen=True)
class BlockedKernel(Kernel):
    """Blocked ``DequantizeLinear`` along the last axis: rows of ``length`` values, blocks of ``block``."""

    scale: np.ndarray | None = None   # (rows, k_blocks) float32 (float64 if it was stored so)
    zero: np.ndarray | None = None    # (rows, k_blocks) integers
    length: int = 1
    block: int = 1
    bits: int = 8

    def chunk_moments(self, codes: np.ndarray, start: int) -> Moments:
        assert self.scale is not None and self.zero is not None
        grid = codes.reshape(-1, self.length)
        first = start // self.length
        scale = self.scale[first:first + grid.shape[0]]
        zero = self.zero[first:first + grid.shape[0]]
        return blocks_moments(grid, scale, zero, self.block, self.length, self.bits)


def column_sums(grid: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int,
                total: GroupSums | None = None) -> GroupSums | None:
    """Column groups' sums over all rows (added to ``total``, the same columns' sums so far), in slabs
    of rows short enough for exact float32 sums."""
    step = max(1, float32_rows(bits)) if bits <= 8 else grid.shape[0]
    for at in range(0, grid.shape[0], step):
        sums = group_sums(grid[at:at + step], scale[None, :], zero[None, :], rows=False, bits=bits,
                          shift=None if total is None else total.shift)
        if total is None:
            total = sums
        else:
            total.add(sums)
    return total


def block_sums(blocks: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> GroupSums:
    """Sums of short rows (one block each): transposed first, so that every pass runs along
    the blocks (numpy's loops over rows of 16 or 32 values cost more than the copy)."""
    width = blocks.shape[1]
    if width >= 256:
        return group_sums(blocks, scale, zero, rows=True, bits=bits)
    flipped = _scratch_codes(blocks.size, "blocks", blocks.dtype).reshape(width, blocks.shape[0])
    np.copyto(flipped, blocks.T)
    return group_sums(flipped, np.reshape(scale, (1, -1)), np.reshape(zero, (1, -1)), rows=False, bits=bits)


def blocks_moments(grid: np.ndarray, scale: np.ndarray, zero: np.ndarray, block: int, length: int,
                   bits: int) -> Moments:
    """Rows of ``length`` codes cut into blocks of ``block`` (the last one shorter when it does not divide)."""
    rows = grid.shape[0]
    full = length // block
    result = Moments()
    if full:
        body = grid[:, :full * block].reshape(rows * full, block)
        body_scale = scale[:, :full].reshape(-1, 1)
        fast = compiled_moments(body, body_scale, zero[:, :full], columns=False)
        result = fast if fast is not None else \
            block_sums(body, body_scale, zero[:, :full].reshape(-1, 1), bits).moments(body_scale)
    if full * block < length:
        tail = grid[:, full * block:length]
        result = result.merge(grouped_moments(tail, scale[:, full:full + 1], zero[:, full:full + 1], rows=True,
                                              bits=bits))
    return result


@dataclass(frozen=True)
class NBitsKernel(Kernel):
    """``MatMulNBits``: whole rows of packed blocks; codes beyond K (padding) are left out."""

    decoder: NBitsDecoder | None = None

    def chunk_moments(self, codes: np.ndarray, start: int) -> Moments:
        assert self.decoder is not None
        lay = self.decoder.layout
        first = start // lay.row_bytes
        rows = codes.size // lay.row_bytes
        block, full = lay.block_size, lay.k // lay.block_size
        tail = lay.k - full * block
        per_byte = 8 // lay.bits
        mask = (1 << lay.bits) - 1
        scale, zero = self.decoder.rows(first, rows)
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(zero))):  # NaN/Inf scales: value by value
            from initaudit.measure.stats import MomentAccumulator

            acc = MomentAccumulator()
            acc.add(self.decoder(codes, start))
            return acc.moments()
        body_scale, body_zero = scale[:, :full].reshape(-1, 1), zero[:, :full].reshape(-1, 1)
        tail_scale, tail_zero = scale[:, full:full + 1], zero[:, full:full + 1]
        blocks = codes.reshape(rows, lay.k_blocks, lay.blob_size)
        result = Moments()
        fast = None
        if full and lay.bits in (4, 8):  # whole blocks: the compiled kernel reads the bytes as stored
            fast = compiled_moments(blocks[:, :full].reshape(rows * full, lay.blob_size), scale[:, :full],
                                    zero[:, :full], columns=False, packed4=lay.bits == 4)
        if fast is not None:
            result = fast
        elif full:
            # every block's codes as one column: bit position i of its bytes in rows [i·blob, (i+1)·blob)
            groups = rows * full
            flipped = _scratch_codes(lay.block_size * groups).reshape(per_byte, lay.blob_size, groups)
            # one strided copy of the bytes, then contiguous shifts (a shift reading the strided view
            # directly costs several times more)
            body_bytes = _scratch_codes(lay.blob_size * groups, "bytes").reshape(lay.blob_size, groups)
            np.copyto(body_bytes, blocks[:, :full].reshape(groups, lay.blob_size).T)
            for i in range(per_byte):
                np.right_shift(body_bytes, lay.bits * i, out=flipped[i])
                if i < per_byte - 1:
                    flipped[i] &= mask
            sums = group_sums(flipped.reshape(lay.block_size, groups), body_scale.reshape(1, -1),
                              body_zero.reshape(1, -1), rows=False, bits=lay.bits)
            result = sums.moments(body_scale)
        if tail:  # the last block is padded past K: codes i, i + per_byte, … below ``tail`` only
            last: GroupSums | None = None
            plane = np.empty((rows, lay.blob_size), np.uint8)
            for i in range(per_byte):
                np.right_shift(blocks[:, full], lay.bits * i, out=plane)
                if i < per_byte - 1:
                    plane &= mask
                kept = (tail - i + per_byte - 1) // per_byte
                if kept > 0:
                    sums = group_sums(plane[:, :kept], tail_scale, tail_zero, rows=True, bits=lay.bits,
                                      shift=None if last is None else last.shift)
                    last = sums if last is None else _added(last, sums)
            if last is not None:
                result = result.merge(last.moments(tail_scale))
        return result


def compiled_moments(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray, columns: bool,
                     packed4: bool = False) -> Moments | None:
    """Moments of ``scale·(codes - zero)`` per row (or column) of ``codes`` in one compiled pass
    (``accel.grouped_power_sums``), or None when the accelerator is not there."""
    if not accel.ready():
        return None
    acc = MomentAccumulator()
    count = codes.size * (2 if packed4 else 1)
    if not acc.add_power_sums(count, lambda shift: accel.grouped_power_sums(codes, scale, zero, shift, columns,
                                                                              packed4)):
        return None
    return acc.moments()


def _scratch_codes(size: int, key: str = "codes", dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """One reused flat work array of integer codes, per ``key``."""
    held = _SCRATCH.get(key)
    if held is None or held[0].size < size or held[0].dtype != dtype:
        held = _SCRATCH[key] = [np.empty(size, dtype)]
    return held[0][:size]


def _added(total: GroupSums, more: GroupSums) -> GroupSums:
    total.add(more)
    return total


def plan_kernel(task: MeasureTask) -> Kernel | None:
    """The exact fast kernel for a task, or None when the general path must read it."""
    source = task.source
    if source.payload is None or source.count == 0:
        return None
    if task.decoder is not None:
        from initaudit.read.nbits import NBitsDecoder

        decoder = task.decoder
        if (isinstance(decoder, NBitsDecoder) and source.data_type == TensorProto.UINT8
                and decoder.layout.row_bytes <= MAX_GROUP_ROW):
            return NBitsKernel("nbits", decoder.layout.row_bytes, decoder)
        return None
    if task.dequant is None:
        if source.data_type in HALF_TYPES:
            if accel.ready() and not task.parts:  # one pass beats the histogram's
                return CompiledHalfKernel("compiled-half", 1, source.data_type == TensorProto.BFLOAT16)
            return HistogramKernel("half", 1, half_table(source.data_type))
        return None
    if source.data_type not in CODE_TYPES or task.parts:
        return None
    return _dequant_kernel(source, task.dequant)


def _dequant_kernel(source: TensorSource, dq: Dequant) -> Kernel | None:
    scale = np.asarray(dq.scale)
    if scale.dtype.kind != "f" or not np.all(np.isfinite(scale)):
        return None
    if scale.dtype != np.float64 or bool(np.all(scale.astype(np.float32) == scale)):
        scale = scale.astype(np.float32)
    zero = np.zeros(scale.shape, np.int64) if dq.zero_point is None else np.asarray(dq.zero_point)
    if zero.dtype.kind not in "iu":
        return None
    zero = zero.astype(np.int64)
    nbytes, signed = CODE_TYPES[source.data_type]
    bits = 8 * nbytes
    code_bits = 4 if source.per_byte == 2 else bits
    low = -(1 << (code_bits - 1)) if signed else 0
    if zero.size and (zero.min() < low or zero.max() >= low + (1 << code_bits)):
        code_bits = 16  # a zero point outside the codes' range: |q - z| is not bounded by the width

    if dq.axis is None:
        if zero.size != 1:
            return None
        return HistogramKernel("table", source.per_byte, code_table(bits, signed, float(scale), float(zero.ravel()[0])))
    shape = source.shape
    axis = dq.axis
    if dq.block_size:
        if axis != len(shape) - 1 or scale.ndim != len(shape):
            return None
        length = shape[-1]
        if length > MAX_GROUP_ROW:
            return None
        return BlockedKernel("blocked", _lcm(length, source.per_byte), scale.reshape(-1, scale.shape[-1]),
                             zero.reshape(-1, scale.shape[-1]), length, dq.block_size, code_bits)
    inner = math.prod(shape[axis + 1:])
    channels = shape[axis]
    if scale.size != channels or zero.size != channels:
        return None
    period = channels if inner == 1 else inner
    if period > MAX_GROUP_ROW:
        return None
    return AxisKernel("axis", _lcm(period, source.per_byte), scale.ravel(), zero.ravel(), inner, code_bits)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def measure_with_kernel(kernel: Kernel, task: MeasureTask, chunk: int, start: int, stop: int,
                        sink: ChunkSink | None = None) -> Moments:
    """Moments of elements ``[start, stop)`` (whole multiples of the kernel's granularity); each chunk
    also goes to ``sink``, whose one-pass sums stand in for the kernel's where it took them."""
    source = task.source
    if isinstance(kernel, HistogramKernel):
        counts: np.ndarray | None = None
        for codes in fed(raw_chunks(source, chunk, start, stop), sink, start):
            hist = kernel.histogram(codes)
            counts = hist if counts is None else counts + hist
        return kernel.finish(counts) if counts is not None else Moments()
    if isinstance(kernel, CompiledHalfKernel):
        acc = MomentAccumulator()
        kind = "bfloat16" if kernel.bfloat16 else None
        for codes in raw_chunks(source, chunk, start, stop, mapped=True):
            fused = sink.add_codes(codes, start) if sink is not None else None
            start += codes.size
            if not add_fused(acc, fused, codes if kernel.bfloat16 else codes.view(np.float16), kind):
                kernel.add(acc, codes)
        return acc.moments()
    if isinstance(kernel, AxisKernel) and kernel.inner == 1 and not accel.ready():  # the same columns every chunk
        assert kernel.scale is not None and kernel.zero is not None
        total: GroupSums | None = None
        for codes in fed(raw_chunks(source, chunk, start, stop), sink, start):
            total = column_sums(codes.reshape(-1, kernel.scale.size), kernel.scale, kernel.zero, kernel.bits, total)
        return total.moments(kernel.scale) if total is not None else Moments()
    result = Moments()
    at = start
    for codes in raw_chunks(source, chunk, start, stop, mapped=accel.ready()):
        fused = sink.add_codes(codes, at) if sink is not None else None
        count = codes.size * (2 if isinstance(kernel, NBitsKernel) and kernel.decoder is not None
                              and kernel.decoder.layout.bits == 4 else 1)
        moments = about_zero(count, fused) if fused is not None and count else None
        result = result.merge(moments if moments is not None else kernel.chunk_moments(codes, at))
        at += codes.size
    return result
