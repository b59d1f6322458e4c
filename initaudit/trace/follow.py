"""From a weight slot back to the stored tensor, and forward again to its shape.

Tracing walks backwards from each weight input of a weight-carrying node through
nodes that keep the values (Identity, Cast), move axes (Transpose, Reshape,
Flatten, Squeeze, Unsqueeze) or dequantize (DequantizeLinear), across scopes
(outer-scope names in control-flow bodies, formal inputs of functions, and the
explicit inputs of Loop and Scan bodies), until it reaches an initializer or a
Constant node.  For weight slots it also reaches what the file does not store as
a tensor: a value computed from constants (ConstantOfShape, Expand, Tile…,
measured from its definition) and a graph input (a model exported without its
parameters).  ``follow`` then replays those steps on the stored shape to learn the
consumed shape, which stored axis each consumed axis came from, and how to
dequantize.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
from onnx import NodeProto, TensorProto

from initaudit.read.fold import Computed, computed_value, fold_value
from initaudit.read.graph import ModelGraph, Scope, attribute
from initaudit.read.tensors import FLOAT_TYPES, LoadArray
from initaudit.trace.ops import canonical_domain, op_spec

VALUE_PRESERVING = {"Identity", "Cast", "CastLike"}
#: Integer types that, in a matrix, are quantized weights (int32/int64 matrices are indices or shapes).
QUANTIZED_TYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4,
                   TensorProto.INT16, TensorProto.UINT16}
#: Element types a weight is stored in.
WEIGHT_TYPES = FLOAT_TYPES | QUANTIZED_TYPES
AXIS_MOVING = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
PASS_THROUGH = VALUE_PRESERVING | AXIS_MOVING | {"DequantizeLinear"}


def is_candidate(tensor: TensorProto) -> bool:
    """Floating point or quantized, with at least two non-trivial axes: looks like a weight matrix."""
    return tensor.data_type in WEIGHT_TYPES and len([d for d in tensor.dims if d > 1]) >= 2


@dataclass(frozen=True)
class SourceRef:
    """Where a weight's values are: an initializer, the value of a Constant node, a value computed
    from constants (``definition``: measured from it), or a graph input (no values in the file;
    ``tensor`` then holds only the declared type and shape)."""

    scope: str
    name: str
    tensor: TensorProto
    kind: str  # initializer | constant | computed | graph_input
    definition: Computed | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.scope, self.name)

    @property
    def has_values(self) -> bool:
        """The file holds (or defines) the values: there is something to measure."""
        return self.kind != "graph_input"


@dataclass(frozen=True)
class Step:
    node: NodeProto
    scope: Scope
    slot: int = 0  # the node's input the value enters by (a Scan's scan input: which axis is sliced)


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
          depth: int = 0, load: LoadArray | None = None,
          unstored: bool = False) -> Iterator[tuple[SourceRef, tuple[Step, ...]]]:
    """Every stored tensor that ``name`` is, through pass-through nodes.  ``unstored`` (a weight
    slot): also a value computed from constants (with ``load``) and an input of the main graph."""
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
            yield from trace(graph, found.scope, node.input[0], (Step(node, found.scope), *steps), depth + 1, load,
                             unstored)
        elif node.op_type == "Concat" and load is not None:
            source = _reordered_source(graph, found.scope, node, load)
            if source is not None:
                yield from trace(graph, found.scope, source, (Step(node, found.scope), *steps), depth + 1, load,
                                 unstored)
        elif unstored and load is not None:
            value = computed_value(graph, found.scope, name, load)
            if value is not None and value.data_type in WEIGHT_TYPES:  # not a shape or an index
                yield SourceRef(found.scope.path, name, _declared(name, value.data_type, value.shape), "computed",
                                value), steps
    elif found.kind == "formal":
        for caller, call in found.scope.call_sites:
            if found.index < len(call.input):
                yield from trace(graph, caller, call.input[found.index], steps, depth + 1, load, unstored)
    elif found.kind == "graph_input":
        outer = body_input_source(graph, found.scope, name)
        if outer is not None:
            where, outer_name, step = outer
            yield from trace(graph, where, outer_name, steps if step is None else (step, *steps), depth + 1, load,
                             unstored)
        elif unstored and found.scope.parent is None:
            shape = found.scope.input_shapes.get(name, ())
            yield SourceRef(found.scope.path, name, _declared(name, found.scope.input_types.get(name, 0), shape),
                            "graph_input"), steps


def _declared(name: str, data_type: int, shape: tuple[int, ...]) -> TensorProto:
    """A tensor holding only a type and a shape (a value the file does not store as a tensor)."""
    tensor = TensorProto(name=name, data_type=data_type)
    tensor.dims.extend(shape)
    return tensor


def body_input_source(graph: ModelGraph, body: Scope, name: str) -> tuple[Scope, str, Step | None] | None:
    """The outer value an input of a Loop or Scan body stands for in every iteration, when there is one.

    Loop: body inputs 2… are the loop-carried values (0 is the iteration count, 1 the condition), fed
    by the node's inputs 2…; one that the body passes on unchanged (body output k - 1 is input k,
    possibly through Identity) is its initial value throughout: a constant weight inside the body
    (Paddle2ONNX passes decoder weights in this way).  Scan (opset 9 on): the first inputs are state
    variables, treated alike; the last ``num_scan_inputs`` are sliced along their scan axis, one slice
    per iteration: the returned Step records the slicing (``follow`` removes that axis).
    """
    node, outer = body.owner, body.parent
    if node is None or outer is None or body.owner_attr != "body" or canonical_domain(node.domain) != "" \
            or name not in body.input_names:
        return None
    index = body.input_names.index(name)
    if index >= len(node.input) or not node.input[index]:
        return None
    if node.op_type == "Loop":
        if index < 2 or not _passed_on(body, name, index - 1):
            return None
        return outer, node.input[index], None
    if node.op_type == "Scan" and graph.opset >= 9:
        states = len(node.input) - int(attribute(node, "num_scan_inputs", 0))
        if index < states:
            return (outer, node.input[index], None) if _passed_on(body, name, index) else None
        return outer, node.input[index], Step(node, outer, index)
    return None


def _passed_on(body: Scope, name: str, output: int) -> bool:
    """Whether the body's output ``output`` is its input ``name`` unchanged (directly or through Identity)."""
    if output >= len(body.output_names):
        return False
    value = body.output_names[output]
    for _ in range(64):
        if value == name:
            return True
        producer = body.producers.get(value)
        if producer is None or producer[0].op_type != "Identity" or not producer[0].input:
            return False
        value = producer[0].input[0]
    return False


