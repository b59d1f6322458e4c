"""Evaluate the small constant cones that compute shapes, indices and sizes at run time.

Exports made without constant folding (``torch.onnx.export(..., do_constant_folding=False)``,
Keras 3 on the torch backend) feed a Reshape's target, a Slice's bounds or a Split's
sizes from a few nodes over constants: ``Concat(Unsqueeze(Constant), Gather(Shape(w), i))``.
Every value needed is in the file; this module computes it, with numpy, for the ops such
cones use, and gives up (None) on anything else, on anything that depends on a run-time
value, and on any tensor of more than ``MAX_ELEMENTS`` values.  It never raises.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from onnx import NodeProto, TensorProto, helper

from initaudit.read.dtypes import ELEMENT_TYPES
from initaudit.read.graph import ModelGraph, Scope, attribute
from initaudit.read.tensors import LoadArray

#: The largest tensor the evaluator loads or produces (values).
MAX_ELEMENTS = 4096
#: How many nodes deep a cone may be.
MAX_DEPTH = 32

_CACHE: weakref.WeakKeyDictionary[ModelGraph, dict[tuple[int, str], np.ndarray | None]] = weakref.WeakKeyDictionary()


class _CannotFold(Exception):
    """The value depends on something this evaluator does not compute."""


def fold_value(graph: ModelGraph, scope: Scope, name: str, load: LoadArray) -> np.ndarray | None:
    """The value of ``name`` in ``scope`` when it is computable from constants, else None."""
    cache = _CACHE.setdefault(graph, {})
    try:
        return _Folder(graph, load, cache).value(scope, name, 0)
    except (_CannotFold, ValueError, TypeError, IndexError, KeyError, ArithmeticError, OverflowError,
            MemoryError, RecursionError):
        return None


def _small(array: np.ndarray) -> np.ndarray:
    if array.size > MAX_ELEMENTS:
        raise _CannotFold(f"{array.size} values")
    return array


def _ints(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.ravel(array)]


class _Folder:
    def __init__(self, graph: ModelGraph, load: LoadArray, cache: dict[tuple[int, str], np.ndarray | None]) -> None:
        self.graph, self.load, self.cache = graph, load, cache

    def value(self, scope: Scope, name: str, depth: int) -> np.ndarray:
        if depth > MAX_DEPTH or not name:
            raise _CannotFold(name)
        key = (id(scope), name)
        if key in self.cache:
            cached = self.cache[key]
            if cached is None:
                raise _CannotFold(name)
            return cached
        self.cache[key] = None  # also breaks a cycle through this name
        result = _small(np.asarray(self._compute(scope, name, depth)))
        self.cache[key] = result
        return result

    def _compute(self, scope: Scope, name: str, depth: int) -> np.ndarray:
        found = self.graph.resolve(scope, name)
        if found.kind == "initializer" and found.tensor is not None:
            if int(np.prod(found.tensor.dims, dtype=np.int64)) > MAX_ELEMENTS:
                raise _CannotFold(name)
            return self.load(found.tensor)
        if found.kind != "node" or found.node is None or found.node.domain not in ("", "ai.onnx"):
            raise _CannotFold(name)
        node = found.node
        rule = _OPS.get(node.op_type)
        if rule is None or found.index != 0:
            raise _CannotFold(node.op_type)
        if node.op_type == "Shape":
            return _shape_op(node, self.shape_of(found.scope, node.input[0], depth + 1))
        inputs = [None if not x else self.value(found.scope, x, depth + 1) for x in node.input]
        return rule(node, inputs)

    def shape_of(self, scope: Scope, name: str, depth: int) -> list[int]:
        """A tensor's static shape, without loading it: stored dims, a graph input's declared shape."""
        found = self.graph.resolve(scope, name)
        if found.kind == "initializer" and found.tensor is not None:
            return [int(d) for d in found.tensor.dims]
        if found.kind == "graph_input":
            shape = found.scope.input_shapes.get(name)
            if shape is None:
                raise _CannotFold(name)
            return list(shape)
        if found.kind == "node" and found.node is not None:
            node = found.node
            if node.op_type == "Constant" and found.node.domain in ("", "ai.onnx"):
                return list(_constant(node, []).shape)
            if node.op_type in ("Identity", "Cast", "CastLike") and node.input and found.index == 0:
                return self.shape_of(found.scope, node.input[0], depth + 1)
        return list(self.value(scope, name, depth).shape)


def _shape_op(node: NodeProto, shape: list[int]) -> np.ndarray:
    rank = len(shape)
    start, end = int(attribute(node, "start", 0)), attribute(node, "end")
    start = min(max(start + rank if start < 0 else start, 0), rank)
    stop = rank if end is None else int(end)
    stop = min(max(stop + rank if stop < 0 else stop, 0), rank)
    return np.array(shape[start:stop], np.int64)


def _constant(node: NodeProto, _: list) -> np.ndarray:
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value" and attr.type == attr.TENSOR:
            if int(np.prod(attr.t.dims, dtype=np.int64)) > MAX_ELEMENTS or attr.t.data_location == TensorProto.EXTERNAL:
                raise _CannotFold("large constant")
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
            value = helper.get_attribute_value(attr)
            dtype = np.int64 if "int" in attr.name else np.float32
            return np.array(value, dtype)
    raise _CannotFold("Constant without a numeric value")


def _need(inputs: list, count: int) -> list[np.ndarray]:
    if len(inputs) < count or any(x is None for x in inputs[:count]):
        raise _CannotFold("missing input")
    return inputs[:count]


def _axes(node: NodeProto, inputs: list, slot: int) -> list[int] | None:
    if len(inputs) > slot and inputs[slot] is not None:
        return _ints(inputs[slot])
    value = attribute(node, "axes")
    return None if value is None else [int(a) for a in value]


def _unsqueeze(node: NodeProto, inputs: list) -> np.ndarray:
    (data,) = _need(inputs, 1)
    axes = _axes(node, inputs, 1)
    if not axes:
        raise _CannotFold("Unsqueeze without axes")
    rank = data.ndim + len(axes)
    normalized = sorted(a + rank if a < 0 else a for a in axes)
    if len(set(normalized)) != len(normalized) or normalized[0] < 0 or normalized[-1] >= rank:
        raise _CannotFold("bad axes")
    for axis in normalized:
        data = np.expand_dims(data, axis)
    return data


def _squeeze(node: NodeProto, inputs: list) -> np.ndarray:
    (data,) = _need(inputs, 1)
    axes = _axes(node, inputs, 1)
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(a + data.ndim if a < 0 else a for a in axes))


def _concat(node: NodeProto, inputs: list) -> np.ndarray:
    parts = _need(inputs, len(inputs))
    if not parts:
        raise _CannotFold("empty Concat")
    return np.concatenate(parts, axis=int(attribute(node, "axis", 0)))


def _gather(node: NodeProto, inputs: list) -> np.ndarray:
    data, indices = _need(inputs, 2)
    axis = int(attribute(node, "axis", 0))
    axis = axis + data.ndim if axis < 0 else axis
    size = data.shape[axis]
    indices = indices.astype(np.int64)
    if np.any((indices < -size) | (indices >= size)):
        raise _CannotFold("index out of range")
    return np.take(data, np.where(indices < 0, indices + size, indices), axis=axis)


def _slice(node: NodeProto, inputs: list) -> np.ndarray:
    data = _need(inputs, 1)[0]
    if len(inputs) >= 3:
        starts, ends = _ints(_need(inputs, 3)[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:  # opset < 10: attributes
        starts, ends = list(attribute(node, "starts", [])), list(attribute(node, "ends", []))
        axes = list(attribute(node, "axes", range(len(starts))))
        steps = [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)) or 0 in steps:
        raise _CannotFold("bad Slice")
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        # numpy clamps out-of-range bounds exactly as ONNX does (INT64_MAX/MIN stand for "to the end")
        index[axis + data.ndim if axis < 0 else axis] = slice(start, end, step)
    return data[tuple(index)]


def _cast(node: NodeProto, inputs: list) -> np.ndarray:
    (data,) = _need(inputs, 1)
    element = ELEMENT_TYPES.get(int(attribute(node, "to", 0)))
    dtype = element.numpy if element is not None else None
    if dtype is None:  # a type numpy has no dtype for (bfloat16, float8, packed)
        raise _CannotFold("Cast to an unsupported type")
    return data.astype(dtype)


def _cast_like(node: NodeProto, inputs: list) -> np.ndarray:
    data, like = _need(inputs, 2)
    return data.astype(like.dtype)


def _binary(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[NodeProto, list], np.ndarray]:
    def apply(node: NodeProto, inputs: list) -> np.ndarray:
        a, b = _need(inputs, 2)
        with np.errstate(all="raise"):
            return np.asarray(function(a, b)).astype(np.result_type(a, b))
    return apply


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        if np.any(b == 0):
            raise _CannotFold("division by zero")
        return np.trunc(a / b)  # ONNX integer Div truncates toward zero
    return a / b


def _mod(node: NodeProto, inputs: list) -> np.ndarray:
    a, b = _need(inputs, 2)
    if np.any(b == 0):
        raise _CannotFold("modulo by zero")
    if int(attribute(node, "fmod", 0)):
        return np.fmod(a, b).astype(np.result_type(a, b))
    return np.mod(a, b).astype(np.result_type(a, b))


def _range(node: NodeProto, inputs: list) -> np.ndarray:
    start, limit, delta = (x.reshape(()) for x in _need(inputs, 3))
    if delta == 0:
        raise _CannotFold("Range with delta 0")
    count = max(int(np.ceil((limit - start) / delta)), 0)
    if count > MAX_ELEMENTS:
        raise _CannotFold("Range too long")
    return (start + delta * np.arange(count)).astype(np.result_type(start, limit, delta))


def _reshape(node: NodeProto, inputs: list) -> np.ndarray:
    data, shape = _need(inputs, 2)
    target = _ints(shape)
    if not int(attribute(node, "allowzero", 0)):
        target = [data.shape[i] if d == 0 and i < data.ndim else d for i, d in enumerate(target)]
    return data.reshape(target)


def _size(node: NodeProto, inputs: list) -> np.ndarray:
    (data,) = _need(inputs, 1)
    return np.array(data.size, np.int64)


def _constant_of_shape(node: NodeProto, inputs: list) -> np.ndarray:
    (shape,) = _need(inputs, 1)
    dims = _ints(shape)
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.int64)) > MAX_ELEMENTS:
        raise _CannotFold("ConstantOfShape too large")
    value = attribute(node, "value")
    from onnx import numpy_helper

    fill = numpy_helper.to_array(value).ravel() if isinstance(value, TensorProto) else np.zeros(1, np.float32)
    return np.full(dims, fill[0] if fill.size else 0, fill.dtype)


_OPS: dict[str, Callable[[NodeProto, list], np.ndarray]] = {
    "Constant": _constant,
    "Shape": _constant,  # handled in _Folder._compute (needs only the input's shape)
    "Size": _size,
    "Identity": lambda node, inputs: _need(inputs, 1)[0],
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Gather": _gather,
    "Slice": _slice,
    "Cast": _cast,
    "CastLike": _cast_like,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_divide),
    "Mod": _mod,
    "Neg": lambda node, inputs: np.negative(_need(inputs, 1)[0]),
    "Range": _range,
    "Reshape": _reshape,
    "ConstantOfShape": _constant_of_shape,
}
