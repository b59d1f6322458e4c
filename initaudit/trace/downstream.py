"""What a layer's output meets next: the nonlinearity that sets its target, a pooling; and the scalar
its data input was multiplied by just before it.

Walks forward from a node's first output through ops that neither mix units nor
change the scheme a layer should follow (bias Add, BatchNormalization, reshapes,
casts, dropout), while the value has a single consumer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from onnx import NodeProto

from initaudit.read.graph import ModelGraph, Scope, attribute
from initaudit.trace.follow import as_ints, constant_value

TRANSPARENT = {
    "Add", "Sub", "BatchNormalization", "Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Dropout", "InstanceNormalization", "QuantizeLinear", "DequantizeLinear",
}
POOLS = {"MaxPool", "AveragePool"}
SHAPE_ONLY = {"Shape", "Size"}  # read a tensor's shape, not its values
ELEMENTWISE_ACTIVATIONS = {
    "Relu", "LeakyRelu", "PRelu", "Tanh", "Sigmoid", "Selu", "Elu", "Celu", "Gelu", "Clip", "Softplus",
    "Softsign", "HardSigmoid", "HardSwish", "Mish", "ThresholdedRelu",
}
MAX_STEPS = 12


@dataclass(frozen=True)
class Downstream:
    activation: str | None      # ONNX op type of the first nonlinearity, if any
    alpha: float | None         # its slope parameter (LeakyRelu alpha, PRelu slope)
    pool_area: int              # kernel area of a MaxPool/AveragePool met on the way (1 if none)


def follow_output(graph: ModelGraph, scope: Scope, node: NodeProto, load_scalar=None) -> Downstream:
    """The first nonlinearity after ``node``, and a pooling met before or just after it."""
    pool_area = 1
    activation: tuple[str, float | None] | None = None
    current = node
    for _ in range(MAX_STEPS):
        users = [u for u in scope.consumers.get(current.output[0], []) if u[0].op_type not in SHAPE_ONLY] \
            if current.output else []
        if len(users) != 1:
            break
        nxt = users[0][0]
        op = nxt.op_type
        if op in POOLS:
            pool_area = math.prod(attribute(nxt, "kernel_shape", [1]))
            break
        if op not in TRANSPARENT:
            if activation is not None:
                break  # a second nonlinearity: the walk is over
            activation = _activation(scope, nxt, load_scalar)
            if op not in ELEMENTWISE_ACTIVATIONS:
                break  # another layer: a pooling after it is not this layer's
        current = nxt
    if activation is None:
        return Downstream(None, None, pool_area)
    return Downstream(activation[0], activation[1], pool_area)


#: Ops between a scalar multiply and the layer that leave the multiplier as it is (a constant shift, reshapes).
INPUT_TRANSPARENT = {"Add", "Sub", "Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
                     "Dropout"}


def input_multiplier(scope: Scope, node: NodeProto, load_scalar) -> float:
    """The product of the stored scalars that ``node``'s data input (input 0) was multiplied (or divided)
    by on its way from the previous op: PP-HGNet's learnable affine block ``x·s + b`` before each conv,
    a ``Mul`` by a constant.  The layer's gain on the signal is its weights' gain times this."""
    factor = 1.0
    name = node.input[0] if node.input else ""
    for _ in range(MAX_STEPS):
        producer = scope.producers.get(name)
        if producer is None:
            break
        prev = producer[0]
        if prev.op_type in ("Mul", "Div") and len(prev.input) == 2:
            values = [load_scalar(scope, n) for n in prev.input]
            if prev.op_type == "Mul" and values[1] is not None:
                factor, name = factor * values[1], prev.input[0]
            elif prev.op_type == "Mul" and values[0] is not None:
                factor, name = factor * values[0], prev.input[1]
            elif prev.op_type == "Div" and values[1]:
                factor, name = factor / values[1], prev.input[0]
            else:
                break
        elif prev.op_type in INPUT_TRANSPARENT and prev.input:
            name = prev.input[0]
        else:
            break
    return factor


def _activation(scope: Scope, node: NodeProto, load_scalar) -> tuple[str, float | None]:
    op, alpha = node.op_type, None
    if op == "LeakyRelu":
        alpha = float(attribute(node, "alpha", 0.01))
    elif op == "PRelu":
        alpha = load_scalar(scope, node.input[1]) if load_scalar and len(node.input) > 1 else None
        alpha = 0.25 if alpha is None else alpha
    elif op == "Clip":  # Clip(0, 6) is ReLU6, He's gain applies; Clip(-1, 1) is a hard tanh
        low = attribute(node, "min")
        if low is None and len(node.input) > 1 and node.input[1] and load_scalar:
            low = load_scalar(scope, node.input[1])
        if low is not None and float(low) == 0.0:
            op = "Relu"
    return op, alpha


def _constant_1d(graph: ModelGraph, scope: Scope, name: str, load) -> list[int] | None:
    value = constant_value(graph, scope, name, load) if name else None
    return None if value is None or value.ndim > 1 else as_ints(value)


def _reshape_pieces(graph: ModelGraph, scope: Scope, node: NodeProto, load) -> list[int] | None:
    """Trailing constant dims of a Reshape target, also when it is a Concat of run-time and constant pieces."""
    if len(node.input) < 2:
        return None
    whole = _constant_1d(graph, scope, node.input[1], load)
    if whole is not None:
        return whole
    producer = scope.producers.get(node.input[1])
    if producer is None or producer[0].op_type != "Concat":
        return None
    constants = [_constant_1d(graph, scope, name, load) for name in producer[0].input]
    for piece in reversed(constants):  # the last constant piece with ≥ 2 dims (legacy MHA: [3, E])
        if piece is not None and len(piece) >= 2:
            return piece
    return None


def packed_parts(graph: ModelGraph, scope: Scope, node: NodeProto, n_out: int, load) -> int:
    """How many equal projections a MatMul/Gemm output packs (1 if none seen).

    Recognised: a Split into equal parts covering all ``n_out`` features, and a
    Reshape of the feature axis into ``[P, n_out/P]`` with P = 2 or 3 (packed
    k/v or q/k/v, as PyTorch's MultiheadAttention exports), after an optional bias Add.
    """
    current = node
    for _ in range(2):
        users = [u for u in scope.consumers.get(current.output[0], []) if u[0].op_type not in SHAPE_ONLY] \
            if current.output else []
        if len(users) != 1:
            return 1
        nxt = users[0][0]
        if nxt.op_type == "Add":
            current = nxt
            continue
        if nxt.op_type == "Split":
            sizes = attribute(nxt, "split") or (
                _constant_1d(graph, scope, nxt.input[1], load) if len(nxt.input) > 1 else None)
            count = len(nxt.output)
            if sizes and len(set(sizes)) == 1 and sum(sizes) == n_out and len(sizes) > 1:
                return len(sizes)
            if not sizes and count > 1 and n_out % count == 0:
                return count
            return 1
        if nxt.op_type == "Reshape":
            dims = _reshape_pieces(graph, scope, nxt, load)
            if dims and len(dims) >= 2 and dims[-2] in (2, 3) and dims[-2] * dims[-1] == n_out:
                return dims[-2]
            return 1
        return 1
    return 1




def _single_user(scope: Scope, name: str) -> NodeProto | None:
    users = [u for u in scope.consumers.get(name, []) if u[0].op_type not in SHAPE_ONLY]
    return users[0][0] if len(users) == 1 else None


#: What stands between a layer and its BatchNorm without changing what the BatchNorm scales: a bias, an
#: activation quantization (QDQ), casts.
BATCHNORM_TRANSPARENT = {"Add", "QuantizeLinear", "DequantizeLinear", "Cast", "Identity"}


def batchnorm_scale(graph: ModelGraph, scope: Scope, node: NodeProto, load) -> np.ndarray | None:
    """γ/√(var + ε) per channel of a BatchNormalization that ``node``'s output meets next (through a bias
    Add, an activation's QuantizeLinear → DequantizeLinear, and after ConvInteger / MatMulInteger the Cast
    and the Mul by the scales): what a BatchNorm folded into the layer multiplies its output units by; NaN
    when there is one whose γ or variance is not stored."""
    current = node
    scaled = node.op_type not in ("ConvInteger", "MatMulInteger")  # an integer op's output meets its scale Mul
    for _ in range(6):
        nxt = _single_user(scope, current.output[0]) if current.output else None
        if nxt is None:
            return None
        if nxt.op_type in BATCHNORM_TRANSPARENT or (nxt.op_type == "Mul" and not scaled):
            scaled = scaled or nxt.op_type == "Mul"
            current = nxt
            continue
        if nxt.op_type != "BatchNormalization" or len(nxt.input) < 5:
            return None
        gamma, var = (_stored_value(graph, scope, nxt.input[i], load) for i in (1, 4))
        if gamma is None or var is None or gamma.shape != var.shape:
            return np.full(1, np.nan)  # a BatchNorm whose scale is not stored: there, but not applicable
        epsilon = float(attribute(nxt, "epsilon", 1e-5))
        return gamma.ravel() / np.sqrt(var.ravel() + epsilon)
    return None


def _stored_value(graph: ModelGraph, scope: Scope, name: str, load) -> np.ndarray | None:
    """A constant in float64, also when a static quantization stored it quantized behind a DequantizeLinear
    (onnxruntime quantizes a BatchNorm's γ so)."""
    value = constant_value(graph, scope, name, load)
    if value is not None:
        return value.astype(np.float64)
    producer = scope.producers.get(name)
    if producer is None or producer[0].op_type != "DequantizeLinear" or len(producer[0].input) < 2:
        return None
    node = producer[0]
    q, scale = (constant_value(graph, scope, node.input[i], load) for i in (0, 1))
    zero = constant_value(graph, scope, node.input[2], load) if len(node.input) > 2 and node.input[2] else None
    if q is None or scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
        return None
    offset = 0.0 if zero is None else float(zero.ravel()[0])
    return (q.astype(np.float64) - offset) * float(scale.ravel()[0])


def integer_weight_scale(graph: ModelGraph, scope: Scope, node: NodeProto, load) -> np.ndarray | None:
    """The weight scale an integer op's output is multiplied by after the product (ConvInteger and
    MatMulInteger as onnxruntime's dynamic quantization writes them: ``Cast → Mul(·, x_scale · w_scale)``,
    the product of the activation's run-time scale and the stored weight scale): the stored factor."""
    current = node
    for _ in range(3):
        nxt = _single_user(scope, current.output[0]) if current.output else None
        if nxt is None:
            return None
        if nxt.op_type == "Cast":
            current = nxt
            continue
        if nxt.op_type != "Mul" or len(nxt.input) != 2:
            return None
        other = nxt.input[1] if nxt.input[0] == current.output[0] else nxt.input[0]
        value = constant_value(graph, scope, other, load)
        if value is not None:
            return value.astype(np.float64).ravel()
        producer = scope.producers.get(other)
        if producer is None or producer[0].op_type != "Mul":
            return None
        stored = [constant_value(graph, scope, name, load) for name in producer[0].input]
        found = [v for v in stored if v is not None]
        return found[0].astype(np.float64).ravel() if len(found) == 1 else None
    return None
