"""A trained-like conv chain of any length with planted review defects, for the sign-off report tests.

Layer ``i`` (long, separator-rich names as exporters write them) is a trained-like 32×32×3×3 conv, except:

* ``i % 10 == 3``: a fresh Kaiming-uniform draw (PyTorch's default): never trained, IA401;
* ``i % 10 == 6``: 4 of its 32 output units zeroed (12.5 %): dead units, IA402 warn;
* ``i % 10 == 8``: 1 of 32 zeroed (3 %): IA402 info;
* ``i % 20 == 9``: 1000× the scale of its peers: IA403;
* ``i % 20 == 19``: one value 5000× the layer's rms: IA404.

So a 5-layer chain has one never-trained layer, 60 layers 6 of each kind at i % 10, 600 layers 60.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from modelkit import model, save, tensor
from onnx import helper
from trainedkit import trained_like

CHANNELS = 32


def layer_name(i: int) -> str:
    return f"backbone/stages.{i // 12}/blocks.{i % 12}/depthwise_separable_conv/pointwise_conv.weight"


def planted(i: int) -> str | None:
    """The defect planted in layer ``i`` (its rule code), or None."""
    if i % 10 == 3:
        return "IA401"
    if i % 10 in (6, 8):
        return "IA402"
    if i % 20 == 9:
        return "IA403"
    if i % 20 == 19:
        return "IA404"
    return None


def weights(i: int, rng: np.random.Generator) -> np.ndarray:
    shape = (CHANNELS, CHANNELS, 3, 3)
    code = planted(i)
    if code == "IA401":
        bound = 1.0 / math.sqrt(CHANNELS * 9)  # kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in))
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    w = trained_like(rng, shape, gain=float(rng.uniform(0.8, 2.0)))
    if code == "IA402":
        w[:4 if i % 10 == 6 else 1] = 0.0
    elif code == "IA403":
        w *= 1000.0
    elif code == "IA404":
        w.flat[17] = 5000.0 * float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    return w


def signoff_model(folder: Path, layers: int, seed: int = 20, name: str | None = None) -> Path:
    """``x → Conv → Relu → …`` of ``layers`` convs (defects above), saved under ``folder``."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for i in range(layers):
        weight = layer_name(i)
        nodes.append(helper.make_node("Conv", [current, weight], [f"c{i}"], name=f"/backbone/conv{i}/Conv",
                                      pads=[1, 1, 1, 1]))
        out = "y" if i == layers - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"/backbone/relu{i}/Relu"))
        inits.append(tensor(weight, weights(i, rng)))
        current = out
    return save(model(nodes, inits), folder, name or f"signoff_{layers}.onnx")
