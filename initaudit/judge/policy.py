"""The model's own init policy, inferred from its layers, and the layers that break it.

Most networks are initialized by one rule applied to every layer: a fan-based
scheme (Xavier, He, LeCun, PyTorch's default) or a fixed std whatever the fans
(N(0, 0.02) in GPT-2, BERT, ViT, Llama).  The bug that matters in such a model is
a layer the init function missed, left at the framework's default among layers
that all follow the rule.

Two explanations compete, each on the layers whose variance is consistent with
it within sampling noise (``bands.consistent``, the noise-aware test behind
``matches``):

* a fan-based scheme under one fan convention: the layers whose ``matches`` hold
  it (a depthwise conv drawn by ``xavier_uniform_`` matches Xavier on PyTorch's
  fans only, so every convention is tried, the one in use first);
* fixed-std groups: layers clustered by variance alone.  A group counts only if
  it holds at least ``max(2, 10 %)`` of the layers and at least one layer that no
  fan-based scheme explains under any fan convention: equal stds among layers the
  fan schemes explain are coincidences of their fans (He fan_out on one conv and
  He fan_in on the next draw the same std; so do Xavier on fans (a, b) and He
  fan_out on a fan_out of a + b), not a fixed std.  Up to ``MAX_GROUPS`` groups
  make one policy (GPT-2: 0.02, and 0.02/√(2·n_layer) for the residual projections).

The explanation that covers more layers is the policy if it covers more than
half of them (and at least ``MIN_LAYERS``); a tie goes to the fan scheme.  Every
other layer breaks it (IA501), unless the policy is PyTorch's default, which is
what nobody chose (a layer the framework initializes its own way, such as
MultiheadAttention's packed projection, is not a defect there).  No dominant
explanation: no policy, no findings.
Pure functions of statistics; no graph, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from initaudit.findings import Finding, finding
from initaudit.judge.bands import consistent
from initaudit.judge.schemes import POLICY_ORDER, SCHEME, std_target

MIN_LAYERS = 3
MAX_GROUPS = 3
GROUP_SHARE = 0.1


@dataclass(frozen=True)
class Sample:
    """One measured layer, as the inference sees it."""

    key: int                         # the caller's index
    name: str
    var: float                       # effective variance (Gemm alpha folded in)
    count: int
    kurtosis: float | None
    matches: tuple[str, ...]         # the fan-based vocabulary entries it is consistent with
    #: the same under every fan convention, the one in use first
    by_convention: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def matches_under(self, convention: str) -> tuple[str, ...]:
        return dict(self.by_convention).get(convention, ())


@dataclass(frozen=True)
class StdGroup:
    std: float
    members: tuple[int, ...]         # keys

    @property
    def label(self) -> str:
        return std_target(self.std)


@dataclass(frozen=True)
class Policy:
    kind: str                        # "std" | "scheme"
    scheme: str | None               # kind "scheme": a `matches` entry
    convention: str | None           # kind "scheme": the fan convention it holds under
    groups: tuple[StdGroup, ...]     # kind "std": largest first
    followers: frozenset[int]        # keys of the layers consistent with it
    layers: int                      # layers the inference looked at
    follower_names: tuple[str, ...] = ()
    in_use: str | None = None        # the convention of the audit

    @property
    def chosen(self) -> bool:
        """An init someone chose (not the framework default): layers that differ break it."""
        return not (self.kind == "scheme" and not SCHEME[str(self.scheme)].chosen)

    @property
    def label(self) -> str:
        """``std 0.02 (8 layers) + std 0.00707 (8 layers)`` or ``xavier``."""
        if self.kind == "scheme":
            return str(self.scheme) if self.convention == self.in_use else f"{self.scheme} ({self.convention} fans)"
        if len(self.groups) == 1:
            return f"std {self.groups[0].std:.3g}"
        return " + ".join(f"std {g.std:.3g} ({len(g.members)} layers)" for g in self.groups)

    def summary(self) -> str:
        return f"{self.label}: {len(self.followers)} of {self.layers} layers"


def _pooled(samples: list[Sample]) -> float:
    return sum(s.var * s.count for s in samples) / sum(s.count for s in samples)


def _fits(sample: Sample, var: float) -> bool:
    return var > 0 and consistent(sample.var / var, sample.count, sample.kurtosis)


def _round_std(samples: list[Sample], std: float) -> float:
    """The pooled std rounded to the fewest significant digits (0.01996 → 0.02) that stay within
    one standard error of the pooled std, ½·sqrt((2+κ)/N), or 0.2 % if larger: a value the layers
    cannot tell apart from the measured one, never a coarser one (0.00707 does not become 0.007)."""
    total = sum(s.count for s in samples)
    kurtosis = max(-1.2, sum((s.kurtosis or 0.0) * s.count for s in samples) / total)
    tolerance = max(0.002, 0.5 * math.sqrt((2.0 + kurtosis) / total))
    for digits in (1, 2, 3):
        rounded = float(f"{std:.{digits}g}")
        if abs(rounded / std - 1.0) <= tolerance and all(_fits(s, rounded * rounded) for s in samples):
            return rounded
    return std


def std_groups(samples: list[Sample]) -> list[StdGroup]:
    """Clusters of layers whose variances agree within noise, largest layers seeding first."""
    remaining = sorted(samples, key=lambda s: (-s.count, s.key))
    groups = []
    while remaining:
        var = remaining[0].var
        members = [remaining[0]]
        for _ in range(3):  # re-centre on the pooled variance of the members
            found = [s for s in remaining if _fits(s, var)]
            if not found:
                break
            members, var = found, _pooled(found)
        groups.append(StdGroup(_round_std(members, math.sqrt(var)), tuple(s.key for s in members)))
        remaining = [s for s in remaining if s.key not in set(groups[-1].members)]
    return groups


def infer_policy(samples: list[Sample]) -> Policy | None:
    """The init most layers share, or None when no explanation covers more than half of them."""
    usable = [s for s in samples if s.count >= 2 and s.var > 0 and math.isfinite(s.var)]
    n = len(usable)
    if n < MIN_LAYERS:
        return None
    conventions = [c for c, _ in usable[0].by_convention] or ["connectivity"]
    pairs = [(c, scheme) for c in conventions for scheme in POLICY_ORDER]  # in-use convention first
    cover = {(c, scheme): frozenset(s.key for s in usable if scheme in (s.matches_under(c) or s.matches))
             for c, scheme in pairs}
    convention, scheme = max(pairs, key=lambda pair: len(cover[pair]))  # first of the largest

    # a layer some fan scheme explains is no evidence of a fixed std: equal stds among such layers are
    # coincidences of their fans (He fan_out on one conv, He fan_in on the next)
    explained = frozenset().union(*cover.values())
    least = max(2, math.ceil(GROUP_SHARE * n))
    groups = [g for g in std_groups(usable) if len(g.members) >= least and not explained >= set(g.members)]
    groups = sorted(groups, key=lambda g: (-len(g.members), g.std))[:MAX_GROUPS]
    std_cover = frozenset(s.key for s in usable if any(_fits(s, g.std * g.std) for g in groups))

    if groups and len(std_cover) > len(cover[convention, scheme]):
        kind, followers = "std", std_cover
    else:
        kind, followers, groups = "scheme", cover[convention, scheme], []
    if 2 * len(followers) <= n or len(followers) < MIN_LAYERS:
        return None
    names = tuple(s.name for s in usable if s.key in followers)
    return Policy(kind, scheme if kind == "scheme" else None, convention if kind == "scheme" else None,
                  tuple(groups), followers, n, names, conventions[0])


def std_matches(policy: Policy | None, sample: Sample) -> tuple[str, ...]:
    """``std:VALUE`` entries for `matches`: the policy's fixed stds this layer is consistent with."""
    if policy is None or policy.kind != "std":
        return ()
    return tuple(g.label for g in policy.groups if _fits(sample, g.std * g.std))


