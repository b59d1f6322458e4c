"""One weight tensor from its uses to a ``LayerReport``: roles, statistics, verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
from onnx import NodeProto, TensorProto, helper

from .bands import bands_for, consistent
from .checker import distribution, orthogonal_gain, pathologies, verdict
from .downstream import (
    AUTO_TARGETS,
    Downstream,
    activation_factor,
    auto_target,
    follow_output,
    packed_parts,
)
from .fans import Fans
from .graph import ModelGraph, node_name
from .layerrules import RuleChoice
from .loader import LoadedModel
from .measure import MeasureTask
from .nbits import NBitsLayout, make_decoder
from .ops import OpUse, Role, UnsupportedUse, axis_part, role_of
from .options import AuditOptions
from .policy import Policy, Sample, breach, policy_target, std_matches
from .report import (
    STATUS_ORDER,
    Consumer,
    Finding,
    LayerReport,
    PartReport,
    worst_status,
)
from .rules import RULES
from .schemes import fixed_std
from .stats import TensorStats
from .suggest import suggestion
from .tensors import FLOAT_TYPES, TensorSource
from .trace import Followed, LoadArray, SourceRef, WeightUse, constant_input, constant_value, follow

INTEGER_OPS = {"ConvInteger", "MatMulInteger"}
PACKABLE = {"MatMul", "Gemm", "MatMulNBits"}
#: Orthogonality is checked on matrices up to this many elements (a Gram matrix of ≤ 1024²).
ORTHOGONAL_MAX = 1 << 20


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
        if not role.parts and role.fans and node.op_type in PACKABLE:
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
        findings.append(Finding("IA301", "warn", f"read by {primary.use.consumer.op_type} in a way initaudit "
                                                 f"cannot map: {primary.problem}"))
    for code, problem in followed.problems:
        findings.append(Finding(code, RULES[code].severity, problem))
    merged = any(a is None and d != 1 for a, d in zip(followed.axis_map, followed.shape))
    if primary.role is not None and merged and not followed.problems:
        findings.append(Finding("IA303", "info", f"a Reshape merges or splits axes between the stored "
                                                 f"{list(stored_shape)} and the {primary.use.consumer.op_type}'s "
                                                 f"{list(followed.shape)}: layout shown as the consumer sees it"))
    seen = {(v.layout, v.role.fans[convention] if v.role.fans else None) for v in views if v.role is not None}
    if len(seen) > 1:
        described = "; ".join(
            f"{v.use.consumer.op_type} {v.node_name!r}: {v.layout or '?'}"
            + (f" fans {v.role.fans[convention].fan_in}/{v.role.fans[convention].fan_out}" if v.role.fans else "")
            for v in views if v.role is not None)
        findings.append(Finding("IA302", "warn", f"shared by consumers that read it differently: {described}"))
    return findings


@dataclass(frozen=True)
class LayerSpec:
    """What config rules and the model's inferred policy say of one layer."""

    choice: RuleChoice = field(default_factory=RuleChoice)
    policy: Policy | None = None
    sample: Sample | None = None       # this layer as the policy inference saw it


def _target(opts: AuditOptions, down: Downstream, spec: LayerSpec) -> tuple[str, float, str | None, str | None]:
    """(target, gain, reason, the fan convention of the target when not the one in use)."""
    target = spec.choice.target or opts.target
    chosen: tuple[str, float, str | None, str | None]
    if target == "auto":
        chosen = (*auto_target(down), None)
        if spec.policy is not None and spec.sample is not None:
            chosen = policy_target(spec.policy, spec.sample, down.activation in AUTO_TARGETS) or chosen
    else:
        chosen = target, (math.sqrt(2.0) if target == "he" else 1.0), spec.choice.reason, None
    if spec.choice.gain is not None:
        chosen = chosen[0], spec.choice.gain, spec.choice.reason, chosen[3]
    return chosen


def _packed_note(role: Role, fans: dict[str, Fans]) -> Finding:
    part, whole = fans["connectivity"], fans["pytorch"]
    message = (f"{len(role.parts)} parts ({', '.join(p.name for p in role.parts)}) used as separate matrices: "
               "fans are those of one part")
    if whole != part:
        ratio = (part.fan_in + part.fan_out) / (whole.fan_in + whole.fan_out)
        message += (f"; a Xavier init of the packed tensor (fans {whole.fan_in}/{whole.fan_out}) holds "
                    f"{ratio:.2g}× the per-part Xavier variance")
    return Finding("IA103", "info", message)


