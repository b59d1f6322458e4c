"""com.microsoft MatMulNBits: block-quantized weights decoded chunk by chunk (reference §8.7).

B is uint8 ``[N, k_blocks, blob_size]`` with ``blob_size = block_size·bits/8``: row n holds
the K input weights of output n, ``bits``-bit codes packed low bits first, padded to
whole blocks.  ``W[n, k] = (code - zero_point[n, b]) · scale[n, b]`` with ``b = k // block_size``;
zero points are packed codes ``[N, ceil(k_blocks·bits/8)]``, or unpacked floats
``[N, k_blocks]`` of the scales' type, or absent (then ``2^(bits-1)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from initaudit.read.tensors import TensorSource

Stored = np.ndarray | TensorSource  # an array in memory, or a tensor still in the file


@dataclass(frozen=True)
class NBitsLayout:
    n: int
    k: int
    bits: int
    block_size: int

    @property
    def k_blocks(self) -> int:
        return math.ceil(self.k / self.block_size)

    @property
    def blob_size(self) -> int:
        return self.block_size * self.bits // 8

    @property
    def row_bytes(self) -> int:
        return self.k_blocks * self.blob_size

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        return (self.n, self.k_blocks, self.blob_size)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 bytes → codes, low bits first (2, 4 or 8 bits each)."""
    if bits == 8:
        return packed
    per_byte = 8 // bits
    out = np.empty((*packed.shape, per_byte), np.uint8)
    for i in range(per_byte):  # one strided pass per position (a trailing axis of 2 or 4 is a slow loop)
        np.right_shift(packed, bits * i, out=out[..., i])
        if i < per_byte - 1:
            out[..., i] &= (1 << bits) - 1
    return out.reshape(*packed.shape[:-1], -1)


def _rows(stored: Stored, first: int, count: int, width: int) -> np.ndarray:
    """Rows ``[first, first + count)`` of a [N, width] tensor, read from the file if it is there."""
    if isinstance(stored, np.ndarray):
        return stored.reshape(-1, width)[first:first + count]
    start, stop = first * width, (first + count) * width
    parts = list(stored.iter_values(max(stop - start, 1), start, stop))
    return (np.concatenate(parts) if len(parts) != 1 else parts[0]).reshape(count, width)


def _dtype(stored: Stored) -> np.dtype:
    return stored.dtype if isinstance(stored, np.ndarray) else _rows(stored, 0, 1, 1).dtype


@dataclass(frozen=True)
class NBitsDecoder:
    """Turns whole rows of B (as raw bytes, starting at byte ``start``) into float weights.

    Scales and zero points stay where they are stored (a file, or memory; packed zero
    points stay packed) and are read a few rows at a time, so memory does not grow
    with the model.
    """

    layout: NBitsLayout
    scales: Stored                 # [N, k_blocks] float (float32, float16, bfloat16)
    zero_points: Stored | None     # packed uint8 [N, ceil(k_blocks·bits/8)], float [N, k_blocks], or None
    packed_zero_points: bool = False

    @property
    def zero_width(self) -> int:
        lay = self.layout
        return math.ceil(lay.k_blocks * lay.bits / 8) if self.packed_zero_points else lay.k_blocks

    def rows(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Scales (float32, or float64 if stored so) and zero points (integer codes, or floats) of
        rows ``[first, first + count)``, each [count, k_blocks]."""
        lay = self.layout
        scale = _rows(self.scales, first, count, lay.k_blocks)
        scale = scale.astype(np.float32 if scale.dtype.itemsize <= 4 else np.float64)
        if self.zero_points is None:
            zero = np.full(scale.shape, 2 ** (lay.bits - 1), np.int16)
        elif self.packed_zero_points:
            packed = _rows(self.zero_points, first, count, self.zero_width)
            zero = unpack_codes(packed, lay.bits)[:, :lay.k_blocks]
        else:
            zero = _rows(self.zero_points, first, count, lay.k_blocks).astype(np.float64)
        return scale, zero

    def __call__(self, raw: np.ndarray, start: int) -> np.ndarray:
        lay = self.layout
        first = start // lay.row_bytes
        rows = raw.size // lay.row_bytes
        codes = unpack_codes(raw.reshape(rows, lay.k_blocks, lay.blob_size), lay.bits).astype(np.float64)
        scale, zero = self.rows(first, rows)
        return ((codes - zero[:, :, None]) * scale[:, :, None].astype(np.float64)).reshape(rows, -1)[:, :lay.k]


def _size(stored: Stored) -> int:
    return stored.size if isinstance(stored, np.ndarray) else stored.count


def make_decoder(layout: NBitsLayout, scales: Stored, zero_points: Stored | None) -> NBitsDecoder:
    """Raises ValueError when the scales or zero points do not fit the layout."""
    if isinstance(scales, np.ndarray) and scales.dtype.kind != "f":
        scales = scales.astype(np.float32)
    elif not isinstance(scales, np.ndarray) and not scales.is_float:
        raise ValueError(f"scales of type {scales.dtype}, expected a float type")
    if _size(scales) != layout.n * layout.k_blocks:
        raise ValueError(f"scales of size {_size(scales)}, expected {layout.n}×{layout.k_blocks}")
    if zero_points is None:
        return NBitsDecoder(layout, scales, None)
    if _dtype(zero_points) == np.uint8:  # packed codes; zero points of the scales' type are unpacked
        per_row = math.ceil(layout.k_blocks * layout.bits / 8)
        if _size(zero_points) != layout.n * per_row:
            raise ValueError(f"packed zero points of size {_size(zero_points)}, expected {layout.n}×{per_row}")
        return NBitsDecoder(layout, scales, zero_points, packed_zero_points=True)
    if _size(zero_points) != layout.n * layout.k_blocks:
        raise ValueError(f"zero points of size {_size(zero_points)}, expected {layout.n}×{layout.k_blocks}")
    return NBitsDecoder(layout, scales, zero_points)