def scan_axis(node: NodeProto, slot: int, rank: int) -> int | None:
    """The axis a Scan slices its input ``slot`` along (``scan_input_axes``, default 0), in [0, rank)."""
    first = len(node.input) - int(attribute(node, "num_scan_inputs", 0))
    axes = list(attribute(node, "scan_input_axes") or [])
    axis = int(axes[slot - first]) if 0 <= slot - first < len(axes) else 0
    axis = axis + rank if axis < 0 else axis
    return axis if 0 <= axis < rank else None


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
    """Every (source, consumer, slot) where a weight-carrying op reads a weight: a stored tensor, a value
    computed from constants, or a graph input that ``_input_is_weight`` takes for an unstored weight."""
    uses: list[WeightUse] = []
    maybe: list[WeightUse] = []
    for scope in graph.scopes:
        for node in scope.nodes:
            spec = op_spec(node.domain, node.op_type)
            if spec is None:
                continue
            found = {slot: list(trace(graph, scope, node.input[slot], load=load, unstored=True))
                     for slot in spec.weight_slots if slot < len(node.input)}
            for slot, sources in found.items():
                for source, steps in sources:
                    use = WeightUse(source, steps, node, scope, slot)
                    verdict = "yes" if source.has_values else _input_is_weight(0 in spec.weight_slots, slot, found)
                    if verdict == "yes":
                        uses.append(use)
                    elif verdict == "maybe":
                        maybe.append(use)
    if any(not use.source.has_values for use in uses):  # exported without parameters: so are these
        uses += maybe
    return uses


UseGroups = dict[tuple[str, str], list[WeightUse]]


def uses_by_weight(graph: ModelGraph, load: LoadArray | None = None) -> tuple[UseGroups, UseGroups]:
    """``find_uses`` grouped by the weight read, in graph order: the weights whose values the file holds,
    and the graph inputs read as weights (no values: a model exported without its parameters)."""
    stored: UseGroups = {}
    absent: UseGroups = {}
    for use in find_uses(graph, load):
        (stored if use.source.has_values else absent).setdefault(use.source.key, []).append(use)
    return stored, absent


def _input_is_weight(operands: bool, slot: int, found: dict[int, list[tuple[SourceRef, tuple[Step, ...]]]]) -> str:
    """Whether a graph input read in weight slot ``slot`` is a weight the file does not hold: yes, no,
    or maybe (yes when the model holds other such weights).

    Conv, ConvTranspose, the recurrent ops and the other ops that never read their data in a weight
    slot: yes.  An op that may read its weight in input 0 (MatMul, Gemm, Einsum: ``x @ W`` or ``W @ x``;
    Gather) reads its data there too, so input 0 is never taken for a weight; another operand is when
    it is declared as a float or quantized matrix (rank 2, both axes longer than 1: ``is_candidate``)
    and input 0 is computed in the graph.  When input 0 is a stored constant, the graph input is the
    data (``W @ x``); when it is a graph input itself the product may be of two model inputs: maybe.
    """
    if not operands:
        sources = found[slot]
        data_type = sources[0][0].tensor.data_type if sources else 0
        return "yes" if data_type == 0 or data_type in WEIGHT_TYPES else "no"
    if slot == 0:
        return "no"
    tensor = next((s.tensor for s, _ in found[slot] if not s.has_values), None)
    if tensor is None or len(tensor.dims) != 2 or not is_candidate(tensor):
        return "no"
    first = found.get(0, [])
    if any(s.has_values for s, _ in first):
        return "no"
    return "maybe" if first else "yes"


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
    sliced: tuple[int | None, ...] = ()  # stored axes a Scan slices: the consumer reads one slice at a time

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
    sliced: list[int | None] = []
    for step in use.steps:
        node, op = step.node, step.node.op_type
        if op in VALUE_PRESERVING:
            continue
        if op == "Scan":  # a scan input: each iteration reads one slice, without the scan axis
            axis = scan_axis(node, step.slot, len(shape))
            if axis is None:
                problems.append(("IA303", f"Scan {node.name!r} slices input {step.slot} along an axis out of range"))
                return Followed(tuple(shape), tuple(axes), dequant, tuple(problems), reordered, tuple(sliced))
            sliced.append(axes.pop(axis))
            del shape[axis]
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
            return Followed(tuple(shape), tuple(axes), dequant, tuple(problems), reordered, tuple(sliced))
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
    return Followed(tuple(shape), tuple(axes), dequant, tuple(problems), reordered, tuple(sliced))


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
