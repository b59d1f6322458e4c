"""One streaming pass over a tensor: dequantize chunk by chunk, accumulate the
whole tensor's statistics and every part's."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .ops import Part
from .stats import MomentAccumulator, TensorStats
from .tensors import CHUNK_ELEMS, TensorSource
from .trace import Dequant


def dequantize(values: np.ndarray, start: int, dq: Dequant, shape: Sequence[int]) -> np.ndarray:
    """``(q - zero_point) * scale`` for elements ``[start, start + len)`` of a C-order tensor."""
    q = values.astype(np.float32)
    if dq.axis is None:
        zero = 0.0 if dq.zero_point is None else np.float32(dq.zero_point)
        return (q - zero) * np.float32(dq.scale)
    flat = np.arange(start, start + values.size, dtype=np.int64)
    if dq.block_size:
        index = list(np.unravel_index(flat, tuple(shape)))
        index[dq.axis] //= dq.block_size
        index = tuple(index)
    else:
        inner = math.prod(shape[dq.axis + 1:])
        index = (flat // inner) % shape[dq.axis]
    zero = 0.0 if dq.zero_point is None else dq.zero_point[index].astype(np.float32)
    return (q - zero) * dq.scale[index]


def _chunk_size(parts: Sequence[Part]) -> int:
    """A chunk length that is a whole number of part rows when rows are short."""
    if not parts:
        return CHUNK_ELEMS
    block = max(p.block for p in parts)
    return CHUNK_ELEMS if block >= CHUNK_ELEMS else max(1, CHUNK_ELEMS // block) * block


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


def measure(source: TensorSource, dequant: Dequant | None = None,
            parts: Sequence[Part] = ()) -> tuple[TensorStats, list[TensorStats]]:
    whole = MomentAccumulator()
    per_part = [MomentAccumulator() for _ in parts]
    start = 0
    for chunk in source.iter_values(_chunk_size(parts)):
        if dequant is not None:
            chunk = dequantize(chunk, start, dequant, source.shape)
        whole.add(chunk)
        for part, acc in zip(parts, per_part):
            for values in _part_values(chunk, start, part):
                acc.add(values)
        start += chunk.size
    return whole.result(), [acc.result() for acc in per_part]
