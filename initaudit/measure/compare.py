"""The comparison pass of ``initaudit diff``: two weights read side by side, chunk by chunk, into the
sums their change is judged from (``PairSums``); per output unit too, so one crushed channel is not
averaged away.

Both weights are read as their consumer sees them (dequantized, decoded, fp16/bf16 as values), in the
same element order: the stored order when both store the same layout, otherwise each is put in its
consumer's canonical axis order: in memory up to ``TRANSPOSE_MAX_ELEMS`` values, and beyond that, when one
side is the other's 2-D transpose (MatMul's W[in, out] against Gemm's or MatMulNBits' [out, in]), one
stripe of ``STRIPE_BYTES`` at a time (the transposed side is read once per stripe).  A per-unit
multiplier applies a BatchNorm one side has folded and the other has not, or the weight scale an
integer op (ConvInteger, MatMulInteger) applies after the product.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from initaudit.measure.streaming import PARALLEL_MIN_BYTES, PIECE_ELEMS, chunk_size, task_values
from initaudit.measure.units import UnitAxes, aligned_chunk
from initaudit.read.tensors import FilePayload
from initaudit.trace.plan import MeasureTask

#: A weight stored in a different axis order on each side is transposed in memory: up to this many values
#: a side (two float64 copies: 64 MiB in all).
TRANSPOSE_MAX_ELEMS = 1 << 22
#: Bytes of the transposed side held at a time (float64) when a large pair is compared stripe by stripe.
STRIPE_BYTES = 16 << 20
#: The worst unit is sought among units holding at least this share of the median unit's ‖A‖² (a norm of
#: 0.01× the median): a near-dead unit rounded to zero changes little of what the layer computes.  Measured on
#: onnxruntime's quantizations of published models (scripts/survey_diff.py): the one near-dead unit flagged
#: had 0.0045× the median norm; the smallest really crushed one (5.6 quantization steps) 0.076×.
LIVE_UNIT_ENERGY = 1e-4
#: Values of each side read to tell apart the candidates of a positional match (``sample_correlation``).
SAMPLE_ELEMS = 1 << 16


@dataclass(frozen=True)
class Side:
    """One weight of a pair as the pass reads it: the task, and how to put it in the shared order."""

    task: MeasureTask
    shape: tuple[int, ...]                      # of the values the task yields, in their order
    order: tuple[int, ...] | None = None        # axes to transpose the values to (None: as they come)
    multiplier: np.ndarray | None = None        # per output unit of the shared order (a folded BatchNorm)
    count: int = 0                              # values the task yields (an NBits decoder's are not bytes)

    @property
    def values(self) -> int:
        return self.count or math.prod(self.shape)


@dataclass(frozen=True)
class Pair:
    """What to compare: A and B in one element order, and the output units of that order."""

    a: Side
    b: Side
    units: UnitAxes | None = None

    @property
    def lockstep(self) -> bool:
        """Read side by side as stored (any length)."""
        return self.a.order is None and self.b.order is None

    @property
    def striped(self) -> tuple[Side, Side, int, int] | None:
        """(the side stored as a [rows, cols] transpose of the shared order, the side stored in it, rows, cols)
        when the pair is compared stripe by stripe; None when it is read side by side or in memory."""
        if self.lockstep or self.a.values <= TRANSPOSE_MAX_ELEMS:
            return None
        for flipped, straight in ((self.a, self.b), (self.b, self.a)):
            if straight.order is not None and list(straight.order) != sorted(straight.order):
                continue
            split = swap_split(flipped.order or (), len(flipped.shape))
            if split is not None:
                rows = math.prod(flipped.shape[:split])
                return flipped, straight, rows, flipped.values // rows
        return None


def swap_split(order: Sequence[int], ndim: int) -> int | None:
    """k when ``order`` puts the last ndim − k axes before the first k (a 2-D transpose of grouped axes)."""
    for k in range(1, ndim):
        if list(order) == [*range(k, ndim), *range(k)]:
            return k
    return None


def comparable(pair: Pair) -> bool:
    """Whether the pass can compare it within the memory bound."""
    return pair.lockstep or pair.a.values <= TRANSPOSE_MAX_ELEMS or pair.striped is not None


@dataclass
class PairSums:
    """Co-moments of A and B (Chan's merge, so pieces combine exactly), ‖B − A‖², max |B − A|, and per
    output unit ‖A‖² and ‖B − A‖²."""

    n: int = 0
    mean_a: float = 0.0
    mean_b: float = 0.0
    m2_a: float = 0.0          # Σ (a − mean_a)²
    m2_b: float = 0.0
    c_ab: float = 0.0          # Σ (a − mean_a)(b − mean_b)
    sum_aa: float = 0.0        # Σ a²
    sum_dd: float = 0.0        # Σ (b − a)²
    max_abs: float = 0.0
    differing: int = 0         # positions where b ≠ a
    nonfinite: int = 0         # positions where a or b is NaN or ±Inf (left out of every sum)
    unit_aa: np.ndarray | None = field(default=None, repr=False)
    unit_dd: np.ndarray | None = field(default=None, repr=False)

    def add(self, a: np.ndarray, b: np.ndarray, at: int, units: UnitAxes | None) -> None:
        """Add the values ``a``, ``b`` of elements ``[at, at + len)`` (same length, same order).

        Dot products, not temporaries, wherever a sum allows (a chunk's co-moments from its raw sums,
        exact enough in float64 over one chunk; Chan's merge across chunks)."""
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.size == 0:
            return
        sum_a, sum_b = float(a.sum()), float(b.sum())
        if not math.isfinite(sum_a + sum_b):  # a NaN or ±Inf somewhere (or an overflowing sum): mask
            finite = np.isfinite(a) & np.isfinite(b)
            self.nonfinite += int(a.size - np.count_nonzero(finite))
            a, b = np.where(finite, a, 0.0), np.where(finite, b, 0.0)  # zero: adds nothing to any sum
            sum_a, sum_b = float(a.sum()), float(b.sum())
            n = int(np.count_nonzero(finite))
        else:
            n = a.size
        d = b - a
        sum_aa, sum_dd = float(a @ a), float(d @ d)
        self.sum_aa += sum_aa
        self.sum_dd += sum_dd
        self.max_abs = max(self.max_abs, float(d.max()), -float(d.min()))
        self.differing += int(np.count_nonzero(d))
        if units is not None:
            if self.unit_aa is None or self.unit_dd is None:
                self.unit_aa, self.unit_dd = np.zeros(units.units), np.zeros(units.units)
            self.unit_aa += unit_squares(a, at, units)
            self.unit_dd += unit_squares(d, at, units)
        if n:
            ma, mb = sum_a / n, sum_b / n
            self._merge_moments(n, ma, mb, max(0.0, sum_aa - sum_a * ma), max(0.0, float(b @ b) - sum_b * mb),
                                float(a @ b) - sum_a * mb)

    def _merge_moments(self, n: int, ma: float, mb: float, m2a: float, m2b: float, cab: float) -> None:
        total = self.n + n
        da, db = ma - self.mean_a, mb - self.mean_b
        w = self.n * n / total
        self.m2_a += m2a + da * da * w
        self.m2_b += m2b + db * db * w
        self.c_ab += cab + da * db * w
        self.mean_a += da * n / total
        self.mean_b += db * n / total
        self.n = total

    def merge(self, other: PairSums) -> PairSums:
        """This and ``other`` (disjoint ranges of one pair) as one."""
        out = PairSums(self.n, self.mean_a, self.mean_b, self.m2_a, self.m2_b, self.c_ab, self.sum_aa + other.sum_aa,
                       self.sum_dd + other.sum_dd, max(self.max_abs, other.max_abs),
                       self.differing + other.differing, self.nonfinite + other.nonfinite,
                       _added(self.unit_aa, other.unit_aa), _added(self.unit_dd, other.unit_dd))
        if other.n:
            out._merge_moments(other.n, other.mean_a, other.mean_b, other.m2_a, other.m2_b, other.c_ab)
        return out


def _added(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
    return y if x is None else x if y is None else x + y


def unit_totals(x: np.ndarray, at: int, units: UnitAxes) -> np.ndarray:
    """Σ x per output unit, for elements ``[at, at + len)`` of the shared order."""
    period = units.period
    if period is not None and at % period[1] == 0 and x.size % period[1] == 0:
        kind, n = period
        if kind == "row":  # runs of n values in one unit: a sum per run, then per unit
            starts = at + n * np.arange(x.size // n)
            return np.bincount(units.unit_of(starts), x.reshape(-1, n).sum(axis=1), minlength=units.units)
        if len(units.terms) == 1:  # rows of n values, one per unit
            return x.reshape(-1, n).sum(axis=0)
    return np.bincount(units.unit_of(np.arange(at, at + x.size)), x, minlength=units.units)


def unit_squares(x: np.ndarray, at: int, units: UnitAxes) -> np.ndarray:
    """Σ x² per output unit (``unit_totals`` of x², without the temporary where a run or row layout allows)."""
    period = units.period
    if period is not None and at % period[1] == 0 and x.size % period[1] == 0:
        kind, n = period
        grid = x.reshape(-1, n)
        if kind == "row":
            starts = at + n * np.arange(grid.shape[0])
            return np.bincount(units.unit_of(starts), np.einsum("ij,ij->i", grid, grid), minlength=units.units)
        if len(units.terms) == 1:
            return np.einsum("ij,ij->j", grid, grid)
    return unit_totals(x * x, at, units)


def unit_scaled(x: np.ndarray, at: int, units: UnitAxes, multiplier: np.ndarray) -> np.ndarray:
    """``x`` with each value multiplied by its output unit's entry of ``multiplier``."""
    period = units.period
    if period is not None and at % period[1] == 0 and x.size % period[1] == 0:
        kind, n = period
        if kind == "row":
            starts = at + n * np.arange(x.size // n)
            return (x.reshape(-1, n) * multiplier[units.unit_of(starts)][:, None]).reshape(-1)
        if len(units.terms) == 1:
            return (x.reshape(-1, n) * multiplier[None, :]).reshape(-1)
    return x * multiplier[units.unit_of(np.arange(at, at + x.size))]


def _windows(chunks: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[np.ndarray]:
    """The values of ``chunks`` re-cut into windows of exactly ``size`` (the last one shorter); a chunk
    already of that size passes through uncopied."""
    held: list[np.ndarray] = []
    count = 0
    for _, values in chunks:
        values = values.reshape(-1)  # a decoder yields whole rows as a grid
        if not held and values.size == size:
            yield values
            continue
        held.append(values)
        count += values.size
        while count >= size:
            joined = np.concatenate(held)
            yield joined[:size]
            rest = joined[size:]
            held, count = ([rest] if rest.size else []), rest.size
    if count:
        yield np.concatenate(held)


def _chunk(pair: Pair) -> int:
    chunk = max(chunk_size(pair.a.task), chunk_size(pair.b.task))
    return aligned_chunk(chunk, pair.units)


def compare_range(pair: Pair, start: int = 0, stop: int | None = None) -> PairSums:
    """The sums of elements ``[start, stop)`` (shared order) of a lockstep or striped pair, or of the whole of
    one transposed in memory."""
    sums = PairSums()
    with np.errstate(all="ignore"):
        striped = pair.striped
        if striped is not None:
            _compare_stripes(pair, striped, sums, start, pair.a.values if stop is None else stop)
            return sums
        if not pair.lockstep:
            a, b = _ordered(pair.a), _ordered(pair.b)
            a, b = _scaled(a, 0, pair.a, pair.units), _scaled(b, 0, pair.b, pair.units)
            sums.add(a, b, 0, pair.units)
            return sums
        stop = pair.a.values if stop is None else stop
        chunk = _chunk(pair)
        at = start
        for a, b in zip(_windows(_read(pair.a, chunk, start, stop), chunk),
                        _windows(_read(pair.b, chunk, start, stop), chunk)):
            sums.add(_scaled(a, at, pair.a, pair.units), _scaled(b, at, pair.b, pair.units), at, pair.units)
            at += a.size
    return sums


def _read(side: Side, chunk: int, start: int, stop: int, row: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Values ``[start, stop)`` of a side; a decoder's (MatMulNBits) from the stored bytes of the same rows
    of ``row`` values (whole, when no row is given: its pieces are never cut)."""
    if side.task.decoder is None:
        return task_values(side.task, chunk, start, stop)
    if row is None:
        return task_values(side.task, chunk)
    stored_row = side.task.source.count * row // side.values
    return task_values(side.task, chunk, start // row * stored_row, stop // row * stored_row)


def stripe_width(rows: int) -> int:
    """Shared-order rows (transposed columns) in one stripe."""
    return max(1, STRIPE_BYTES // (8 * rows))


def _compare_stripes(pair: Pair, striped: tuple[Side, Side, int, int], sums: PairSums, start: int, stop: int) -> None:
    """Shared-order rows ``[start // rows, stop // rows)`` (the shared order is the flipped side's [cols, rows]),
    one stripe at a time: the flipped side's columns of the stripe gathered in one read of it, the straight side
    read where the stripe lies."""
    flipped, straight, rows, cols = striped
    width = stripe_width(rows)
    chunk = max(cols, (_chunk(pair) // cols) * cols)
    for c0 in range(start // rows, -(-stop // rows), width):
        c1 = min(c0 + width, stop // rows if stop % rows == 0 else -(-stop // rows))
        stripe = np.empty((rows, c1 - c0))
        row = 0
        for values in _windows(task_values(flipped.task, chunk), chunk):
            grid = np.asarray(values, np.float64).reshape(-1, cols)
            stripe[row:row + grid.shape[0]] = grid[:, c0:c1]
            row += grid.shape[0]
        flat = stripe.T.reshape(-1)  # the stripe in the shared order: rows c0..c1 of [cols, rows]
        at = c0 * rows
        offset = 0
        for other in _windows(_read(straight, _chunk(pair), at, c1 * rows, rows), _chunk(pair)):
            mine = flat[offset:offset + other.size]
            a, b = (mine, other) if flipped is pair.a else (other, mine)
            sums.add(_scaled(a, at + offset, pair.a, pair.units), _scaled(b, at + offset, pair.b, pair.units),
                     at + offset, pair.units)
            offset += other.size


def _scaled(values: np.ndarray, at: int, side: Side, units: UnitAxes | None) -> np.ndarray:
    if side.multiplier is None or units is None:
        return values
    return unit_scaled(np.asarray(values, np.float64), at, units, side.multiplier)


def _ordered(side: Side) -> np.ndarray:
    """All of one side's values, in the shared order (a transposed pair: small tensors only)."""
    parts = [np.asarray(v, np.float64) for _, v in task_values(side.task, chunk_size(side.task))]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    grid = flat.reshape(side.shape)
    return (grid.transpose(side.order) if side.order is not None else grid).reshape(-1)


def sample_correlation(a: MeasureTask, b: MeasureTask, size: int = SAMPLE_ELEMS) -> float | None:
    """Pearson correlation of the first ``size`` values of each (stored order): enough to tell which
    of two same-shaped candidates holds the other's values; None when either is constant or empty."""
    with np.errstate(all="ignore"):
        x = _first(a, size)
        y = _first(b, size)
    n = min(x.size, y.size)
    if n < 2:
        return None
    x, y = x[:n] - x[:n].mean(), y[:n] - y[:n].mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 and math.isfinite(norm) else None


def _first(task: MeasureTask, size: int) -> np.ndarray:
    for _, values in task_values(task, chunk_size(task), 0, min(size, task.source.count) or None):
        values = np.asarray(values, np.float64)[:size]
        return np.where(np.isfinite(values), values, 0.0)
    return np.zeros(0)


def _pieces(pair: Pair) -> list[tuple[int, int]]:
    """Ranges a pair is cut into for the worker processes: whole stripes of a striped pair, chunks of a
    lockstep one (whole: transposed in memory, or in memory)."""
    count = pair.a.values
    striped = pair.striped
    if striped is not None:
        rows = striped[2]
        step = stripe_width(rows) * rows
        return [(s, min(s + step, count)) for s in range(0, count, step)]
    big = [s.task for s in (pair.a, pair.b) if isinstance(s.task.source.payload, FilePayload)]
    if not pair.lockstep or not big or count <= PIECE_ELEMS or any(
            s.task.decoder is not None or s.task.source.per_byte > 1 for s in (pair.a, pair.b)):
        return [(0, count)]
    chunk = _chunk(pair)
    step = max(chunk, PIECE_ELEMS - PIECE_ELEMS % chunk)
    return [(s, min(s + step, count)) for s in range(0, count, step)]


_WORKER_PAIRS: list[Pair] = []


def _run_piece(args: tuple[int, int, int]) -> tuple[int, PairSums]:
    index, start, stop = args
    return index, compare_range(_WORKER_PAIRS[index], start, stop)


def compare_all(pairs: Sequence[Pair], jobs: int = 1) -> list[PairSums]:
    """The sums of every pair; large file-backed ones spread over ``jobs`` forked processes."""
    nbytes = sum(s.task.source.payload.length for p in pairs for s in (p.a, p.b)
                 if isinstance(s.task.source.payload, FilePayload))
    parallel = jobs > 1 and nbytes >= PARALLEL_MIN_BYTES
    if parallel:
        import multiprocessing

        parallel = "fork" in multiprocessing.get_all_start_methods()
    if not parallel:
        return [compare_range(p) for p in pairs]
    from concurrent.futures import ProcessPoolExecutor

    from initaudit.measure.streaming import single_blas_thread

    global _WORKER_PAIRS
    _WORKER_PAIRS = list(pairs)  # inherited by the forked workers: only indices are pickled
    work = [(i, s, e) for i, p in enumerate(pairs) for s, e in _pieces(p)]
    work.sort(key=lambda w: w[2] - w[1], reverse=True)
    merged = [PairSums() for _ in pairs]
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=single_blas_thread) as pool:
            for index, sums in pool.map(_run_piece, work, chunksize=1):
                merged[index] = merged[index].merge(sums)
    finally:
        _WORKER_PAIRS = []
    return merged


@dataclass(frozen=True)
class Change:
    """What the sums say of B against A."""

    count: int
    identical: bool
    rel_change: float | None        # ‖B − A‖ / ‖A‖ (None: A is all zeros and B is not)
    correlation: float | None       # Pearson (None: either side constant)
    sqnr_db: float | None           # 10·log10(‖A‖² / ‖B − A‖²); None when identical (infinite)
    max_abs_diff: float
    worst_unit: int | None = None   # the output unit of lowest SQNR among the live ones (LIVE_UNIT_ENERGY; None:
    #                                 no unit axis, or none changed)
    worst_unit_sqnr_db: float | None = None
    units: int = 0
    nonfinite: int = 0


def change_of(sums: PairSums) -> Change:
    """The figures of a pair from its sums (a pure function: the judging reads these)."""
    identical = sums.differing == 0 and sums.nonfinite == 0
    rel = (math.sqrt(sums.sum_dd / sums.sum_aa) if sums.sum_aa > 0 else (0.0 if sums.sum_dd == 0 else None))
    denominator = math.sqrt(sums.m2_a * sums.m2_b)
    correlation = sums.c_ab / denominator if denominator > 0 else None
    if correlation is not None:
        correlation = max(-1.0, min(1.0, correlation))
    sqnr = _db(sums.sum_aa, sums.sum_dd)
    worst = worst_db = None
    units = 0
    if sums.unit_aa is not None and sums.unit_dd is not None:
        units = sums.unit_aa.size
        live = sums.unit_aa >= LIVE_UNIT_ENERGY * float(np.median(sums.unit_aa))
        changed = (sums.unit_dd > 0) & (sums.unit_aa > 0) & live
        if changed.any():
            ratio = np.where(changed, sums.unit_aa / np.where(changed, sums.unit_dd, 1.0), np.inf)
            worst = int(np.argmin(ratio))
            worst_db = _db(float(sums.unit_aa[worst]), float(sums.unit_dd[worst]))
    return Change(sums.n + sums.nonfinite, identical, rel, correlation, sqnr, sums.max_abs, worst, worst_db, units,
                  sums.nonfinite)


def _db(signal: float, noise: float) -> float | None:
    if noise <= 0:
        return None
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
