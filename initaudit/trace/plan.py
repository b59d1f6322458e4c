"""One stored weight from its uses to a plan: its roles, stored layout, fans, structure findings and
what the measuring stage reads (``MeasureTask``)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
from onnx import NodeProto, helper

from initaudit.findings import Finding, finding
from initaudit.read.fold import computed_source
from initaudit.read.graph import ModelGraph, Scope, node_name
from initaudit.read.loader import LoadedModel
from initaudit.read.nbits import NBitsLayout, make_decoder
from initaudit.read.tensors import LoadArray, TensorSource
from initaudit.trace.downstream import Downstream, follow_output, input_multiplier, packed_parts
from initaudit.trace.fans import Fans
from initaudit.trace.follow import (
    PASS_THROUGH,
    Dequant,
    Followed,
    SourceRef,
    WeightUse,
    constant_input,
    constant_tensor,
    constant_value,
    follow,
    is_candidate,
)
from initaudit.trace.ops import OpUse, Part, Role, UnsupportedUse, axis_part, canonical_domain, op_spec, role_of


@dataclass
class View:
    """A weight as one consumer reads it."""

    use: WeightUse
    followed: Followed
    role: Role | None
    problem: str | None
    layout: str = ""

    @property
    def node_name(self) -> str:
        return node_name(self.use.scope, self.use.consumer)


def _attrs(node: NodeProto) -> dict[str, Any]:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in values.items()}


def make_view(model: LoadedModel, graph: ModelGraph, use: WeightUse, stored_shape: tuple[int, ...]) -> View:
    followed = follow(graph, use, stored_shape, model.load_array)
    node = use.consumer
    try:
        role = role_of(OpUse(node.op_type, node.domain, use.slot, followed.shape, _attrs(node)))
        spec = op_spec(node.domain, node.op_type)
        if not role.parts and role.fans and spec is not None and spec.packable:
            role = _packed(graph, model, use, role, followed)
        view = View(use, followed, role, None)
    except UnsupportedUse as exc:
        view = View(use, followed, None, str(exc))
    view.layout = _stored_layout(view)
    return view


def _stored_layout(view: View) -> str:
    """The consumer's axis roles written on the stored tensor's axes."""
    if view.role is None:
        return ""
    letters = ["1"] * len(view.use.source.tensor.dims)
    for stored in view.followed.sliced:  # a Scan's scan axis: one slice per iteration, like a batch
        if stored is None:
            return view.role.layout
        letters[stored] = "B"
    for consumed, stored in enumerate(view.followed.axis_map):
        if stored is None and view.followed.shape[consumed] == 1:
            continue  # an axis Unsqueeze inserted
        if stored is None:
            return view.role.layout
        letters[stored] = view.role.layout[consumed]
    return "".join(letters)


def _packed(graph: ModelGraph, model: LoadedModel, use: WeightUse, role: Role, followed: Followed) -> Role:
    """Split a packed projection's connectivity fans and statistics into its parts."""
    axis = role.layout.find("O")
    if axis < 0 or role.fans is None:  # a vector operand has no output axis to split
        return role
    n_out = followed.shape[axis]
    count = packed_parts(graph, use.scope, use.consumer, n_out, model.load_array)
    if count == 1 or role.fans["connectivity"].fan_out < count:
        return role
    size = n_out // count
    names = {3: ("q", "k", "v"), 2: ("k", "v")}.get(count, tuple(f"part{i}" for i in range(count)))
    conn = role.fans["connectivity"]
    fans = {**role.fans, "connectivity": Fans(conn.fan_in, conn.fan_out // count)}
    parts = tuple(axis_part(name, followed.shape, axis, i * size, (i + 1) * size) for i, name in enumerate(names))
    return replace(role, fans=fans, parts=parts)


def _unmodified(followed: Followed, stored_shape: tuple[int, ...]) -> bool:
    """The consumer sees the stored tensor as stored (parts can be cut from it)."""
    return (not followed.reordered and followed.shape == stored_shape
            and list(followed.axis_map) == list(range(len(stored_shape))))


def _structure_findings(primary: View, views: list[View], stored_shape: tuple[int, ...],
                        convention: str) -> list[Finding]:
    findings = []
    followed = primary.followed
    if primary.problem:
        findings.append(finding("IA301", f"read by {primary.use.consumer.op_type} in a way initaudit "
                                         f"cannot map: {primary.problem}"))
    for code, problem in followed.problems:
        findings.append(finding(code, problem))
    merged = any(a is None and d != 1 for a, d in zip(followed.axis_map, followed.shape))
    if primary.role is not None and merged and not followed.problems:
        findings.append(finding("IA303", f"a Reshape merges or splits axes between the stored "
                                         f"{list(stored_shape)} and the {primary.use.consumer.op_type}'s "
                                         f"{list(followed.shape)}: layout shown as the consumer sees it"))
    seen = {(v.layout, v.role.fans[convention] if v.role.fans else None) for v in views if v.role is not None}
    if len(seen) > 1:
        described = "; ".join(
            f"{v.use.consumer.op_type} {v.node_name!r}: {v.layout or '?'}"
            + (f" fans {v.role.fans[convention].fan_in}/{v.role.fans[convention].fan_out}" if v.role.fans else "")
            for v in views if v.role is not None)
        findings.append(finding("IA302", f"shared by consumers that read it differently: {described}"))
    return findings


@dataclass
class Planned:
    """What is known of a weight before its values are read."""

    ref: SourceRef
    source: TensorSource
    views: list[View]
    primary: View | None               # None: read only by an op whose layout is unknown
    findings: list[Finding]
    task: MeasureTask
    down: Downstream | None = None
    fans: Fans | None = None          # under the convention in use, pool-aware if asked
    pool_area: int = 1
    integer_units: bool = False
    unsupported_op: str | None = None  # "domain.Op" of an op that reads it with an unknown layout
    input_scale: float = 1.0           # the stored scalar the consumer's data input was multiplied by


def plan(model: LoadedModel, graph: ModelGraph, uses: list[WeightUse], convention: str = "connectivity",
         pool_aware: bool = False) -> Planned:
    """Roles, layout, fans and what to measure, from every use of one stored tensor."""
    ref = uses[0].source
    source = _source(model, ref)
    views = [make_view(model, graph, use, source.shape) for use in uses]
    primary = next((v for v in views if v.role is not None), views[0])
    role, followed, consumer = primary.role, primary.followed, primary.use.consumer
    spec = op_spec(consumer.domain, consumer.op_type)
    parts = role.parts if role is not None and _unmodified(followed, source.shape) else ()
    planned = Planned(ref, source, views, primary, _structure_findings(primary, views, source.shape, convention),
                      MeasureTask(source, followed.dequant, tuple(parts)))
    if role is not None and spec is not None and spec.blocks:  # parts would cut packed bytes: whole only
        planned.task, problem = _nbits_task(model, graph, primary.use, source)
        if problem:
            planned.findings.append(finding("IA304", problem))
    dequant = followed.dequant
    planned.integer_units = (dequant.unscaled if dequant is not None else
                             (spec is not None and spec.integer_units)
                             or (not source.is_float and planned.task.decoder is None))
    if role is not None and role.fans:
        planned.down = follow_output(graph, primary.use.scope, consumer, _slope_reader(model, graph))
        planned.input_scale = input_multiplier(primary.use.scope, consumer, _scalar_reader(model, graph))
        fans = role.fans[convention]
        if pool_aware and spec is not None and spec.pooled and planned.down.pool_area > 1:
            planned.pool_area = planned.down.pool_area
            fans = Fans(fans.fan_in, max(1, fans.fan_out // planned.pool_area))
        planned.fans = fans
    return planned


def _source(model: LoadedModel, ref: SourceRef) -> TensorSource:
    if ref.definition is not None:  # computed from constants: produced chunk by chunk from its definition
        return computed_source(ref.definition, ref.name)
    return model.source(ref.tensor, ref.name, constant=ref.kind == "constant")


def plan_absent(model: LoadedModel, graph: ModelGraph, uses: list[WeightUse],
                convention: str = "connectivity") -> Planned:
    """A weight the file does not hold: a graph input read in a weight slot (``find_uses``), as in a
    model exported without its parameters.  Listed with IA002, its consumers and, when the input
    declares a static shape, its layout and fans; nothing to measure, so held to no target."""
    ref = uses[0].source
    shape = tuple(ref.tensor.dims)
    declared = ref.name in graph.scopes[0].input_shapes
    source = TensorSource(ref.name, ref.tensor.data_type, shape, None, None, "graph_input")
    if declared:
        views = [make_view(model, graph, use, shape) for use in uses]
    else:  # no shape: no layout either (a rank-0 guess would only raise IA301)
        views = [View(use, Followed((), (), None, ()), None, None) for use in uses]
    primary = next((v for v in views if v.role is not None), views[0])
    what = str(list(shape)) if declared else "(no static shape declared)"
    message = (f"weights not stored in the file — exported without parameters (export_params=False)? "
               f"graph input {ref.name!r} {what} is read as the weight of {primary.use.consumer.op_type} "
               f"{primary.node_name!r}")
    findings = [finding("IA002", message)]
    if declared:
        findings += _structure_findings(primary, views, shape, convention)
    role = primary.role
    return Planned(ref, source, views, primary, findings, MeasureTask(source),
                   fans=role.fans[convention] if role is not None and role.fans else None)


def _slope_reader(model: LoadedModel, graph: ModelGraph):
    """Reads a PRelu slope: the mean of a per-channel one (the gain formula takes one number)."""
    def read(scope, name: str) -> float | None:
        value = constant_value(graph, scope, name, model.load_array)
        return None if value is None or value.size == 0 else float(np.mean(value.astype(np.float64)))
    return read


def _scalar_reader(model: LoadedModel, graph: ModelGraph):
    """Reads a stored scalar (one value); None for anything else."""
    def read(scope, name: str) -> float | None:
        value = constant_value(graph, scope, name, model.load_array) if name else None
        return None if value is None or value.size != 1 else float(value.astype(np.float64).ravel()[0])
    return read


def _nbits_task(model: LoadedModel, graph: ModelGraph, use: WeightUse,
                source: TensorSource) -> tuple[MeasureTask, str | None]:
    """Decode MatMulNBits' packed blocks with its scales and zero points."""
    node = use.consumer
    attrs = _attrs(node)
    layout = NBitsLayout(int(attrs["N"]), int(attrs["K"]), int(attrs.get("bits", 4)), int(attrs["block_size"]))
    lazy = cast(LoadArray, model.source)  # scales and zero points are read a few rows at a time
    scales = cast("TensorSource | None", constant_input(graph, use.scope, node, 2, lazy))
    zeros = cast("TensorSource | None", constant_input(graph, use.scope, node, 3, lazy))
    if scales is None or (len(node.input) > 3 and node.input[3] and zeros is None):
        return MeasureTask(source), f"MatMulNBits {node.name!r}: scales or zero points are not constants"
    try:
        decoder = make_decoder(layout, scales, zeros)
    except ValueError as exc:
        return MeasureTask(source), f"MatMulNBits {node.name!r}: {exc}"
    return MeasureTask(source, decoder=decoder, granularity=layout.row_bytes), None


def plan_unsupported(model: LoadedModel, ref: SourceRef, op: str, domain: str) -> Planned:
    """A weight-like tensor read only by an op whose layout initaudit does not know."""
    source = model.source(ref.tensor, ref.name, constant=ref.kind == "constant")
    unknown = finding("IA301", f"read by {domain}.{op}, an op whose weight layout is unknown")
    return Planned(ref, source, [], None, [unknown], MeasureTask(source), unsupported_op=f"{domain}.{op}")


def checkable(p: Planned) -> bool:
    """Held to a target: a fan-based layer with known fans and scaled values."""
    role = p.primary.role if p.primary else None
    return (role is not None and role.kind != "embedding" and p.fans is not None and not p.integer_units
            and p.down is not None)


@dataclass(frozen=True)
class MeasureTask:
    source: TensorSource
    dequant: Dequant | None = None
    parts: tuple[Part, ...] = ()
    decoder: Callable[[np.ndarray, int], np.ndarray] | None = None  # stored chunk (from element i) → weights
    granularity: int = 1                                           # chunks are whole multiples of this


def _stored_tensors(scope: Scope) -> Iterable[SourceRef]:
    for name, tensor in scope.initializers.items():
        yield SourceRef(scope.path, name, tensor, "initializer")
    for node in scope.nodes:
        constant = constant_tensor(node) if node.op_type == "Constant" and node.output else None
        if constant is not None:
            yield SourceRef(scope.path, node.output[0], constant, "constant")


def _final_consumer(graph: ModelGraph, scope: Scope, name: str) -> tuple[str | None, str, int]:
    """The first op that reads ``name`` (here or in a nested body) other than a pass-through node."""
    for _ in range(32):
        users = [(node, slot) for inner in graph.scopes for node, slot in inner.consumers.get(name, [])
                 if inner is scope or graph.resolve(inner, name).scope is scope]
        if not users:
            return None, "", 0
        node, slot = users[0]
        if node.op_type in PASS_THROUGH and slot == 0 and node.output:
            name = node.output[0]
            continue
        return node.op_type, node.domain, slot
    return None, "", 0


def _computed_from(graph: ModelGraph, scope: Scope, name: str) -> set[tuple[str, str]]:
    """The stored tensors a computed weight is made of (the small constant an Expand repeats): measured
    as that weight, not skipped as constants of their own."""
    found: set[tuple[str, str]] = set()
    todo, seen = [(scope, name)], set[tuple[int, str]]()
    while todo and len(seen) < 4096:
        where, value = todo.pop()
        if (id(where), value) in seen or not value:
            continue
        seen.add((id(where), value))
        defined = graph.resolve(where, value)
        if defined.kind == "initializer" or (defined.node is not None and defined.node.op_type == "Constant"):
            found.add((defined.scope.path, value))
        elif defined.node is not None and defined.node.op_type not in ("Shape", "Size"):  # those read no values
            todo += [(defined.scope, x) for x in defined.node.input]
    return found


@dataclass(frozen=True)
class Skipped:
    """A constant that looks like a weight but is read by a non-weight op."""

    name: str
    graph: str
    op: str
    reason: str


def other_constants(model: LoadedModel, graph: ModelGraph,
                    planned: dict[tuple[str, str], list[WeightUse]]) -> tuple[list[Skipped], list[Planned]]:
    """The weight-like constants no weight slot reads (``planned`` holds those that one does): those
    a known op reads in another role are skipped with the reason; those an op of unknown layout
    reads are planned as such (IA301), so that no weight passes unseen."""
    skipped, unsupported = [], []
    scopes = {scope.path: scope for scope in graph.scopes}
    made_of = {key for uses in planned.values() if uses[0].source.kind == "computed"
               for key in _computed_from(graph, scopes[uses[0].source.scope], uses[0].source.name)}
    for scope in graph.scopes:
        for ref in _stored_tensors(scope):
            if ref.key in planned or ref.key in made_of or not is_candidate(ref.tensor):
                continue
            op, domain, slot = _final_consumer(graph, scope, ref.name)
            if op is None:
                continue
            if canonical_domain(domain) == "" or op_spec(domain, op) is not None:
                skipped.append(Skipped(ref.name, scope.path, op, f"input {slot} of {op}, not a layer weight"))
            else:
                unsupported.append(plan_unsupported(model, ref, op, domain))
    return skipped, unsupported