def _parts(parts, part_stats, target_var: float, profile: str, whole: list[Finding]) -> tuple[list[PartReport], list[Finding]]:
    reports, findings = [], []
    worst = STATUS_ORDER[worst_status(whole)]
    for part, stats in zip(parts, part_stats):
        ratio = stats.var / target_var if stats.count else None
        status = "ok" if ratio is None else bands_for(stats.count, stats.excess_kurtosis, profile).status(ratio)
        reports.append(PartReport(part.name, stats, ratio, status))
        if STATUS_ORDER[status] > worst:  # a single bad gate, hidden in the tensor's average
            code = "IA101" if status == "fail" else "IA102"
            findings.append(Finding(code, status, f"part {part.name}: variance {ratio:.3g}× the target"))
    return reports, findings


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


def plan(model: LoadedModel, graph: ModelGraph, uses: list[WeightUse], opts: AuditOptions) -> Planned:
    """Roles, layout, fans and what to measure, from every use of one stored tensor."""
    ref = uses[0].source
    source = model.source(ref.tensor, ref.name, constant=ref.kind == "constant")
    views = [make_view(model, graph, use, source.shape) for use in uses]
    primary = next((v for v in views if v.role is not None), views[0])
    role, followed, consumer = primary.role, primary.followed, primary.use.consumer
    parts = role.parts if role is not None and _unmodified(followed, source.shape) else ()
    planned = Planned(ref, source, views, primary, _structure_findings(primary, views, source.shape, opts.convention),
                      MeasureTask(source, followed.dequant, tuple(parts)))
    if role is not None and consumer.op_type == "MatMulNBits":  # parts would cut packed bytes: whole only
        planned.task, problem = _nbits_task(model, graph, primary.use, source)
        if problem:
            planned.findings.append(Finding("IA304", "warn", problem))
    dequant = followed.dequant
    planned.integer_units = (dequant.unscaled if dequant is not None else
                             consumer.op_type in INTEGER_OPS or (not source.is_float and planned.task.decoder is None))
    if role is not None and role.fans:
        planned.down = follow_output(graph, primary.use.scope, consumer, _slope_reader(model, graph))
        fans = role.fans[opts.convention]
        if opts.pool_aware and consumer.op_type.endswith("Conv") and planned.down.pool_area > 1:
            planned.pool_area = planned.down.pool_area
            fans = Fans(fans.fan_in, max(1, fans.fan_out // planned.pool_area))
        planned.fans = fans
    return planned


def _slope_reader(model: LoadedModel, graph: ModelGraph):
    """Reads a PRelu slope: the mean of a per-channel one (the gain formula takes one number)."""
    def read(scope, name: str) -> float | None:
        value = constant_value(graph, scope, name, model.load_array)
        return None if value is None or value.size == 0 else float(np.mean(value.astype(np.float64)))
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
    finding = Finding("IA301", "warn", f"read by {domain}.{op}, an op whose weight layout is unknown")
    return Planned(ref, source, [], None, [finding], MeasureTask(source), unsupported_op=f"{domain}.{op}")


@dataclass
class Checked:
    """A layer held to its target."""

    target: str | None = None
    gain: float = 1.0
    reason: str | None = None
    target_var: float | None = None
    ratio: float | None = None
    matches: tuple[str, ...] = ()
    parts: list[PartReport] = field(default_factory=list)
    forward_gain: float | None = None
    findings: list[Finding] = field(default_factory=list)


def _std_matches(spec: LayerSpec, target: str, ratio: float | None, stats: TensorStats) -> tuple[str, ...]:
    """``std:VALUE`` entries: the policy's fixed stds, and a fixed-std target, this layer is consistent with."""
    found = list(std_matches(spec.policy, spec.sample)) if spec.sample is not None else []
    if fixed_std(target) is not None and ratio is not None and stats.var > 0 and target not in found:
        if consistent(ratio, stats.count, stats.excess_kurtosis):
            found.append(target)
    return tuple(found)


def _check(p: Planned, role: Role, fans: Fans, down: Downstream, stats: TensorStats,
           part_stats: list[TensorStats], opts: AuditOptions, prior: list[Finding], spec: LayerSpec) -> Checked:
    target, gain, reason, convention = _target(opts, down, spec)
    if convention is not None and convention != opts.convention and role.fans:
        fans = role.fans[convention]  # a policy that holds on another convention's fans
    profile = spec.choice.profile or opts.profile
    result = verdict(stats, fans, target, gain, profile, role.scale)
    matches = result.matches + _orthogonal(p.source, p.task, stats)
    fixed = _std_matches(spec, target, result.ratio, stats)
    if fixed:
        matches = tuple(m for m in matches if m != "other") + fixed
    out = Checked(target, gain, reason, result.target_var, result.ratio, matches,
                  findings=list(result.status_findings))
    if spec.sample is not None and spec.choice.target is None:  # a rule's own target outranks the majority
        broken = breach(spec.policy, spec.sample)
        if broken is not None:
            out.findings.append(broken)
    out.parts, part_findings = _parts(p.task.parts, part_stats, result.target_var, profile,
                                      prior + out.findings)
    out.findings.extend(part_findings)
    if role.parts and role.fans and opts.convention == "connectivity":
        out.findings.append(_packed_note(role, role.fans))
    if stats.count and role.fans:
        out.forward_gain = role.fans["connectivity"].fan_in * stats.var * role.scale ** 2 * activation_factor(down)
    return out


def checkable(p: Planned) -> bool:
    """Held to a target: a fan-based layer with known fans and scaled values."""
    role = p.primary.role if p.primary else None
    return (role is not None and role.kind != "embedding" and p.fans is not None and not p.integer_units
            and p.down is not None)


def finish(p: Planned, stats: TensorStats, part_stats: list[TensorStats], opts: AuditOptions,
           spec: LayerSpec | None = None) -> LayerReport:
    """The verdict on a measured weight."""
    spec = spec or LayerSpec()
    profile = spec.choice.profile or opts.profile
    findings = p.findings + pathologies(stats, profile, opts.fp16)
    role = p.primary.role if p.primary else None
    checked = Checked()
    if spec.choice.ignore is not None:  # listed with its statistics and the reason, held to nothing
        findings = [Finding("IA502", "info", spec.choice.ignore)]
    elif role is not None and role.kind == "embedding":
        findings.append(Finding("IA901", "info", "embedding table read by Gather: not held to a fan-based target"))
    elif p.fans is not None and p.integer_units:
        findings.append(Finding("IA305", "info", "integer weights without a scale: statistics in integer units"))
    elif role is not None and p.fans is not None and p.down is not None:
        checked = _check(p, role, p.fans, p.down, stats, part_stats, opts, findings, spec)
        findings.extend(checked.findings)

    kept = tuple(f for f in findings if opts.keeps(f.code) or f.code == "IA502")
    status = worst_status(kept)
    primary = p.primary
    return LayerReport(
        name=p.ref.name, graph=p.ref.scope, node=primary.node_name if primary else "",
        op=p.unsupported_op or (primary.use.consumer.op_type if primary else ""), shape=p.source.shape,
        dtype=p.source.dtype, storage=p.source.location, layout=primary.layout if primary else "",
        groups=role.groups if role else 1, fans=dict(role.fans) if role and role.fans else None,
        fan_in=p.fans.fan_in if p.fans else None, fan_out=p.fans.fan_out if p.fans else None, stats=stats,
        target=checked.target, target_var=checked.target_var, ratio=checked.ratio, status=status,
        matches=checked.matches, distribution=distribution(stats), findings=kept,
        consumers=tuple(Consumer(v.node_name, v.use.consumer.op_type, v.use.scope.path, v.use.slot, v.layout,
                                 v.role.fans[opts.convention] if v.role and v.role.fans else None)
                        for v in p.views),
        parts=tuple(checked.parts),
        suggestion=suggestion(checked.target, checked.gain, checked.target_var, stats, role.fans, opts.convention,
                              role.scale)
        if role and checked.target and checked.target_var and checked.ratio and status != "ok" and stats.var > 0
        else None,
        target_reason=checked.reason, gain=checked.gain, pool_area=p.pool_area, scale=role.scale if role else 1.0,
        forward_gain=checked.forward_gain,
    )


def _orthogonal(source: TensorSource, task: MeasureTask, stats: TensorStats) -> tuple[str, ...]:
    """``("orthogonal",)`` when the (small) matrix has orthonormal rows or columns up to a gain."""
    if (stats.count > ORTHOGONAL_MAX or stats.count < 4 or len(source.shape) < 2
            or task.dequant is not None or task.decoder is not None or not source.is_float):
        return ()
    with np.errstate(all="ignore"):
        values = source.to_array().astype(np.float64)
        matrix = values.reshape(values.shape[0], -1) if values.ndim != 3 else values.reshape(-1, values.shape[-1])
        return ("orthogonal",) if orthogonal_gain(matrix) is not None else ()


#: Integer types that, in a matrix, are quantized weights (int32/int64 matrices are indices or shapes).
QUANTIZED_TYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4,
                   TensorProto.INT16, TensorProto.UINT16}


def is_candidate(tensor: TensorProto) -> bool:
    """Floating point or quantized, with at least two non-trivial axes: looks like a weight matrix."""
    return (tensor.data_type in FLOAT_TYPES or tensor.data_type in QUANTIZED_TYPES) and \
        len([d for d in tensor.dims if d > 1]) >= 2
