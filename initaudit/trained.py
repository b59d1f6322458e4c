"""The trained-model review applied to a model: the unit pass, the profile ``auto`` decides, the findings.

Runs after the moments pass (``measure``) and the per-layer verdicts (``layers.finish``):
``unit_pass`` streams each weight once more for its per-unit sums (only with
``--profile trained|auto`` or ``--fp16``), ``decide_profile`` picks init or trained for
``--profile auto``, and ``apply_review`` turns the evidence into findings.  In the
trained profile the Xavier ratio stays in the report but no longer raises IA101/IA102.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from .checker import distribution
from .layers import Planned
from .measure import task_values
from .options import AuditOptions
from .report import Finding, LayerReport, worst_status
from .review import (
    Review,
    dead_finding,
    dispersion,
    flush_finding,
    fresh_finding,
    outlier_finding,
    review_layer,
    scale_finding,
    scale_outliers,
)
from .stats import TensorStats
from .tensors import CHUNK_ELEMS
from .units import UnitSums, aligned_chunk, unit_axes, unit_sums

#: Variance verdicts against a target: information only in the trained profile.
TARGET_CODES = ("IA101", "IA102")
#: ``--profile auto`` calls a model trained when at least this share of its testable layers shows structure.
AUTO_TRAINED_SHARE = 0.5
AUTO_MIN_VALUES = 256
AUTO_MIN_UNITS = 4
#: |z| of the unit-norm dispersion beyond which a layer shows structure (a fresh layer: p < 1e-6).
Z_STRUCTURE = 5.0


def _chunks(p: Planned, chunk: int = CHUNK_ELEMS) -> Iterator[tuple[int, np.ndarray]]:
    with np.errstate(all="ignore"):
        yield from task_values(p.task, chunk)


def reviewable(p: Planned) -> bool:
    """Float weights (or dequantized ones) the pass can read value by value."""
    return p.task.decoder is None and (p.source.is_float or p.task.dequant is not None) and not p.integer_units


def unit_pass(planned: Sequence[Planned]) -> list[UnitSums | None]:
    """Per-unit sums of every reviewable weight (None for the others)."""
    with threadpool_limits(limits=1, user_api="blas"):  # short dot products: BLAS threads only spin
        return _unit_pass(planned)


def _unit_pass(planned: Sequence[Planned]) -> list[UnitSums | None]:
    out: list[UnitSums | None] = []
    for p in planned:
        if not reviewable(p):
            out.append(None)
            continue
        role = p.primary.role if p.primary else None
        axes = in_axes = None
        if role is not None and role.kind == "layer" and p.primary is not None:
            op = p.primary.use.consumer.op_type
            axes = unit_axes(p.source.shape, p.primary.layout, op, role.groups)
            in_axes = unit_axes(p.source.shape, p.primary.layout, op, role.groups, side="in")
        out.append(unit_sums(_chunks(p, aligned_chunk(CHUNK_ELEMS, axes, in_axes)), axes, p.source.count, in_axes))
    return out


def decide_profile(sums: Sequence[UnitSums | None], stats: Sequence[TensorStats]) -> tuple[str, str]:
    """``--profile auto``: trained when most testable layers show structure a fresh draw cannot have.

    A layer of at least AUTO_MIN_VALUES values and AUTO_MIN_UNITS units shows structure when the
    norms of its output or input units spread far more, or far less, than an i.i.d. draw allows
    (|z| > Z_STRUCTURE), or when its values fit no init family (heavy tails, skew).
    """
    tested = structured = 0
    for s, st in zip(sums, stats):
        if s is None or s.units < AUTO_MIN_UNITS or s.count < AUTO_MIN_VALUES or not st.var > 0:
            continue
        tested += 1
        zs = [d.z for d in (dispersion(s), dispersion(s, "in") if s.in_units >= AUTO_MIN_UNITS else None) if d]
        structured += any(abs(z) > Z_STRUCTURE for z in zs) or distribution(st) == "other"
    rule = f"(unit-norm dispersion |z| > {Z_STRUCTURE:g}, or values that fit no init family)"
    if tested and structured >= AUTO_TRAINED_SHARE * tested:
        return "trained", f"auto: trained, {structured} of {tested} testable layers show structure {rule}"
    if not tested:
        return "init", "auto: init, no layer large enough to test for structure"
    return "init", (f"auto: init, {structured} of {tested} testable layers show structure {rule}, "
                    f"fewer than {AUTO_TRAINED_SHARE:.0%}")


def looks_trained(stats: Sequence[TensorStats]) -> str | None:
    """For an init run (no unit pass): a hint when most layers' values fit no init family."""
    sized = [st for st in stats if st.count >= AUTO_MIN_VALUES and st.var > 0]
    other = sum(distribution(st) == "other" for st in sized)
    if sized and other >= AUTO_TRAINED_SHARE * len(sized):
        return (f"{other} of {len(sized)} layers hold values that fit no init family (uniform, normal, "
                f"truncated normal): the model looks trained; review it with --profile trained (or auto)")
    return None


