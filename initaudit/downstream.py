"""What a layer's output meets next: the nonlinearity that sets its target, a pooling.

Walks forward from a node's first output through ops that neither mix units nor
change the scheme a layer should follow (bias Add, BatchNormalization, reshapes,
casts, dropout), while the value has a single consumer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from onnx import NodeProto

from .graph import ModelGraph, Scope, attribute
from .schemes import calculate_gain

TRANSPARENT = {
    "Add", "Sub", "BatchNormalization", "Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Dropout", "InstanceNormalization", "QuantizeLinear", "DequantizeLinear",
}
POOLS = {"MaxPool", "AveragePool"}
MAX_STEPS = 12


@dataclass(frozen=True)
class Downstream:
    activation: str | None      # ONNX op type of the first nonlinearity, if any
    alpha: float | None         # its slope parameter (LeakyRelu alpha, PRelu slope)
    pool_area: int              # kernel area of a MaxPool/AveragePool met on the way (1 if none)


def follow_output(graph: ModelGraph, scope: Scope, node: NodeProto, load_scalar=None) -> Downstream:
    pool_area = 1
    current = node
    for _ in range(MAX_STEPS):
        if not current.output:
            break
        users = scope.consumers.get(current.output[0], [])
        if len(users) != 1:
            break
        nxt, _slot = users[0]
        op = nxt.op_type
        if op in POOLS and pool_area == 1:
            pool_area = math.prod(attribute(nxt, "kernel_shape", [1]))
            current = nxt
            continue
        if op in TRANSPARENT:
            current = nxt
            continue
        alpha = None
        if op == "LeakyRelu":
            alpha = float(attribute(nxt, "alpha", 0.01))
        elif op == "PRelu":
            alpha = load_scalar(scope, nxt.input[1]) if load_scalar and len(nxt.input) > 1 else None
            alpha = 0.25 if alpha is None else alpha
        elif op == "Clip":
            op = "Relu"  # Clip(0, 6) is ReLU6: He's gain applies
        return Downstream(op, alpha, pool_area)
    return Downstream(None, None, pool_area)


#: Nonlinearity → (target, nonlinearity name for torch's calculate_gain).
AUTO_TARGETS = {
    "Relu": ("he", "relu"),
    "LeakyRelu": ("he", "leaky_relu"),
    "PRelu": ("he", "leaky_relu"),
    "Tanh": ("xavier", "tanh"),
    "Sigmoid": ("xavier", "sigmoid"),
    "Selu": ("lecun", "linear"),
}


def auto_target(down: Downstream) -> tuple[str, float, str]:
    """(target, gain, reason) for ``--target auto``."""
    if down.activation in AUTO_TARGETS:
        target, nonlinearity = AUTO_TARGETS[down.activation]
        gain = calculate_gain(nonlinearity, down.alpha)
        detail = f"({nonlinearity}, gain {gain:.3g})" if down.alpha is None else f"(alpha {down.alpha:g}, gain {gain:.3g})"
        return target, gain, f"followed by {down.activation} {detail}"
    if down.activation is None:
        return "xavier", 1.0, "no nonlinearity follows"
    return "xavier", 1.0, f"followed by {down.activation}, which has no standard gain"
