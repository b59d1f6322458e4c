"""Evaluate the small constant cones that compute shapes, indices and sizes at run time.

Exports made without constant folding (``torch.onnx.export(..., do_constant_folding=False)``,
Keras 3 on the torch backend) feed a Reshape's target, a Slice's bounds or a Split's
sizes from a few nodes over constants: ``Concat(Unsqueeze(Constant), Gather(Shape(w), i))``.
Every value needed is in the file; this module computes it, with numpy, for the ops such
cones use, and gives up (None) on anything else, on anything that depends on a run-time
value, and on any tensor of more than ``MAX_ELEMENTS`` values.  It never raises.

A weight can be computed from constants too: every Conv weight of the ``light_*`` models in the
onnx package's test data is a ``ConstantOfShape``, a few exporters write ``Expand`` or ``Tile``
of a small constant.  ``computed_value`` describes such a value by its definition (``Computed``)
and produces it chunk by chunk, in bounded memory whatever its size; ``computed_source`` gives
it to the measuring stage as a ``TensorSource`` like any stored tensor.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from onnx import NodeProto, TensorProto, helper

from initaudit.read.dtypes import ELEMENT_TYPES
from initaudit.read.graph import ModelGraph, Scope, attribute
from initaudit.read.tensors import CHUNK_ELEMS, LoadArray, TensorSource

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


def _expand(data: np.ndarray, shape: np.ndarray) -> np.ndarray:
    out = np.broadcast_shapes(data.shape, tuple(_ints(shape)))
    if math.prod(out) > MAX_ELEMENTS:
        raise _CannotFold("Expand too large")
    return np.broadcast_to(data, out).copy()


def _tile(data: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    reps = _ints(repeats)
    if len(reps) != data.ndim or any(r < 0 for r in reps) or data.size * math.prod(reps) > MAX_ELEMENTS:
        raise _CannotFold("bad or large Tile")
    return np.tile(data, reps)


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
    "Expand": lambda node, inputs: _expand(*_need(inputs, 2)),
    "Tile": lambda node, inputs: _tile(*_need(inputs, 2)),
}


# === weights computed from constants, produced chunk by chunk =======================================

#: The most values a computed weight may have (a 16 GiB float32 tensor): a larger one is not believed.
MAX_COMPUTED = 1 << 32
#: A computed value whose flat values repeat with a period of at most this many elements is produced
#: from one period (copied per chunk) rather than by index arithmetic per element.
PATTERN_MAX = 1 << 20

#: The element types a computed value may have: those whose raw bytes numpy writes as ONNX stores them.
_ONNX_TYPES: dict[np.dtype, int] = {np.dtype(t.numpy): code for code, t in ELEMENT_TYPES.items()
                                     if t.numpy is not None and t.numpy != "?"}


class Computed:
    """A value defined by a computation over small constants: its shape, its numpy dtype, and its
    values ``[start, stop)`` in C order, produced on demand (never the whole tensor at once)."""

    shape: tuple[int, ...]
    op: str  # the op that produces it (for messages)

    @property
    def dtype(self) -> np.dtype:
        raise NotImplementedError

    def values(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def data_type(self) -> int:
        return _ONNX_TYPES[self.dtype]


@dataclass(frozen=True, eq=False)
class Tiled(Computed):
    """``small`` repeated to ``shape``: the element at coordinates ``i`` is ``small[i mod small.shape]``
    (``small`` left-padded with axes of 1).  ConstantOfShape (a one-element ``small``), Expand (a
    broadcast repeats along the axes of length 1) and Tile all produce one; so does a small folded
    constant (``shape`` its own)."""

    small: np.ndarray
    shape: tuple[int, ...]
    op: str = "Constant"

    @property
    def dtype(self) -> np.dtype:
        return self.small.dtype

    @cached_property
    def _padded(self) -> tuple[int, ...]:
        return (1,) * (len(self.shape) - self.small.ndim) + tuple(self.small.shape)

    @cached_property
    def period(self) -> int:
        """The flat values repeat with this period: axes before the first one along which ``small``
        varies repeat everything after them."""
        padded = self._padded
        first = next((k for k, d in enumerate(padded) if d != 1), len(padded))
        if first == len(padded):
            return 1
        return padded[first] * math.prod(self.shape[first + 1:])

    def _gather(self, index: np.ndarray) -> np.ndarray:
        flat = self.small.reshape(-1)
        source = np.zeros(index.shape, np.int64)
        stride = 1
        rest = index
        for size, small in zip(reversed(self.shape), reversed(self._padded)):
            if small != 1:
                source += (rest % size) % small * stride
            rest = rest // size
            stride *= small
        return flat[source]

    @cached_property
    def _pattern(self) -> np.ndarray:
        return self._gather(np.arange(self.period, dtype=np.int64))

    @cached_property
    def _runs(self) -> tuple[int, Tiled]:
        """Axes after the last one along which ``small`` varies repeat each value: runs of this
        length of the values of the leading axes (an Expand of a column)."""
        padded = self._padded
        last = max(k for k, d in enumerate(padded) if d != 1)
        return math.prod(self.shape[last + 1:]), Tiled(self.small.reshape(padded[:last + 1]),
                                                       self.shape[:last + 1], self.op)

    def values(self, start: int, stop: int) -> np.ndarray:
        n = stop - start
        if self.small.size == 1 or n <= 0:
            return np.full(max(n, 0), self.small.reshape(-1)[0] if self.small.size else 0, self.dtype)
        run, leading = self._runs
        if run > 1:
            first, last = start // run, (stop - 1) // run
            counts = np.full(last - first + 1, run, np.int64)
            counts[0] -= start - first * run
            counts[-1] -= (last + 1) * run - stop
            return np.repeat(leading.values(first, last + 1), counts)
        if self.period <= PATTERN_MAX:
            offset = start % self.period
            return self._repeated(offset + n)[offset:offset + n].copy()
        return self._gather(np.arange(start, stop, dtype=np.int64))

    def _repeated(self, length: int) -> np.ndarray:
        """The pattern repeated to at least ``length`` values (kept: chunks are all of one size)."""
        held = self.__dict__.get("_held")
        if held is None or held.size < length:
            held = np.tile(self._pattern, -(-max(length, CHUNK_ELEMS + self.period) // self.period))
            self.__dict__["_held"] = held
        return held


#: Elementwise ops over computed values of one shape (the result cast to the node's type).
_ELEMENTWISE: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "Add": lambda x: np.add(x[0], x[1]),
    "Sub": lambda x: np.subtract(x[0], x[1]),
    "Mul": lambda x: np.multiply(x[0], x[1]),
    "Div": lambda x: np.divide(x[0], x[1]),
    "Neg": lambda x: np.negative(x[0]),
    "Identity": lambda x: x[0],
    "Cast": lambda x: x[0],
    "CastLike": lambda x: x[0],
}


@dataclass(frozen=True, eq=False)
class Elementwise(Computed):
    """An elementwise op over computed values (each broadcast to ``shape`` already)."""

    op: str
    inputs: tuple[Computed, ...]
    shape: tuple[int, ...]
    result: np.dtype

    @property
    def dtype(self) -> np.dtype:
        return self.result

    def values(self, start: int, stop: int) -> np.ndarray:
        with np.errstate(all="ignore"):  # float semantics: overflow is ±Inf, 0/0 NaN, counted as such
            out = _ELEMENTWISE[self.op]([x.values(start, stop) for x in self.inputs])
            return np.asarray(out).astype(self.result, copy=False)


def _tiled(small: np.ndarray, shape: tuple[int, ...], op: str) -> Tiled:
    if small.dtype not in _ONNX_TYPES:
        raise _CannotFold(f"values of type {small.dtype}")
    if len(shape) < small.ndim or any(d % s if s else d for d, s in zip(shape[len(shape) - small.ndim:], small.shape)):
        raise _CannotFold("not a repetition")
    if math.prod(shape) > MAX_COMPUTED:
        raise _CannotFold(f"{math.prod(shape)} values")
    return Tiled(np.ascontiguousarray(small), tuple(int(d) for d in shape), op)


def _broadcast(value: Computed, shape: tuple[int, ...]) -> Computed:
    """``value`` as an input of an elementwise op whose result has ``shape``."""
    if (1,) * (len(shape) - len(value.shape)) + tuple(value.shape) == shape:
        return value  # same values in the same order
    if isinstance(value, Tiled):
        return _tiled(value.small, shape, value.op)
    raise _CannotFold("a large computed value broadcast")


class _Definer:
    def __init__(self, graph: ModelGraph, load: LoadArray) -> None:
        self.graph, self.load = graph, load

    def small(self, scope: Scope, node: NodeProto, slot: int) -> np.ndarray:
        value = fold_value(self.graph, scope, node.input[slot], self.load) \
            if slot < len(node.input) and node.input[slot] else None
        if value is None:
            raise _CannotFold(f"input {slot} of {node.op_type}")
        return value

    def define(self, scope: Scope, name: str, depth: int) -> Computed:
        if depth > MAX_DEPTH or not name:
            raise _CannotFold(name)
        small = fold_value(self.graph, scope, name, self.load)
        if small is not None:
            return _tiled(small, small.shape, "Constant")
        found = self.graph.resolve(scope, name)
        node = found.node
        if found.kind != "node" or node is None or node.domain not in ("", "ai.onnx") or found.index != 0:
            raise _CannotFold(name)
        op, where = node.op_type, found.scope
        if op == "ConstantOfShape":
            dims = _ints(self.small(where, node, 0))
            if any(d < 0 for d in dims):
                raise _CannotFold("negative dimension")
            value = attribute(node, "value")
            from onnx import numpy_helper

            fill = numpy_helper.to_array(value).reshape(-1)[:1] if isinstance(value, TensorProto) else np.zeros(1, np.float32)
            if fill.size == 0:
                raise _CannotFold("ConstantOfShape without a value")
            return _tiled(fill.reshape((1,) * len(dims)), tuple(dims), op)
        if op == "Expand":
            data = self.small(where, node, 0)
            return _tiled(data, np.broadcast_shapes(data.shape, tuple(_ints(self.small(where, node, 1)))), op)
        if op == "Tile":
            data, reps = self.small(where, node, 0), _ints(self.small(where, node, 1))
            if len(reps) != data.ndim or any(r < 0 for r in reps):
                raise _CannotFold("bad Tile repeats")
            return _tiled(data, tuple(d * r for d, r in zip(data.shape, reps)), op)
        if op in _ELEMENTWISE:
            count = 1 if op in ("Neg", "Identity", "Cast") else 2
            inputs = [self.define(where, x, depth + 1) for x in node.input[:count]]
            if len(inputs) != count:
                raise _CannotFold(f"{op} without its inputs")
            if op == "Cast":
                element = ELEMENT_TYPES.get(int(attribute(node, "to", 0)))
                result = np.dtype(element.numpy) if element is not None and element.numpy else None
            elif op == "CastLike":
                result = inputs[1].dtype
            else:
                result = np.result_type(*(x.dtype for x in inputs))
            if result is None or result not in _ONNX_TYPES or (op == "Div" and result.kind != "f"):
                raise _CannotFold(f"{op} to an unsupported type")
            operands = inputs[:1] if op == "CastLike" else inputs
            shape = tuple(np.broadcast_shapes(*(x.shape for x in operands)))
            return Elementwise(op, tuple(_broadcast(x, shape) for x in operands), shape, result)
        raise _CannotFold(op)


def computed_value(graph: ModelGraph, scope: Scope, name: str, load: LoadArray) -> Computed | None:
    """``name``'s value when it is computed from small constants by ConstantOfShape, Expand, Tile and
    elementwise ops (Add, Sub, Mul, Div, Neg, Cast, CastLike, Identity), whatever its size; None
    otherwise (a run-time value, another op, a large stored operand, an element type numpy has not)."""
    found = graph.resolve(scope, name)
    if found.node is None or (found.node.op_type not in _OPS and found.node.op_type not in _ELEMENTWISE):
        return None  # an activation's producer, most often: nothing to fold or define
    try:
        return _Definer(graph, load).define(scope, name, 0)
    except (_CannotFold, ValueError, TypeError, IndexError, KeyError, ArithmeticError, OverflowError,
            MemoryError, RecursionError):
        return None


@dataclass(frozen=True)
class ComputedPayload:
    """The raw bytes of a computed value, elements ``[start, stop)``, produced chunk by chunk (a
    ``read.tensors.Payload``: the measuring stage reads it as it reads a file)."""

    value: Computed
    start: int = 0
    stop: int | None = None

    def sub(self, offset: int, length: int) -> ComputedPayload:
        size = self.value.dtype.itemsize
        return ComputedPayload(self.value, self.start + offset // size, self.start + (offset + length) // size)

    def iter_bytes(self, chunk_bytes: int, itemsize: int = 1, mapped: bool = False) -> Iterator[memoryview]:
        step = max(1, chunk_bytes // self.value.dtype.itemsize)
        stop = self.value.count if self.stop is None else self.stop
        for at in range(self.start, stop, step):
            chunk = np.ascontiguousarray(self.value.values(at, min(at + step, stop)), self.value.dtype)
            yield memoryview(chunk.tobytes())


def computed_source(value: Computed, name: str) -> TensorSource:
    """A computed value as the measuring stage reads tensors (``location`` "computed")."""
    return TensorSource(name, value.data_type, value.shape, ComputedPayload(value), None, "computed")
