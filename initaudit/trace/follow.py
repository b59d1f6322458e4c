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
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from onnx import NodeProto, TensorProto

from initaudit.read.fold import fold_value
from initaudit.read.graph import ModelGraph, Scope, attribute
from initaudit.read.tensors import LoadArray
from initaudit.trace.ops import canonical_domain, op_spec, weight_slots

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
          depth: int = 0, load: LoadArray | None = None) -> Iterator[tuple[SourceRef, tuple[Step, ...]]]:
    """Every stored tensor that ``name`` is, through pass-through nodes."""
    if depth > 64 or not name:
        return
    found = graph.resolve(scope, name)
    if found.kind == "initializer" and found.tensor is not None:
        yield SourceRef(found.scope.path, name, found.tensor, "initializer"), steps
    elif found.kind == "node" and found.node is not None:
        node = found.node
        if node.op_type == "Constant" and canonical_domain(node.domain) == "":
            tensor = constant_tensor(node)
            if tensor is not None:
                yield SourceRef(found.scope.path, name, tensor, "constant"), steps
        elif node.op_type in PASS_THROUGH and found.index == 0 and node.input:
            yield from trace(graph, found.scope, node.input[0], (Step(node, found.scope), *steps), depth + 1, load)
        elif node.op_type == "Concat" and load is not None:
            source = _reordered_source(graph, found.scope, node, load)
            if source is not None:
                yield from trace(graph, found.scope, source, (Step(node, found.scope), *steps), depth + 1, load)
    elif found.kind == "formal":
        for caller, call in found.scope.call_sites:
            if found.index < len(call.input):
                yield from trace(graph, caller, call.input[found.index], steps, depth + 1, load)


def _slice_range(graph: ModelGraph, scope: Scope, node: NodeProto, load: LoadArray) -> tuple[int, int, int] | None:
    """(axis, start, end) of a one-axis, step-1 Slice with constant bounds."""
    def const(i: int) -> list[int] | None:
        return as_ints(constant_input(graph, scope, node, i, load))
    starts, ends = const(1), const(2)
    axes, steps = const(3) or attribute(node, "axes") or [0], const(4) or [1]
    if starts is None:
        starts, ends = attribute(node, "starts"), attribute(node, "ends")
    if not starts or not ends or len(starts) != 1 or len(axes) != 1 or steps != [1]:
        return None
    return axes[0], starts[0], ends[0]


def _reordered_source(graph: ModelGraph, scope: Scope, node: NodeProto, load: LoadArray) -> str | None:
    """The tensor a Concat rebuilds from slices of itself (a gate reordering), if that is what it does.

    PyTorch's exporter, without constant folding, turns ``weight_ih`` into the ONNX
    gate order as Concat(Slice(w, i), Slice(w, o), …): same values, rows permuted.
    """
    pieces = []
    for name in node.input:
        producer = scope.producers.get(name)
        if producer is None or producer[0].op_type != "Slice":
            return None
        piece = _slice_range(graph, scope, producer[0], load)
        if piece is None:
            return None
        pieces.append((producer[0].input[0], *piece))
    sources = {p[0] for p in pieces}
    axes = {p[1] for p in pieces}
    if len(sources) != 1 or len(axes) != 1 or axes != {int(attribute(node, "axis", 0))}:
        return None
    source = sources.pop()
    defined = [(start, end) for _, _, start, end in pieces]
    tensors = [s for s, _ in trace(graph, scope, source, (), 0)]
    if len(tensors) != 1:
        return None
    size = list(tensors[0].tensor.dims)[axes.pop()] if tensors[0].tensor.dims else 0
    covered = sorted((max(0, s if s >= 0 else s + size), min(size, e if e >= 0 else e + size)) for s, e in defined)
    if covered[0][0] != 0 or covered[-1][1] != size or any(a[1] != b[0] for a, b in zip(covered, covered[1:])):
        return None
    return source


def find_uses(graph: ModelGraph, load: LoadArray | None = None) -> list[WeightUse]:
    """Every (stored tensor, consumer, slot) where a weight-carrying op reads a constant."""
    uses = []
    for scope in graph.scopes:
        for node in scope.nodes:
            slots = weight_slots(node.domain, node.op_type)
            for slot in slots:
                if slot < len(node.input):
                    for source, steps in trace(graph, scope, node.input[slot], load=load):
                        uses.append(WeightUse(source, steps, node, scope, slot))
    return uses


def as_ints(value: np.ndarray | None) -> list[int] | None:
    return None if value is None else [int(v) for v in np.ravel(value)]


def constant_input(graph: ModelGraph, scope: Scope, node: NodeProto, slot: int | None,
                   load: LoadArray) -> np.ndarray | None:
    """The constant fed to ``node``'s input ``slot``; None when absent or computed at run time."""
    if slot is None or slot >= len(node.input) or not node.input[slot]:
        return None
    return constant_value(graph, scope, node.input[slot], load)


