"""One measured weight to its ``LayerReport``: its target (options, layer rules, the model's policy),
the verdict, per-part verdicts, the suggestion."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER, Finding, finding, worst_status
from initaudit.judge.bands import bands_for, consistent
from initaudit.judge.policy import breach, policy_target, std_matches
from initaudit.judge.schemes import AUTO_TARGETS, activation_factor, auto_target, fixed_std, usual_gain
from initaudit.judge.suggest import suggestion
from initaudit.judge.verdict import distribution, orthogonal_gain, pathologies, verdict
from initaudit.measure.stats import TensorStats
from initaudit.pipeline.options import AuditOptions
from initaudit.pipeline.specs import LayerSpec
from initaudit.read.tensors import TensorSource
from initaudit.report.model import Consumer, LayerReport, PartReport
from initaudit.trace.downstream import Downstream
from initaudit.trace.fans import Fans
from initaudit.trace.ops import Role
from initaudit.trace.plan import MeasureTask, Planned

#: Orthogonality is checked on matrices up to this many elements (a Gram matrix of ≤ 1024²).
ORTHOGONAL_MAX = 1 << 20


def _target(opts: AuditOptions, down: Downstream, spec: LayerSpec) -> tuple[str, float, str | None, str | None]:
    """(target, gain, reason, the fan convention of the target when not the one in use)."""
    target = spec.choice.target or opts.target
    chosen: tuple[str, float, str | None, str | None]
    if target == "auto":
        chosen = (*auto_target(down), None)
        if spec.policy is not None and spec.sample is not None:
            chosen = policy_target(spec.policy, spec.sample, down.activation in AUTO_TARGETS) or chosen
    else:
        chosen = target, usual_gain(target), spec.choice.reason, None
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
    return finding("IA103", message)


def _parts(parts, part_stats, target_var: float, profile: str, whole: list[Finding]) -> tuple[list[PartReport], list[Finding]]:
    reports, findings = [], []
    worst = STATUS_ORDER[worst_status(whole)]
    for part, stats in zip(parts, part_stats):
        ratio = stats.var / target_var if stats.count else None
        status = "ok" if ratio is None else bands_for(stats.count, stats.excess_kurtosis, profile).status(ratio)
        reports.append(PartReport(part.name, stats, ratio, status))
        if STATUS_ORDER[status] > worst:  # a single bad gate, hidden in the tensor's average
            code = "IA101" if status == "fail" else "IA102"
            findings.append(finding(code, f"part {part.name}: variance {ratio:.3g}× the target"))
    return reports, findings


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


def _one_cause(findings: list[Finding], broken: Finding,
               keeps: Callable[[str], bool] = lambda code: True) -> list[Finding]:
    """A layer off its target (IA101/IA102) that also breaks the model's policy (IA501) is off both for one
    cause, its variance: one IA501 that says both, at the worse of the two severities.  Only findings the
    code filters keep (``keeps``: --select/--ignore, a layer rule's ``codes``) are merged, so that ignoring
    either code still drops that one and leaves the other."""
    off = [f for f in findings if f.code in ("IA101", "IA102") and keeps(f.code)]
    if not off or not keeps(broken.code):
        return [*findings, broken]
    severity = max([broken, *off], key=lambda f: STATUS_ORDER[SEVERITY_STATUS[f.severity]]).severity
    merged = finding("IA501", "; ".join([broken.message, *(f"also {f.message} ({f.code})" for f in off)]), severity)
    return [f for f in findings if f not in off] + [merged]


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
    if spec.sample is not None and spec.choice.target is None:  # a layer rule's own target outranks the majority
        broken = breach(spec.policy, spec.sample)
        if broken is not None:
            ignored = tuple(code for code, _ in spec.choice.ignore_codes)
            out.findings = _one_cause(out.findings, broken, lambda code: opts.keeps(code) and not any(
                code.startswith(c) for c in ignored))
    out.parts, part_findings = _parts(p.task.parts, part_stats, result.target_var, profile,
                                      prior + out.findings)
    out.findings.extend(part_findings)
    if role.parts and role.fans and opts.convention == "connectivity":
        out.findings.append(_packed_note(role, role.fans))
    if stats.count and role.fans:
        out.forward_gain = role.fans["connectivity"].fan_in * stats.var * role.scale ** 2 * activation_factor(down)
    return out


def narrowed_ignore(findings: list[Finding], ignored: tuple[tuple[str, str], ...]) -> list[Finding]:
    """A layer's findings less the codes a layer rule's ``codes`` ignores, each ignored code leaving
    an IA502 note with the rule's reason (only where it did drop a finding)."""
    kept = []
    notes: dict[str, str] = {}
    for f in findings:
        hit = next(((code, note) for code, note in ignored if f.code.startswith(code)), None)
        if hit is None:
            kept.append(f)
        else:
            notes.setdefault(hit[0], hit[1])
    return kept + [finding("IA502", note) for note in notes.values()]


def finish(p: Planned, stats: TensorStats, part_stats: list[TensorStats], opts: AuditOptions,
           spec: LayerSpec | None = None) -> LayerReport:
    """The verdict on a measured weight."""
    spec = spec or LayerSpec()
    profile = spec.choice.profile or opts.profile
    findings = p.findings + pathologies(stats, profile, opts.fp16)
    role = p.primary.role if p.primary else None
    checked = Checked()
    if spec.choice.ignore is not None:  # listed with its statistics and the reason, held to nothing
        findings = [finding("IA502", spec.choice.ignore)]
    elif role is not None and role.kind == "embedding":
        findings.append(finding("IA901", "embedding table read by Gather: not held to a fan-based target"))
    elif p.fans is not None and p.integer_units:
        findings.append(finding("IA305", "integer weights without a scale: statistics in integer units"))
    elif role is not None and p.fans is not None and p.down is not None:
        checked = _check(p, role, p.fans, p.down, stats, part_stats, opts, findings, spec)
        findings.extend(checked.findings)
    if spec.choice.ignore_codes and spec.choice.ignore is None:
        findings = narrowed_ignore(findings, spec.choice.ignore_codes)

    status = worst_status(findings)
    primary = p.primary
    return LayerReport(
        name=p.ref.name, graph=p.ref.scope, node=primary.node_name if primary else "",
        op=p.unsupported_op or (primary.use.consumer.op_type if primary else ""), shape=p.source.shape,
        dtype=p.source.dtype, storage=p.source.location, layout=primary.layout if primary else "",
        groups=role.groups if role else 1, fans=dict(role.fans) if role and role.fans else None,
        fan_in=p.fans.fan_in if p.fans else None, fan_out=p.fans.fan_out if p.fans else None, stats=stats,
        target=checked.target, target_var=checked.target_var, ratio=checked.ratio, status=status,
        matches=checked.matches, distribution=distribution(stats), findings=tuple(findings),
        consumers=tuple(Consumer(v.node_name, v.use.consumer.op_type, v.use.scope.path, v.use.slot, v.layout,
                                 v.role.fans[opts.convention] if v.role and v.role.fans else None)
                        for v in p.views),
        parts=tuple(checked.parts),
        suggestion=suggestion(checked.target, checked.gain, checked.target_var, stats, role.fans, opts.convention,
                              role.scale)
        if role and checked.target and checked.target_var and checked.ratio and status != "ok" and stats.var > 0
        else None,
        target_reason=checked.reason, gain=checked.gain, pool_area=p.pool_area, scale=role.scale if role else 1.0,
        input_scale=p.input_scale,
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
