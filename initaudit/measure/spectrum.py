"""The largest singular value of a weight matrix, for the never-trained test's spectral evidence.

A fresh i.i.d. draw has no singular value above the Marchenko–Pastur bulk edge
σ(√r + √c); training adds low-rank structure on top of the init, which shows as a
singular value out of the bulk long before the units' norms or the value distribution
move.  Only layers that every other test calls fresh are measured (a handful in a
trained model), so the cost is a partial read of those layers, never a pass over the
model: a layer of at most ``MAX_VALUES`` values is read whole; a larger one is tested on
its first rows (with every column), which is itself an i.i.d. matrix when the layer is a
fresh draw.  The value comes from Lanczos iterations on the Gram matrix of the smaller
side, which approach it from below: a fresh layer is never pushed over the edge by the
estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from initaudit.measure.streaming import task_values
from initaudit.read.tensors import CHUNK_ELEMS
from initaudit.trace.plan import MeasureTask, Planned

#: Layers up to this many values are tested whole; larger ones on a block of their first rows.
MAX_VALUES = 1 << 19
#: A block holds at least this many rows (when the layer has them), whatever the row length.
MIN_ROWS = 8
#: Lanczos steps: the largest eigenvalue of the Gram matrix converges geometrically when it stands
#: out of the bulk, and to within ~0.5 % of the bulk edge when nothing does.
LANCZOS_STEPS = 32
#: A smaller side up to this size: the Gram matrix is formed and its top eigenvalue taken exactly (one
#: matrix product beats 32 matrix-vector passes there).
EXACT_SIDE = 256


@dataclass(frozen=True)
class Spectrum:
    """The largest singular value of the tested block and what it is compared with."""

    rows: int          # the block tested: rows × cols of the matricized weight
    cols: int
    top: float         # its largest singular value (a lower bound, tight to < 1 %)
    rms: float         # √(mean w²) of the block's values


def matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int] | None:
    """The weight as a matrix (rows, cols), cut after its first unit axis (``O`` or ``I``).

    Conv W[O, I/g, k…] → (O, I/g·k); MatMul W[I, O] → (I, O); Keras HWIO → (H·W·I, O); LSTM
    W[D, 4H, I] → (D·4H, I).  Any cut of an i.i.d. tensor is an i.i.d. matrix; this one keeps the
    units of one side on the rows, where training's structure shows.
    """
    if len(shape) < 2 or len(layout) != len(shape) or math.prod(shape) == 0:
        return None
    cut = next((i + 1 for i, letter in enumerate(layout) if letter in "OI"), None)
    if cut is None or cut == len(shape):
        cut = len(shape) - 1
    rows, cols = math.prod(shape[:cut]), math.prod(shape[cut:])
    return (rows, cols) if rows >= 2 and cols >= 2 else None


def top_singular_value(matrix: np.ndarray, steps: int = LANCZOS_STEPS, seed: int = 0) -> float:
    """Largest singular value of ``matrix`` from the Gram matrix of its smaller side: exactly when that
    side is at most ``EXACT_SIDE``, else by Lanczos (full reorthogonalization; a lower bound that only
    grows with the steps)."""
    a = np.asarray(matrix, np.float64)
    gram_side = a if a.shape[0] <= a.shape[1] else a.T      # G = gram_side · gram_sideᵀ, the smaller one
    size = gram_side.shape[0]
    if size <= EXACT_SIDE:
        return math.sqrt(max(float(np.linalg.eigvalsh(gram_side @ gram_side.T)[-1]), 0.0))
    steps = max(1, min(steps, size))
    basis = np.zeros((steps, size))
    start = np.random.default_rng(seed).standard_normal(size)
    v = np.asarray(start / np.linalg.norm(start))
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        basis[j] = v
        w = gram_side @ (gram_side.T @ v)
        alpha = float(v @ w)
        alphas.append(alpha)
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)     # full reorthogonalization (twice is enough)
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        if j == steps - 1 or beta <= 1e-12 * max(abs(alpha), 1e-300):
            break
        betas.append(beta)
        v = np.asarray(w / beta)
    tridiagonal = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    top = float(np.linalg.eigvalsh(tridiagonal)[-1])
    return math.sqrt(max(top, 0.0))


def layer_spectrum(task: MeasureTask, shape: tuple[int, int], max_values: int = MAX_VALUES) -> Spectrum | None:
    """The spectrum test's block of a weight read as ``shape`` (rows, cols): whole, or its first rows."""
    rows, cols = shape
    take = min(rows, max(MIN_ROWS, max_values // cols))
    if take < 2:
        return None
    stop = take * cols
    pieces = []
    with np.errstate(all="ignore"):
        for _, values in task_values(task, min(CHUNK_ELEMS, stop), 0, stop):
            pieces.append(np.asarray(values, np.float64).ravel())
    block = np.concatenate(pieces)[:stop].reshape(take, cols) if pieces else np.zeros((0, cols))
    if block.shape[0] != take or not np.isfinite(block).all():
        return None
    rms = math.sqrt(float(np.mean(block * block)))
    if not rms > 0:
        return None
    return Spectrum(take, cols, top_singular_value(block), rms)


def planned_spectrum(p: Planned) -> Spectrum | None:
    """The spectrum test of a planned weight, as its primary use lays it out (None without one, and for
    packed blocks, whose stored shape is not the matrix's)."""
    if p.primary is None or p.task.decoder is not None:
        return None
    shape = matrix_shape(tuple(p.source.shape), p.primary.layout)
    return None if shape is None else layer_spectrum(p.task, shape)