def constant_value(graph: ModelGraph, scope: Scope, name: str, load: LoadArray) -> np.ndarray | None:
    """The value of a small constant input (shape, axes, scale), or None if computed at run time."""
    for source, steps in trace(graph, scope, name):
        if all(step.node.op_type in VALUE_PRESERVING for step in steps):
            return load(source.tensor)
    return fold_value(graph, scope, name, load)  # computed from constants (an unfolded export)


@dataclass(frozen=True)
class Dequant:
    """``(q - zero_point) * scale``; per-axis or blocked along a stored axis."""

    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int | None       # stored axis of a 1-D (or blocked) scale; None for a scalar
    block_size: int = 0
    unscaled: bool = False  # only a zero point was found: values are in integer units


@dataclass(frozen=True)
class Followed:
    shape: tuple[int, ...]               # as the consumer receives it
    axis_map: tuple[int | None, ...]     # consumed axis → stored axis (None: merged or split)
    dequant: Dequant | None
    problems: tuple[tuple[str, str], ...]  # (rule code, message): steps whose effect is unknown
    reordered: bool = False              # slices along an axis were permuted (gate reordering)

    @property
    def followable(self) -> bool:
        return not self.problems


def follow(graph: ModelGraph, use: WeightUse, stored_shape: tuple[int, ...], load: LoadArray) -> Followed:
    """Replay the traced steps on the stored shape."""
    shape = list(stored_shape)
    axes: list[int | None] = list(range(len(shape)))
    dequant: Dequant | None = None
    problems: list[tuple[str, str]] = []
    reordered = False
    for step in use.steps:
        node, op = step.node, step.node.op_type
        if op in VALUE_PRESERVING:
            continue
        if op == "Concat":  # a reordering of slices of the same tensor: shape kept, rows permuted
            problems.append(("IA303", f"Concat {node.name!r} reorders slices of the weight: per-part statistics "
                                      "unavailable"))
            reordered = True
            continue
        if op == "DequantizeLinear":
            dequant, problem = _dequant(graph, step, shape, axes, load)
            if problem:
                problems.append(("IA304", problem))
            continue
        new_shape = _moved_shape(graph, step, shape, load)
        if new_shape is None:
            problems.append(("IA303", f"{op} {node.name!r} has a shape computed at run time"))
            return Followed(tuple(shape), tuple(axes), dequant, tuple(problems), reordered)
        if op == "Transpose":
            perm = attribute(node, "perm") or list(reversed(range(len(shape))))
            axes = [axes[p] for p in perm]
        else:
            axes = _reshaped_axes(shape, new_shape, axes)
        shape = new_shape
    spec = op_spec(use.consumer.domain, use.consumer.op_type)
    implicit = spec.dequant if spec is not None else {}
    if use.slot in implicit and dequant is None:
        dequant, problem = _implicit_dequant(graph, use, implicit[use.slot], shape, axes, load)
        if problem:
            problems.append(("IA304", problem))
    return Followed(tuple(shape), tuple(axes), dequant, tuple(problems), reordered)


def _moved_shape(graph: ModelGraph, step: Step, shape: list[int], load: LoadArray) -> list[int] | None:
    node, op = step.node, step.node.op_type
    rank = len(shape)
    if op == "Transpose":
        perm = attribute(node, "perm") or list(reversed(range(rank)))
        return [shape[p] for p in perm] if sorted(perm) == list(range(rank)) else None
    if op == "Flatten":  # axis in [-rank, rank]; a negative one counts from the end
        axis = int(attribute(node, "axis", 1))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis <= rank:
            return None
        return [math.prod(shape[:axis]), math.prod(shape[axis:])]
    if op == "Reshape":
        target = as_ints(constant_input(graph, step.scope, node, 1, load))
        return None if target is None else _reshape_target(shape, target, bool(attribute(node, "allowzero", 0)))
    axes_value = attribute(node, "axes")
    if axes_value is None and len(node.input) > 1 and node.input[1]:
        axes_value = as_ints(constant_input(graph, step.scope, node, 1, load))
        if axes_value is None:
            return None
    if op == "Squeeze":
        if not axes_value:
            return [d for d in shape if d != 1]
        drop = _axes_in_range(axes_value, rank)
        if drop is None or any(shape[a] != 1 for a in drop):
            return None
        return [d for i, d in enumerate(shape) if i not in drop]
    if op == "Unsqueeze":
        out_rank = rank + len(axes_value or [])
        insert = _axes_in_range(axes_value or [], out_rank)
        if insert is None:
            return None
        dims = iter(shape)
        return [1 if i in insert else next(dims) for i in range(out_rank)]
    return None


