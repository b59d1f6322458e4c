"""Per-layer specs for one model: the layer rules (config) each layer falls under, and the
model's own init policy inferred from the measured layers (``judge.policy.infer_policy``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from initaudit.judge.policy import Policy, Sample, infer_policy
from initaudit.judge.verdict import matches
from initaudit.measure.stats import TensorStats
from initaudit.pipeline.layer_rules import RuleChoice, choose, module_path
from initaudit.pipeline.options import AuditOptions
from initaudit.trace.plan import Planned, checkable

Measured = tuple[TensorStats, list[TensorStats]]


def layer_names(p: Planned) -> list[str]:
    """The names a config glob is tried on: tensor, consuming nodes, PyTorch module paths."""
    names = [p.ref.name]
    for view in p.views:
        names.append(view.node_name)
        module = module_path(view.use.consumer)
        if module:
            names.append(module)
    return names


def layer_op(p: Planned) -> str:
    if p.unsupported_op:
        return p.unsupported_op.rsplit(".", 1)[-1]
    return p.primary.use.consumer.op_type if p.primary else ""


def sample_of(key: int, p: Planned, stats: TensorStats, convention: str = "connectivity") -> Sample | None:
    """The layer as the policy inference sees it, if it is a clean, checkable layer."""
    if not checkable(p) or p.fans is None or p.primary is None or p.primary.role is None:
        return None
    if stats.nonfinite or stats.count < 2 or not stats.var > 0:
        return None  # broken values are IA2xx's business, not a policy
    role = p.primary.role
    scale = role.scale
    ours = matches(stats, p.fans, scale)
    others = [(c, matches(stats, fans, scale)) for c, fans in (role.fans or {}).items() if c != convention]
    return Sample(key, p.ref.name, stats.var * scale * scale, stats.count, stats.excess_kurtosis, ours,
                  ((convention, ours), *others))


def layer_specs(planned: Sequence[Planned], measured: Sequence[Measured],
                opts: AuditOptions) -> tuple[list[LayerSpec], Policy | None, tuple[int, ...]]:
    """(spec per layer, the inferred policy, the indices of the layer rules that matched)."""
    choices = [choose(opts.layers, layer_names(p), layer_op(p)) if opts.layers else RuleChoice() for p in planned]
    samples = [None if choice.ignore is not None else sample_of(i, p, stats, opts.convention)
               for i, (p, (stats, _), choice) in enumerate(zip(planned, measured, choices))]
    policy = infer_policy([s for s in samples if s is not None]) if opts.profile == "init" else None
    specs = [LayerSpec(choice, policy, sample) for choice, sample in zip(choices, samples)]
    return specs, policy, tuple(sorted({i for c in choices for i in c.rules}))


@dataclass(frozen=True)
class LayerSpec:
    """What layer rules and the model's inferred policy say of one layer."""

    choice: RuleChoice = field(default_factory=RuleChoice)
    policy: Policy | None = None
    sample: Sample | None = None       # this layer as the policy inference saw it