def model_findings(findings: Sequence[Finding], opts: AuditOptions) -> list[Finding]:
    """Model-level findings kept in this profile: the signal-drift estimate (IA104) multiplies each
    layer's variance against its init gain, which trained layers (folded BatchNorm) need not keep;
    in the trained profile its number stays (``signal_gain``) but raises no finding."""
    return [f for f in findings if not (opts.profile == "trained" and f.code == "IA104")]


def profile_finding(reason: str | None) -> Finding | None:
    """IA405 (model level, info): why this profile, or the hint that an init run met a trained model."""
    return Finding("IA405", "info", reason) if reason else None


def _group_key(layer: LayerReport) -> tuple[object, ...]:
    """Comparable layers: same op, same kernel (receptive field), depthwise or not."""
    kernel = tuple(d for d, letter in zip(layer.shape, layer.layout) if letter not in "OIB1")
    depthwise = layer.fan_in is not None and layer.groups > 1 and layer.fan_in == math.prod(kernel or (1,))
    return (layer.op, kernel, depthwise)


def apply_review(layers: Sequence[LayerReport], sums: Sequence[UnitSums | None],
                 opts: AuditOptions) -> list[LayerReport]:
    """Findings of the review added to each layer (trained profile), IA207 with ``--fp16``."""
    trained = opts.profile == "trained"
    reviews: list[Review | None] = []
    for layer, s in zip(layers, sums):
        if s is None or not trained:
            reviews.append(None)
            continue
        fan_in = layer.fans["connectivity"].fan_in if layer.fans else None
        reviews.append(review_layer(s, layer.stats, layer.fans, distribution(layer.stats), fan_in, layer.scale))
    if trained:
        keys = [_group_key(layer) for layer in layers]
        gains = [r.log_gain if r is not None and not r.fresh else None for r in reviews]
        zs, offsets = scale_outliers(keys, gains)
        compared = [key for key, gain in zip(keys, gains) if gain is not None]
        sizes = {key: compared.count(key) for key in set(keys)}
    out = []
    for i, (layer, s, review) in enumerate(zip(layers, sums, reviews)):
        added: list[Finding] = []
        findings = list(layer.findings)
        if trained:
            findings = [f for f in findings if f.code not in TARGET_CODES]
        if review is not None:
            review = replace(review, scale_z=zs[i], scale_offset=offsets[i], scale_group=sizes[keys[i]])
            all_zero = layer.stats.total > 0 and layer.stats.zeros == layer.stats.total   # IA202 says it
            for finding in (fresh_finding(review, layer.stats), None if all_zero else dead_finding(review),
                            scale_finding(review) if not review.fresh else None,
                            outlier_finding(review)):
                if finding is not None:
                    added.append(finding)
        if opts.fp16 and s is not None:
            flushed = flush_finding(s)
            if flushed is not None:
                added.append(flushed)
        findings.extend(f for f in added if opts.keeps(f.code))
        if tuple(findings) == layer.findings and review is None:
            out.append(layer)
            continue
        status = worst_status(findings)
        suggestion = layer.suggestion if not trained or any(f.code in TARGET_CODES for f in findings) else None
        out.append(replace(layer, findings=tuple(findings), status=status, suggestion=suggestion, review=review))
    return out
