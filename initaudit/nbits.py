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


def unpack_planar(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 bytes [..., B] → codes [..., 8/bits · B] grouped by position in the byte: first every
    byte's lowest code, then every byte's next one.  Contiguous passes (``unpack_codes``'s
    interleaving runs an inner loop of 2); the order within a row is a fixed permutation,
    ``planar_position``."""
    if bits == 8:
        return packed
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    out = np.empty((*packed.shape[:-1], per_byte, packed.shape[-1]), np.uint8)
    for i in range(per_byte):
        np.right_shift(packed, bits * i, out=out[..., i, :])
        if i < per_byte - 1:
            out[..., i, :] &= mask
    return out.reshape(*packed.shape[:-1], -1)


def planar_position(positions: np.ndarray, bits: int, row_bytes: int) -> np.ndarray:
    """Where code ``p`` of a row (``row_bytes`` bytes, low bits first) lands in ``unpack_planar``'s row."""
    per_byte = 8 // bits
    return (positions % per_byte) * row_bytes + positions // per_byte


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint8 bytes → codes, low bits first (2, 4 or 8 bits each)."""
    if bits == 8:
        return packed
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    return ((packed[..., None] >> shifts) & ((1 << bits) - 1)).reshape(*packed.shape[:-1], -1)


@dataclass(frozen=True)
class NBitsDecoder:
    """Turns whole rows of B (as raw bytes, starting at byte ``start``) into float weights.

    Scales and zero points are kept as stored (packed zero points stay packed) and
    expanded a few rows at a time, so memory does not grow with the weight.
    """

    layout: NBitsLayout
    scales: np.ndarray                 # [N, k_blocks], as stored (float32 or float16)
    zero_points: np.ndarray | None     # packed uint8 [N, ceil(k_blocks·bits/8)], float [N, k_blocks], or None

    def rows(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Scales (float32, or float64 if stored so) and zero points (integer codes, or floats) of
        rows ``[first, first + count)``, each [count, k_blocks]."""
        lay = self.layout
        scale = self.scales[first:first + count]
        scale = scale.astype(np.float32 if scale.dtype.itemsize <= 4 else np.float64)
        if self.zero_points is None:
            zero = np.full(scale.shape, 2 ** (lay.bits - 1), np.int16)
        elif self.zero_points.dtype == np.uint8:
            zero = unpack_codes(self.zero_points[first:first + count], lay.bits)[:, :lay.k_blocks]
        else:
            zero = self.zero_points[first:first + count].astype(np.float64)
        return scale, zero

    def finite(self) -> bool:
        """Every scale and zero point is a finite number (the exact kernels need that)."""
        zero_ok = self.zero_points is None or self.zero_points.dtype == np.uint8 or bool(
            np.all(np.isfinite(self.zero_points)))
        return bool(np.all(np.isfinite(self.scales))) and zero_ok

    def __call__(self, raw: np.ndarray, start: int) -> np.ndarray:
        lay = self.layout
        first = start // lay.row_bytes
        rows = raw.size // lay.row_bytes
        codes = unpack_codes(raw.reshape(rows, lay.k_blocks, lay.blob_size), lay.bits).astype(np.float64)
        scale, zero = self.rows(first, rows)
        return ((codes - zero[:, :, None]) * scale[:, :, None].astype(np.float64)).reshape(rows, -1)[:, :lay.k]


def make_decoder(layout: NBitsLayout, scales: np.ndarray, zero_points: np.ndarray | None) -> NBitsDecoder:
    """Raises ValueError when the scales or zero points do not fit the layout."""
    shape = (layout.n, layout.k_blocks)
    scales = np.asarray(scales)
    if scales.dtype.kind != "f":
        scales = scales.astype(np.float32)
    if scales.size != layout.n * layout.k_blocks:
        raise ValueError(f"scales of size {scales.size}, expected {layout.n}×{layout.k_blocks}")
    if zero_points is None:
        return NBitsDecoder(layout, scales.reshape(shape), None)
    if zero_points.dtype == np.uint8:  # packed codes; zero points of the scales' type are unpacked
        per_row = math.ceil(layout.k_blocks * layout.bits / 8)
        if zero_points.size != layout.n * per_row:
            raise ValueError(f"packed zero points of size {zero_points.size}, expected {layout.n}×{per_row}")
        return NBitsDecoder(layout, scales.reshape(shape), zero_points.reshape(layout.n, per_row))
    zeros = np.asarray(zero_points)
    if zeros.size != layout.n * layout.k_blocks:
        raise ValueError(f"zero points of size {zeros.size}, expected {layout.n}×{layout.k_blocks}")
    if zeros.dtype.kind != "f":
        zeros = zeros.astype(np.float32)
    return NBitsDecoder(layout, scales.reshape(shape), zeros.reshape(shape))
