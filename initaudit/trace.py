"""From a weight slot back to the stored tensor, and forward again to its shape.

Tracing walks backwards from each weight input of a weight-carrying node through
nodes that keep the values (Identity, Cast), move axes (Transpose, Reshape,
Flatten, Squeeze, Unsqueeze) or dequantize (DequantizeLinear), across scopes
(outer-scope names in control-flow bodies, formal inputs of functions), until it
reaches an initializer or a Constant node.  ``follow`` then replays those steps
on the stored shape to learn the consumed shape, which stored axis each consumed
axis came from, and how to dequantize.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from onnx import NodeProto, TensorProto

from .graph import ModelGraph, Scope, attribute
from .ops import IMPLICIT_DEQUANT, _canonical_domain, weight_slots

LoadArray = Callable[[TensorProto], np.ndarray]

VALUE_PRESERVING = {"Identity", "Cast", "CastLike"}
AXIS_MOVING = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
PASS_THROUGH = VALUE_PRESERVING | AXIS_MOVING | {"DequantizeLinear"}


@dataclass(frozen=True)
class SourceRef:
    """A stored tensor: an initializer, or the value of a Constant node."""

    scope: str
    name: str
    tensor: TensorProto
    kind: str  # initializer | constant

    @property
    def key(self) -> tuple[str, str]:
        return (self.scope, self.name)


@dataclass(frozen=True)
class Step:
    node: NodeProto
    scope: Scope


@dataclass(frozen=True)
class WeightUse:
    source: SourceRef
    steps: tuple[Step, ...]   # in data-flow order, source first
    consumer: NodeProto
    scope: Scope
    slot: int


def constant_tensor(node: NodeProto) -> TensorProto | None:
    """The tensor a Constant node holds, when it holds one in ``value``."""
    value = attribute(node, "value")
    return value if isinstance(value, TensorProto) else None


def trace(graph: ModelGraph, scope: Scope, name: str, steps: tuple[Step, ...] = (),
          depth: int = 0) -> Iterator[tuple[SourceRef, tuple[Step, ...]]]:
    """Every stored tensor that ``name`` is, through pass-through nodes."""
    if depth > 64 or not name:
        return
    found = graph.resolve(scope, name)
    if found.kind == "initializer":
        yield SourceRef(found.scope.path, name, found.tensor, "initializer"), steps
    elif found.kind == "node":
        node = found.node
        if node.op_type == "Constant" and _canonical_domain(node.domain) == "":
            tensor = constant_tensor(node)
            if tensor is not None:
                yield SourceRef(found.scope.path, name, tensor, "constant"), steps
        elif node.op_type in PASS_THROUGH and found.index == 0 and node.input:
            yield from trace(graph, found.scope, node.input[0], (Step(node, found.scope), *steps), depth + 1)
    elif found.kind == "formal":
        for caller, call in found.scope.call_sites:
            if found.index < len(call.input):
                yield from trace(graph, caller, call.input[found.index], steps, depth + 1)


def find_uses(graph: ModelGraph) -> list[WeightUse]:
    """Every (stored tensor, consumer, slot) where a weight-carrying op reads a constant."""
    uses = []
    for scope in graph.scopes:
        for node in scope.nodes:
            slots = weight_slots(node.domain, node.op_type)
            for slot in slots:
                if slot < len(node.input):
                    for source, steps in trace(graph, scope, node.input[slot]):
                        uses.append(WeightUse(source, steps, node, scope, slot))
    return uses


def constant_value(graph: ModelGraph, scope: Scope, name: str, load: LoadArray) -> np.ndarray | None:
    """The value of a small constant input (shape, axes, scale), or None if computed at run time."""
    for source, steps in trace(graph, scope, name):
        if all(step.node.op_type in VALUE_PRESERVING for step in steps):
            return load(source.tensor)
    return None


@dataclass(frozen=True)
class Dequant:
    """``(q - zero_point) * scale``; per-axis or blocked along a stored axis."""

    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int | None       # stored axis of a 1-D (or blocked) scale; None for a scalar
    block_size: int = 0


@dataclass(frozen=True)
class Followed:
    shape: tuple[int, ...]               # as the consumer receives it
    axis_map: tuple[int | None, ...]     # consumed axis → stored axis (None: merged or split)
    dequant: Dequant | None
    problems: tuple[str, ...]            # steps whose effect on axes or values is unknown

    @property
    def followable(self) -> bool:
        return not self.problems


def follow(graph: ModelGraph, use: WeightUse, stored_shape: tuple[int, ...], load: LoadArray) -> Followed:
    """Replay the traced steps on the stored shape."""
    shape = list(stored_shape)
    axes: list[int | None] = list(range(len(shape)))
    dequant: Dequant | None = None
    problems: list[str] = []
    for step in use.steps:
        node, op = step.node, step.node.op_type
        if op in VALUE_PRESERVING:
            continue
        if op == "DequantizeLinear":
            dequant, problem = _dequant(graph, step, shape, axes, load)
            if problem:
                problems.append(problem)
            continue
        new_shape = _moved_shape(graph, step, shape, load)
        if new_shape is None:
            problems.append(f"{op} {node.name!r} has a shape computed at run time")
            return Followed(tuple(shape), tuple(axes), dequant, tuple(problems))
        if op == "Transpose":
            perm = attribute(node, "perm") or list(reversed(range(len(shape))))
            axes = [axes[p] for p in perm]
        else:
            axes = _reshaped_axes(shape, new_shape, axes)
        shape = new_shape
    implicit = IMPLICIT_DEQUANT.get((_canonical_domain(use.consumer.domain), use.consumer.op_type), {})
    if use.slot in implicit and dequant is None:
        dequant, problem = _implicit_dequant(graph, use, implicit[use.slot], shape, axes, load)
        if problem:
            problems.append(problem)
    return Followed(tuple(shape), tuple(axes), dequant, tuple(problems))


def _moved_shape(graph: ModelGraph, step: Step, shape: list[int], load: LoadArray) -> list[int] | None:
    node, op = step.node, step.node.op_type
    rank = len(shape)
    if op == "Transpose":
        perm = attribute(node, "perm") or list(reversed(range(rank)))
        return [shape[p] for p in perm] if sorted(perm) == list(range(rank)) else None
    if op == "Flatten":
        axis = int(attribute(node, "axis", 1)) % (rank + 1) if rank else 0
        return [math.prod(shape[:axis]), math.prod(shape[axis:])]
    if op == "Reshape":
        target = constant_value(graph, step.scope, node.input[1], load) if len(node.input) > 1 else None
        if target is None:
            return None
        return _reshape_target(shape, [int(v) for v in np.ravel(target)], bool(attribute(node, "allowzero", 0)))
    axes_value = attribute(node, "axes")
    if axes_value is None and len(node.input) > 1 and node.input[1]:
        found = constant_value(graph, step.scope, node.input[1], load)
        if found is None:
            return None
        axes_value = [int(v) for v in np.ravel(found)]
    if op == "Squeeze":
        drop = {a % rank for a in axes_value} if axes_value else {i for i, d in enumerate(shape) if d == 1}
        return [d for i, d in enumerate(shape) if i not in drop]
    if op == "Unsqueeze":
        out_rank = rank + len(axes_value or [])
        insert = {a % out_rank for a in axes_value or []}
        dims = iter(shape)
        return [1 if i in insert else next(dims) for i in range(out_rank)]
    return None


def _reshape_target(shape: list[int], target: list[int], allowzero: bool) -> list[int] | None:
    out = [shape[i] if d == 0 and not allowzero and i < len(shape) else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        return None
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or math.prod(shape) % known:
            return None
        out[out.index(-1)] = math.prod(shape) // known
    return out if math.prod(out) == math.prod(shape) else None


def _reshaped_axes(old: list[int], new: list[int], axes: list[int | None]) -> list[int | None]:
    """Axis origins through a reshape: kept where only size-1 axes come or go."""
    kept_old = [(d, a) for d, a in zip(old, axes) if d != 1]
    kept_new = [d for d in new if d != 1]
    if [d for d, _ in kept_old] != kept_new:
        return [None] * len(new)
    origins = iter(a for _, a in kept_old)
    return [None if d == 1 else next(origins) for d in new]


def _stored_axis(axis: int, shape: list[int], axes: list[int | None]) -> int | None:
    return axes[axis % len(shape)] if shape else None


def _dequant(graph: ModelGraph, step: Step, shape: list[int], axes: list[int | None],
             load: LoadArray) -> tuple[Dequant | None, str | None]:
    node = step.node
    scale = constant_value(graph, step.scope, node.input[1], load) if len(node.input) > 1 else None
    if scale is None:
        return None, f"DequantizeLinear {node.name!r} has a scale computed at run time"
    zero = None
    if len(node.input) > 2 and node.input[2]:
        zero = constant_value(graph, step.scope, node.input[2], load)
    block = int(attribute(node, "block_size", 0))
    axis = int(attribute(node, "axis", 1))
    return _make_dequant(scale, zero, axis, block, shape, axes, f"DequantizeLinear {node.name!r}")


def _implicit_dequant(graph: ModelGraph, use: WeightUse, slots: tuple[int | None, int | None, int],
                      shape: list[int], axes: list[int | None], load: LoadArray) -> tuple[Dequant | None, str | None]:
    scale_slot, zero_slot, axis = slots
    node = use.consumer

    def value(slot: int | None) -> np.ndarray | None:
        if slot is None or slot >= len(node.input) or not node.input[slot]:
            return None
        return constant_value(graph, use.scope, node.input[slot], load)

    scale = value(scale_slot)
    zero = value(zero_slot)
    if scale_slot is not None and scale is None:
        return None, f"{node.op_type} {node.name!r} has a weight scale computed at run time"
    if scale is None:
        if zero is None:
            return None, None
        scale = np.ones(1, np.float32)  # the integer op carries no scale: values stay in integer units
    return _make_dequant(scale, zero, axis, 0, shape, axes, f"{node.op_type} {node.name!r}")


def _make_dequant(scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int, shape: list[int],
                  axes: list[int | None], where: str) -> tuple[Dequant | None, str | None]:
    scale = np.asarray(scale, np.float32)
    zero = None if zero is None else np.asarray(zero)
    if scale.size == 1 and (zero is None or zero.size == 1):
        return Dequant(scale.reshape(()), None if zero is None else zero.reshape(()), None), None
    if not shape:
        return None, f"{where}: per-axis scale on a scalar"
    stored = _stored_axis(axis, shape, axes)
    if stored is None or any(a is None for a in axes) or sorted(axes) != list(range(len(axes))):
        if block or scale.ndim > 1:
            return None, f"{where}: blocked quantization through a transposed or reshaped weight"
    if stored is None:
        return None, f"{where}: the quantization axis cannot be traced back to the stored tensor"
    if block:
        inverse = [axes.index(i) for i in range(len(axes))]  # stored axis → consumed axis
        return Dequant(np.transpose(scale, inverse), None if zero is None else np.transpose(zero, inverse),
                       stored, block), None
    return Dequant(scale.ravel(), None if zero is None else zero.ravel(), stored), None