def nearest_group(policy: Policy, sample: Sample) -> StdGroup:
    """The group a layer belongs to: the closest std on a log scale (for a layer that fits none,
    the std it most plausibly was meant to have)."""
    return min(policy.groups, key=lambda g: abs(math.log(sample.var / (g.std * g.std))))


def breach(policy: Policy | None, sample: Sample) -> Finding | None:
    """IA501 when the model has a chosen policy and this layer is not consistent with it."""
    if (policy is None or not policy.chosen or sample.key in policy.followers
            or not (sample.var > 0 and sample.count >= 2)):
        return None
    got = [m for m in sample.matches if m not in ("other", "zero")]
    instead = (f"matches {' and '.join(got)} (std {math.sqrt(sample.var):.3g})" if got
               else f"std {math.sqrt(sample.var):.3g}, which matches no scheme")
    if policy.kind == "std":
        if len(policy.groups) == 1:
            expected = f"std {policy.groups[0].std:.3g}"
        else:
            expected = " or ".join(f"std {g.std:.3g} ({len(g.members)})" for g in policy.groups)
    else:
        expected = policy.label
    return finding("IA501", f"{instead}; the other {len(policy.followers)} layers match {expected}")


def policy_target(policy: Policy, sample: Sample, covered: bool) -> tuple[str, float, str, str | None] | None:
    """(target, gain, reason, fan convention) for ``--target auto`` from the policy, or None to keep
    the nonlinearity rule.

    A chosen fan scheme (Xavier, He fan_in, LeCun) holds every layer, on the fans of
    its convention; a fixed std holds the layers no nonlinearity rule covers
    (``covered`` False: GELU, SiLU, attention); PyTorch's default is nobody's choice.
    """
    where = f"the model's policy ({policy.summary()})"
    if policy.kind == "scheme":
        scheme = SCHEME[str(policy.scheme)]
        if scheme.target is None or not scheme.chosen:
            return None
        return scheme.target, scheme.gain, where, policy.convention
    if covered:
        return None
    group = nearest_group(policy, sample)
    return group.label, 1.0, where, None
