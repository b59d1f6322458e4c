"""The library entry point: model file(s) in, ``Report`` out."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from onnx import TensorProto

from . import __version__
from .bands import PROFILES, Profile, bands_for
from .checker import pathologies, verdict
from .downstream import auto_target, follow_output, packed_parts
from .errors import InitauditError
from .fans import CONVENTIONS, Convention, Fans
from .graph import ModelGraph, Scope, attribute, node_label
from .loader import LoadedModel, load_model
from .measure import measure
from .ops import OpUse, Role, UnsupportedUse, _canonical_domain, axis_part, role_of
from .report import (Consumer, Finding, LayerReport, ModelReport, PartReport, Report, Skipped,
                     worst_status)
from .rules import RULES
from .schemes import TARGETS
from .suggest import suggestion
from .tensors import FLOAT_TYPES, INTEGER_TYPES
from .trace import PASS_THROUGH, Followed, SourceRef, WeightUse, find_uses, follow

FAIL_ON = ("warn", "fail", "never")
INTEGER_OPS = {"ConvInteger", "MatMulInteger"}


@dataclass(frozen=True)
class AuditOptions:
    target: str = "xavier"
    convention: Convention = "connectivity"
    profile: Profile = "init"
    pool_aware: bool = False
    fail_on: str = "fail"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fp16: bool = False

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.target, TARGETS, "target"), (self.convention, CONVENTIONS, "convention"),
            (self.profile, PROFILES, "profile"), (self.fail_on, FAIL_ON, "fail-on"),
        ):
            if value not in allowed:
                raise InitauditError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        for code in (*self.select, *self.ignore):
            if not any(known.startswith(code) for known in RULES):
                raise InitauditError(f"unknown rule code {code!r}; `initaudit rules` lists them")

    def keeps(self, code: str) -> bool:
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)


def audit(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **options: object) -> Report:
    """Audit one model, several, or every ``*.onnx`` below a folder.

    Keyword options are those of ``AuditOptions`` (target, convention, profile,
    pool_aware, fail_on, select, ignore, fp16).  Raises ``InitauditError`` for a
    bad option or an unreadable model.
    """
    opts = AuditOptions(**options)  # type: ignore[arg-type]
    files = expand_paths([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    models = tuple(audit_model(path, opts) for path in files)
    return Report(models, opts.fail_on, {"version": __version__})


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.onnx") if p.is_file())
            if not found:
                raise InitauditError(f"{path}: no *.onnx file in this folder")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise InitauditError("no model given")
    return files


def audit_model(path: str | os.PathLike[str], opts: AuditOptions | None = None) -> ModelReport:
    opts = opts or AuditOptions()
    with load_model(path) as model:
        graph = ModelGraph(model.proto)
        grouped: dict[tuple[str, str], list[WeightUse]] = {}
        for use in find_uses(graph, model.load_array):
            grouped.setdefault(use.source.key, []).append(use)
        layers = [_layer(model, graph, uses, opts) for uses in grouped.values()]
        extra_layers, skipped = _unclaimed(model, graph, set(grouped), opts)
        layers.extend(extra_layers)
    proto = model.proto
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    return ModelReport(
        path=str(path), opset=opset, producer=producer, ir_version=proto.ir_version,
        target=opts.target, convention=opts.convention, profile=opts.profile,
        layers=tuple(layers), skipped=tuple(skipped),
    )


@dataclass
class _View:
    use: WeightUse
    followed: Followed
    role: Role | None
    problem: str | None
    layout: str = ""


def _attrs(node) -> dict[str, object]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def _view(model: LoadedModel, graph: ModelGraph, use: WeightUse, stored_shape: tuple[int, ...]) -> _View:
    followed = follow(graph, use, stored_shape, model.load_array)
    node = use.consumer
    attrs = {k: _decode(v) for k, v in _attrs(node).items()}
    try:
        role = role_of(OpUse(node.op_type, node.domain, use.slot, followed.shape, attrs))
        view = _View(use, followed, role, None)
    except UnsupportedUse as exc:
        view = _View(use, followed, None, str(exc))
    view.layout = _stored_layout(view)
    return view


def _stored_layout(view: _View) -> str:
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


def _node_name(use: WeightUse) -> str:
    return use.consumer.name or node_label(use.consumer, list(use.scope.nodes).index(use.consumer))


def _layer(model: LoadedModel, graph: ModelGraph, uses: list[WeightUse], opts: AuditOptions) -> LayerReport:
    source_ref = uses[0].source
    source = model.source(source_ref.tensor, source_ref.name, constant=source_ref.kind == "constant")
    views = [_view(model, graph, use, source.shape) for use in uses]
    primary = next((v for v in views if v.role is not None), views[0])
    findings: list[Finding] = []
    role, followed = primary.role, primary.followed
    if primary.problem:
        findings.append(Finding("IA301", "warn",
                                f"read by {primary.use.consumer.op_type} in a way initaudit cannot map: {primary.problem}"))
    for problem in followed.problems:
        code = "IA304" if "scale" in problem or "quantization" in problem else "IA303"
        findings.append(Finding(code, RULES[code].severity, problem))
    if role is not None and any(a is None for a in followed.axis_map) and not followed.problems:
        findings.append(Finding("IA303", "info",
                                f"a Reshape merges or splits axes between the stored {list(source.shape)} and the "
                                f"{primary.use.consumer.op_type}'s {list(followed.shape)}: layout shown as the consumer sees it"))
    findings.extend(_shared_conflicts(views, opts.convention))

    if role is not None and not role.parts and role.fans and primary.use.consumer.op_type in PACKABLE:
        role = _packed(graph, model, primary.use, role, followed)
    parts = role.parts if role is not None and _identity(followed, source.shape) else ()
    integer_units = primary.use.consumer.op_type in INTEGER_OPS and (
        followed.dequant is None or float(np.max(followed.dequant.scale)) == 1.0)
    if not source.is_float and followed.dequant is None and not integer_units:
        integer_units = True
    stats, part_stats = measure(source, followed.dequant, parts)
    findings.extend(pathologies(stats, opts.profile, opts.fp16))

    fans_all = role.fans if role is not None else None
    fans = fans_all[opts.convention] if fans_all else None
    down = follow_output(graph, primary.use.scope, primary.use.consumer)
    pool_area = down.pool_area if opts.pool_aware and role is not None and primary.use.consumer.op_type.endswith("Conv") else 1
    if fans is not None and pool_area > 1:
        fans = Fans(fans.fan_in, max(1, fans.fan_out // pool_area))

    target = target_reason = None
    gain = 1.0
    target_var = ratio = None
    matches_: tuple[str, ...] = ()
    distribution = "other"
    part_reports: list[PartReport] = []
    from .checker import distribution as family, matches as matching
    distribution = family(stats)
    if role is not None and role.kind == "embedding":
        findings.append(Finding("IA901", "info", "embedding table read by Gather: not held to a fan-based target"))
    elif integer_units and fans is not None:
        findings.append(Finding("IA305", "info", "integer weights without a scale: statistics in integer units"))
    elif fans is not None:
        target, gain, target_reason = _target_for(opts.target, down)
        result = verdict(stats, fans, target, gain, opts.profile, role.scale)
        target_var, ratio, matches_ = result.target_var, result.ratio, result.matches
        findings.extend(result.status_findings)
        for part, pst in zip(parts, part_stats):
            p_ratio = pst.var / target_var if pst.count and target_var else None
            p_status = "ok" if p_ratio is None else bands_for(pst.count, pst.excess_kurtosis, opts.profile).status(p_ratio)
            part_reports.append(PartReport(part.name, pst, p_ratio, p_status))
        findings.extend(_part_findings(part_reports, findings))
        if role.parts and opts.convention == "connectivity":
            findings.append(_packed_note(role, fans_all))
    elif stats.count:
        matches_ = ()

    kept = tuple(f for f in findings if opts.keeps(f.code))
    status = worst_status(kept)
    return LayerReport(
        name=source_ref.name, graph=source_ref.scope, node=_node_name(primary.use),
        op=primary.use.consumer.op_type, shape=source.shape, dtype=source.dtype, storage=source.location,
        layout=primary.layout, groups=role.groups if role else 1,
        fans={k: v for k, v in fans_all.items()} if fans_all else None,
        fan_in=fans.fan_in if fans else None, fan_out=fans.fan_out if fans else None,
        stats=stats, target=target, target_var=target_var, ratio=ratio, status=status,
        matches=matches_, distribution=distribution, findings=kept,
        consumers=tuple(Consumer(_node_name(v.use), v.use.consumer.op_type, v.use.scope.path, v.use.slot,
                                 v.layout, v.role.fans[opts.convention] if v.role and v.role.fans else None)
                        for v in views),
        parts=tuple(part_reports),
        suggestion=suggestion(target, gain, target_var, stats, fans_all, opts.convention, role.scale)
        if target_var and ratio and status != "ok" and stats.var > 0 else None,
        target_reason=target_reason, gain=gain, pool_area=pool_area, scale=role.scale if role else 1.0,
    )


PACKABLE = {"MatMul", "Gemm"}


def _packed(graph: ModelGraph, model: LoadedModel, use: WeightUse, role: Role, followed: Followed) -> Role:
    """Split a packed projection's connectivity fans and statistics into its parts."""
    axis = role.layout.find("O")
    n_out = followed.shape[axis]
    count = packed_parts(graph, use.scope, use.consumer, n_out, model.load_array)
    if count == 1:
        return role
    size = n_out // count
    names = ("q", "k", "v") if count == 3 else ("k", "v") if count == 2 else tuple(f"part{i}" for i in range(count))
    conn = role.fans["connectivity"]
    fans = {**role.fans, "connectivity": Fans(conn.fan_in, conn.fan_out // count)}
    parts = tuple(axis_part(name, followed.shape, axis, i * size, (i + 1) * size) for i, name in enumerate(names))
    return replace(role, fans=fans, parts=parts)


def _packed_note(role: Role, fans_all: dict[str, Fans]) -> Finding:
    part, whole = fans_all["connectivity"], fans_all["pytorch"]
    names = ", ".join(p.name for p in role.parts)
    message = f"{len(role.parts)} parts ({names}) used as separate matrices: fans are those of one part"
    if whole != part:
        ratio = (part.fan_in + part.fan_out) / (whole.fan_in + whole.fan_out)
        message += (f"; a Xavier init of the packed tensor (fans {whole.fan_in}/{whole.fan_out}) holds "
                    f"{ratio:.2g}× the per-part Xavier variance")
    return Finding("IA103", "info", message)


def _identity(followed: Followed, stored_shape: tuple[int, ...]) -> bool:
    return (not followed.reordered and followed.shape == stored_shape
            and list(followed.axis_map) == list(range(len(stored_shape))))


def _target_for(target: str, down) -> tuple[str, float, str | None]:
    if target == "auto":
        return auto_target(down)
    return target, (math.sqrt(2.0) if target == "he" else 1.0), None


def _shared_conflicts(views: list[_View], convention: str) -> list[Finding]:
    seen = {(v.layout, v.role.fans[convention] if v.role and v.role.fans else None)
            for v in views if v.role is not None}
    if len(seen) <= 1:
        return []
    described = "; ".join(
        f"{v.use.consumer.op_type} {_node_name(v.use)!r}: {v.layout or '?'}"
        + (f" fans {v.role.fans[convention].fan_in}/{v.role.fans[convention].fan_out}" if v.role and v.role.fans else "")
        for v in views if v.role is not None)
    return [Finding("IA302", "warn", f"shared by consumers that read it differently: {described}")]


def _part_findings(parts: list[PartReport], findings: list[Finding]) -> list[Finding]:
    """Name a part that is worse than the tensor as a whole."""
    whole = worst_status(findings)
    from .report import STATUS_ORDER
    out = []
    for part in parts:
        if STATUS_ORDER[part.status] > STATUS_ORDER[whole] and part.ratio is not None:
            code = "IA101" if part.status == "fail" else "IA102"
            out.append(Finding(code, part.status, f"part {part.name}: variance {part.ratio:.3g}× the target"))
    return out


def _is_candidate(tensor: TensorProto) -> bool:
    dims = [d for d in tensor.dims if d > 1]
    return tensor.data_type in FLOAT_TYPES and len(dims) >= 2


def _unclaimed(model: LoadedModel, graph: ModelGraph, claimed: set[tuple[str, str]],
               opts: AuditOptions) -> tuple[list[LayerReport], list[Skipped]]:
    """Weight-like constants that no supported weight slot reads: listed, never dropped."""
    layers, skipped = [], []
    for scope in graph.scopes:
        for ref in _stored_tensors(scope):
            if ref.key in claimed or not _is_candidate(ref.tensor):
                continue
            op, domain, slot = _final_consumer(graph, scope, ref.name)
            if op is None:
                continue
            if _canonical_domain(domain) == "" and op != "":
                skipped.append(Skipped(ref.name, scope.path, op, f"input {slot} of {op}, not a layer weight"))
                continue
            source = model.source(ref.tensor, ref.name, constant=ref.kind == "constant")
            stats, _ = measure(source)
            findings = [Finding("IA301", "warn", f"read by {domain}.{op}, an op whose weight layout is unknown")]
            findings += pathologies(stats, opts.profile, opts.fp16)
            kept = tuple(f for f in findings if opts.keeps(f.code))
            from .checker import distribution as family
            layers.append(LayerReport(
                name=ref.name, graph=scope.path, node="", op=f"{domain}.{op}", shape=source.shape,
                dtype=source.dtype, storage=source.location, layout="", groups=1, fans=None, fan_in=None,
                fan_out=None, stats=stats, target=None, target_var=None, ratio=None, status=worst_status(kept),
                matches=(), distribution=family(stats), findings=kept))
    return layers, skipped


def _stored_tensors(scope: Scope) -> Iterable[SourceRef]:
    for name, tensor in scope.initializers.items():
        yield SourceRef(scope.path, name, tensor, "initializer")
    from .trace import constant_tensor
    for node in scope.nodes:
        if node.op_type == "Constant" and node.output:
            tensor = constant_tensor(node)
            if tensor is not None:
                yield SourceRef(scope.path, node.output[0], tensor, "constant")


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