def _axes_in_range(axes: list[int], rank: int) -> set[int] | None:
    """Axes in [-rank, rank) made non-negative; None when one is out of range or repeated."""
    normalized = {a + rank if a < 0 else a for a in axes}
    if len(normalized) != len(axes) or any(not 0 <= a < rank for a in normalized):
        return None
    return normalized


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
    scale = constant_input(graph, step.scope, node, 1, load)
    if scale is None:
        return None, f"DequantizeLinear {node.name!r} has a scale computed at run time"
    zero = constant_input(graph, step.scope, node, 2, load)
    block = int(attribute(node, "block_size", 0))
    axis = int(attribute(node, "axis", 1))
    return _make_dequant(scale, zero, axis, block, shape, axes, f"DequantizeLinear {node.name!r}")


def _implicit_dequant(graph: ModelGraph, use: WeightUse, slots: tuple[int | None, int | None, int | str],
                      shape: list[int], axes: list[int | None], load: LoadArray) -> tuple[Dequant | None, str | None]:
    scale_slot, zero_slot, axis_spec = slots
    node = use.consumer

    scale = constant_input(graph, use.scope, node, scale_slot, load)
    zero = constant_input(graph, use.scope, node, zero_slot, load)
    if scale_slot is not None and scale is None:
        return None, f"{node.op_type} {node.name!r} has a weight scale computed at run time"
    if axis_spec == "N":  # QGemm: per output column, whichever way B is stored
        axis = 0 if int(attribute(node, "transB", 0)) else -1
    else:
        axis = int(axis_spec)
    if scale is None:
        scale = _downstream_scale(graph, use.scope, node, load)
    where = f"{node.op_type} {node.name!r}"
    if scale is not None:
        return _make_dequant(scale, zero, axis, 0, shape, axes, where)
    if zero is None:
        return None, None
    # no scale: unit scales, one per zero point (a per-channel zero point is still subtracted per channel)
    dequant, problem = _make_dequant(np.ones(zero.size, np.float32), zero, axis, 0, shape, axes, where)
    return (None if dequant is None else replace(dequant, unscaled=True)), problem


def _downstream_scale(graph: ModelGraph, scope: Scope, node: NodeProto, load: LoadArray) -> np.ndarray | None:
    """The weight scale of ConvInteger / MatMulInteger, applied after it.

    onnxruntime's dynamic quantizer writes ``Mul(Cast(op(x_q, w_q)), Mul(x_scale, w_scale))``
    with ``x_scale`` computed at run time and ``w_scale`` a constant (its
    ``quantization/operators/conv.py`` and ``matmul.py``); older versions add the
    int32 bias between the op and the Cast.
    """
    name = node.output[0] if node.output else ""
    for _ in range(3):
        users = scope.consumers.get(name, [])
        if len(users) != 1:
            return None
        user, slot = users[0]
        if user.op_type in ("Cast", "Add"):  # older quantizers add the int32 bias before scaling
            name = user.output[0]
            continue
        if user.op_type != "Mul" or len(user.input) != 2:
            return None
        other = user.input[1 - slot]
        found = constant_value(graph, scope, other, load)
        if found is not None:
            return found
        producer = scope.producers.get(other)
        if producer is None or producer[0].op_type != "Mul":
            return None
        for factor in producer[0].input:
            found = constant_value(graph, scope, factor, load)
            if found is not None:
                return found
        return None
    return None


def _make_dequant(scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int, shape: list[int],
                  axes: list[int | None], where: str) -> tuple[Dequant | None, str | None]:
    """A dequantization expressed on the stored tensor's axes, or the reason it cannot be."""
    scale = np.asarray(scale, np.float32)
    zero = None if zero is None else np.asarray(zero)
    if scale.size == 1 and (zero is None or zero.size == 1):
        return Dequant(scale.reshape(()), None if zero is None else zero.reshape(()), None), None
    stored = _stored_axis(axis, shape, axes) if shape else None
    if stored is None:
        return None, f"{where}: the quantization axis cannot be traced back to the stored tensor"
    length = shape[axis % len(shape)]
    if block:
        if list(axes) != list(range(len(axes))):
            return None, f"{where}: blocked quantization through a transposed or reshaped weight"
        expected = [-(-d // block) if i == stored else d for i, d in enumerate(shape)]
        if list(scale.shape) != expected or (zero is not None and zero.shape != scale.shape):
            return None, f"{where}: block scale of shape {list(scale.shape)}, expected {expected}"
        return Dequant(scale, zero, stored, block), None
    if scale.size != length or (zero is not None and zero.size not in (1, length)):
        return None, f"{where}: per-axis scale of size {scale.size} for an axis of {length}"
    if zero is not None and zero.size == 1:
        zero = np.full(length, zero.reshape(()), zero.dtype)
    return Dequant(scale.ravel(), None if zero is None else zero.ravel(), stored), None
