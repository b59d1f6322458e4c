"""The statistics pass: dequantize chunk by chunk, accumulate the whole tensor's
moments and every part's, in this process or spread over worker processes."""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from onnx import TensorProto
from threadpoolctl import threadpool_limits

from initaudit.measure import accel
from initaudit.measure.kernels import (
    ChunkSink,
    HistogramKernel,
    Kernel,
    add_fused,
    fed,
    measure_with_kernel,
    plan_kernel,
    raw_chunks,
)
from initaudit.measure.stats import MomentAccumulator, Moments, TensorStats
from initaudit.read.tensors import CHUNK_ELEMS, FilePayload
from initaudit.trace.follow import Dequant
from initaudit.trace.ops import Part
from initaudit.trace.plan import MeasureTask

#: Below this many payload bytes in all, worker start-up costs more than it saves.
PARALLEL_MIN_BYTES = 64 << 20
#: From this many file-backed weight values in all, loading LLVM and compiling the one-pass kernels
#: (``accel``: ~0.07 s, then ~0.04 s per kernel) pays for itself.
ACCEL_MIN_VALUES = 128 << 20
#: Elements per task handed to a worker (a multiple of the chunk size).
PIECE_ELEMS = 256 * CHUNK_ELEMS


def dequantize(values: np.ndarray, start: int, dq: Dequant, shape: Sequence[int]) -> np.ndarray:
    """``(q - zero_point) * scale`` for elements ``[start, start + len)`` of a C-order tensor.

    In float64, where the product of a float32 scale and an integer is exact (the
    fast kernels compute the same values)."""
    q = values.astype(np.float64)
    if dq.axis is None:
        offset = 0.0 if dq.zero_point is None else float(dq.zero_point)
        return (q - offset) * float(dq.scale)
    if not dq.block_size:  # whole rows of channels, or whole runs of one channel: no index per value
        inner, channels = math.prod(shape[dq.axis + 1:]), shape[dq.axis]
        period = channels if inner == 1 else inner
        if start % period == 0 and values.size % period == 0 and np.size(dq.scale) == channels:
            where: slice | np.ndarray
            if inner == 1:
                grid, where = q.reshape(-1, channels), slice(None)
            else:
                grid = q.reshape(-1, inner)
                first = start // inner
                where = np.arange(first, first + grid.shape[0]) % channels
            scale = np.ravel(dq.scale)[where].astype(np.float64)
            zero = None if dq.zero_point is None else np.ravel(dq.zero_point)[where].astype(np.float64)
            if inner > 1:
                scale = scale[:, None]
                zero = None if zero is None else zero[:, None]
            return (grid * scale if zero is None else (grid - zero) * scale).reshape(-1)
    flat = np.arange(start, start + values.size, dtype=np.int64)
    index: tuple[np.ndarray, ...] | np.ndarray
    if dq.block_size:
        coordinates = list(np.unravel_index(flat, tuple(shape)))
        coordinates[dq.axis] //= dq.block_size
        index = tuple(coordinates)
    else:
        inner = math.prod(shape[dq.axis + 1:])
        index = (flat // inner) % shape[dq.axis]
    scale = dq.scale[index].astype(np.float64)
    if dq.zero_point is None:
        return q * scale
    return (q - dq.zero_point[index].astype(np.float64)) * scale


#: Elements per chunk for the histogram kernels: bincount's fixed costs (a 65,536-bin table) amortized.
HISTOGRAM_CHUNK = 4 * CHUNK_ELEMS


def chunk_size(task: MeasureTask, kernel: Kernel | None = None) -> int:
    """A chunk length that is a whole number of part rows (or decoder units) when they are short."""
    if isinstance(kernel, HistogramKernel):
        return HISTOGRAM_CHUNK - HISTOGRAM_CHUNK % task.source.per_byte
    block = max([p.block for p in task.parts] + [task.granularity, kernel.granularity if kernel else 1])
    if task.decoder is None and kernel is None and block >= CHUNK_ELEMS:
        return CHUNK_ELEMS
    return max(1, CHUNK_ELEMS // block) * block


def _part_values(chunk: np.ndarray, start: int, part: Part) -> Iterable[np.ndarray]:
    if start % part.block == 0 and chunk.size % part.block == 0:
        yield chunk.reshape(-1, part.block)[:, part.start:part.stop]
        return
    end = start + chunk.size
    for row in range(start // part.block, (end - 1) // part.block + 1):
        lo = max(row * part.block + part.start, start)
        hi = min(row * part.block + part.stop, end)
        if lo < hi:
            yield chunk[lo - start:hi - start]


class UnitSource(Protocol):
    """What the unit sums of one task take from the pass (``measure.units.UnitPlan``): a fresh ``sink``
    per range read; its ``result()`` is picklable, and the results of a task's ranges ``merge``."""

    def sink(self) -> Any: ...

    def kernels(self) -> set[str]: ...


def measure_range(task: MeasureTask, start: int = 0, stop: int | None = None,
                  sink: ChunkSink | None = None) -> tuple[Moments, list[Moments]]:
    """Moments of elements ``[start, stop)`` of the task's tensor, and of each part's share of them;
    every chunk read also goes to ``sink`` (the unit sums), in the same read."""
    with np.errstate(all="ignore"):  # NaN and Inf are counted, not warned about
        return _measure_range(task, start, stop, sink)


def _measure_range(task: MeasureTask, start: int, stop: int | None,
                   sink: ChunkSink | None = None) -> tuple[Moments, list[Moments]]:
    parts = task.parts
    stop = task.source.count if stop is None else stop
    kernel = plan_kernel(task)
    if kernel is not None:
        return _kernel_range(kernel, task, start, stop, sink)
    whole = MomentAccumulator()
    per_part = [MomentAccumulator() for _ in parts]
    for at, chunk in task_values(task, chunk_size(task), start, stop):
        fused = sink.add_values(chunk, at) if sink is not None else None
        if not add_fused(whole, fused, chunk):
            whole.add(chunk)
        for part, acc in zip(parts, per_part):
            for values in _part_values(chunk, at, part):
                acc.add(values)
    return whole.moments(), [acc.moments() for acc in per_part]


def task_values(task: MeasureTask, chunk: int, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(position, values)`` of elements ``[start, stop)`` as measured: decoded or dequantized, chunk by chunk."""
    at = start
    # the compiled kernel reads float32 in one pass: from the page cache directly, not from a copy
    mapped = accel.ready() and task.source.data_type == TensorProto.FLOAT and task.decoder is None \
        and task.dequant is None
    for values in task.source.iter_values(chunk, start, stop, mapped):
        size = values.size
        if task.decoder is not None:
            values = task.decoder(values, at)
        elif task.dequant is not None:
            values = dequantize(values, at, task.dequant, task.source.shape)
        yield at, values
        at += size


def _kernel_range(kernel: Kernel, task: MeasureTask, start: int, stop: int,
                  sink: ChunkSink | None = None) -> tuple[Moments, list[Moments]]:
    chunk = chunk_size(task, kernel)
    if not task.parts:
        return measure_with_kernel(kernel, task, chunk, start, stop, sink), []
    assert isinstance(kernel, HistogramKernel)  # only the raw-pattern histogram is cut into parts
    empty = np.zeros(0, np.int64)
    whole, counts = empty, [empty for _ in task.parts]
    at = start
    for codes in fed(raw_chunks(task.source, chunk, start, stop), sink, start):
        hist = kernel.histogram(codes)
        whole = hist if whole.size == 0 else whole + hist
        for i, part in enumerate(task.parts):
            for values in _part_values(codes, at, part):
                hist = kernel.histogram(values)
                counts[i] = hist if counts[i].size == 0 else counts[i] + hist
        at += codes.size
    return (kernel.finish(whole) if whole.size else Moments(),
            [kernel.finish(c) if c.size else Moments() for c in counts])


def _stats(whole: Moments, parts: list[Moments]) -> tuple[TensorStats, list[TensorStats]]:
    return whole.stats(), [m.stats() for m in parts]


def _pieces(task: MeasureTask) -> list[tuple[int, int]]:
    count = task.source.count
    if not isinstance(task.source.payload, FilePayload) or count <= PIECE_ELEMS:
        return [(0, count)]
    chunk = chunk_size(task, plan_kernel(task))
    step = max(chunk, PIECE_ELEMS - PIECE_ELEMS % chunk)
    step -= step % task.source.per_byte
    return [(s, min(s + step, count)) for s in range(0, count, step)]


def _run_piece(args: tuple[int, int, int]) -> tuple[int, Moments, list[Moments], Any]:
    index, start, stop = args
    source = _WORKER_UNITS[index] if _WORKER_UNITS else None
    sink = source.sink() if source is not None else None
    whole, parts = measure_range(_WORKER_TASKS[index], start, stop, sink)
    return index, whole, parts, sink.result() if sink is not None else None


_WORKER_TASKS: list[MeasureTask] = []
_WORKER_UNITS: list[UnitSource | None] = []


def single_blas_thread() -> threadpool_limits:
    """One BLAS thread: as a context around an audit (``audit_model``), and called as a worker
    initializer, for the worker's life.  The dot products are too short for BLAS threads to pay
    (a 256×256 Gram matrix took 20 ms instead of 1 on a busy machine), and with worker processes
    they fight over the cores; a forked child's OpenBLAS does not keep the parent's limit, and its
    idle threads spun on the cores the other workers need (measured: 4 models of 256 MiB took
    0.3 s more CPU over two workers).  The command's entry point sets the same limit before
    numpy loads (``cli.entry``)."""
    return threadpool_limits(limits=1, user_api="blas")


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure_all(tasks: Sequence[MeasureTask], jobs: int = 1) -> list[tuple[TensorStats, list[TensorStats]]]:
    """Statistics of every task; large file-backed models are spread over ``jobs`` forked processes."""
    return measure_pass(tasks, jobs)[0]


def measure_pass(tasks: Sequence[MeasureTask], jobs: int = 1, units: Sequence[UnitSource | None] | None = None
                 ) -> tuple[list[tuple[TensorStats, list[TensorStats]]], list[Any]]:
    """``measure_all``, and for each task with a unit source the merged result of its sinks (None for the
    others, an empty list without ``units``): the unit sums come from the same read, in the same workers."""
    sources: list[UnitSource | None] = list(units) if units is not None else [None] * len(tasks)
    if sum(_file_values(t) for t in tasks) >= ACCEL_MIN_VALUES and accel.prepare():
        # before the workers fork: they inherit LLVM loaded, and the unit kernels compiled once
        accel.compile_now({name for source in sources if source is not None for name in source.kernels()})
    parallel = jobs > 1 and sum(_nbytes(t) for t in tasks) >= PARALLEL_MIN_BYTES
    if parallel:
        import multiprocessing  # only for large models: start-up time counts for small ones

        parallel = "fork" in multiprocessing.get_all_start_methods()
    if not parallel:
        measured, results = [], []
        for task, source in zip(tasks, sources):
            sink = source.sink() if source is not None else None
            measured.append(_stats(*measure_range(task, sink=sink)))
            results.append(sink.result() if sink is not None else None)
        return measured, results if units is not None else []
    from concurrent.futures import ProcessPoolExecutor

    global _WORKER_TASKS, _WORKER_UNITS
    _WORKER_TASKS = list(tasks)  # inherited by the forked workers: nothing is pickled but indices
    _WORKER_UNITS = sources if units is not None else []
    work = [(i, s, e) for i, task in enumerate(tasks) for s, e in _pieces(task)]
    work.sort(key=lambda w: w[2] - w[1], reverse=True)  # largest first: even finish
    merged: list[tuple[Moments, list[Moments]]] = [(Moments(), [Moments() for _ in t.parts]) for t in tasks]
    merged_units: list[Any] = [None] * len(tasks)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=single_blas_thread) as pool:
            for index, whole, parts, part in pool.map(_run_piece, work, chunksize=1):
                acc_whole, acc_parts = merged[index]
                merged[index] = (acc_whole.merge(whole), [a.merge(b) for a, b in zip(acc_parts, parts)])
                if part is not None:
                    merged_units[index] = part if merged_units[index] is None else merged_units[index].merge(part)
    finally:
        _WORKER_TASKS, _WORKER_UNITS = [], []
    return [_stats(whole, parts) for whole, parts in merged], merged_units if units is not None else []


def _file_values(task: MeasureTask) -> int:
    """Weight values a task reads from a file (a MatMulNBits byte holds 8 / bits of them)."""
    if not isinstance(task.source.payload, FilePayload):
        return 0
    layout = getattr(task.decoder, "layout", None)
    return task.source.count * (8 // layout.bits if layout is not None else 1)


def _nbytes(task: MeasureTask) -> int:
    """Bytes a task reads from a file (in-memory tensors are not worth a worker)."""
    payload = task.source.payload
    return payload.length if isinstance(payload, FilePayload) else 0
