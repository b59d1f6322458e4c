"""Synthetic trained-like weights (no framework, fixed seeds) for the trained-review tests.

What trained layers have and fresh draws cannot: output units whose norms differ by a
per-unit factor (BatchNorm γ/σ folded into a conv: a log-normal spread), input channels of
different importance, correlated rows (a low-rank component) and heavy tails (Student-t).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from modelkit import model, tensor
from onnx import helper


def trained_like(rng: np.random.Generator, shape: Sequence[int], out_axis: int = 0, in_axis: int = 1,
                 gain: float = 1.0, tail_df: float = 4.0) -> np.ndarray:
    """Weights of ``shape`` with structure along ``out_axis`` / ``in_axis``, rms·√fan_in ≈ ``gain``."""
    shape = tuple(shape)
    rows, cols = shape[out_axis], int(np.prod(shape)) // shape[out_axis]
    rank = max(1, min(rows, cols) // 8)
    low = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols)) / np.sqrt(rank)
    noise = rng.standard_t(tail_df, size=(rows, cols))
    matrix = 0.6 * low + noise
    matrix *= rng.lognormal(0.0, 0.6, size=(rows, 1))             # folded BatchNorm: per-unit scale
    moved = np.moveaxis(matrix.reshape((rows,) + tuple(d for i, d in enumerate(shape) if i != out_axis)), 0, out_axis)
    if in_axis is not None and shape[in_axis] > 1:
        scale_shape = [1] * len(shape)
        scale_shape[in_axis] = shape[in_axis]
        moved = moved * rng.lognormal(0.0, 0.4, size=scale_shape)  # inputs of different importance
    fan_in = int(np.prod(shape)) // shape[out_axis]
    moved = moved / np.sqrt(np.mean(moved ** 2)) * gain / np.sqrt(fan_in)
    return moved.astype(np.float32)


def conv_chain(weights: Sequence[np.ndarray]):
    """``x → Conv → Relu → Conv → Relu → …`` with the given OIHW weights (names w0, w1, …)."""
    nodes, inits = [], []
    current = "x"
    for i, w in enumerate(weights):
        nodes.append(helper.make_node("Conv", [current, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        out = "y" if i == len(weights) - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}"))
        inits.append(tensor(f"w{i}", w))
        current = out
    return model(nodes, inits)


def trained_convs(seed: int, layers: int = 8, channels: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    first = trained_like(rng, (channels, 3, 3, 3), gain=float(rng.uniform(0.8, 2.0)))
    rest = [trained_like(rng, (channels, channels, 3, 3), gain=float(rng.uniform(0.8, 2.0)))
            for _ in range(layers - 1)]
    return [first, *rest]
