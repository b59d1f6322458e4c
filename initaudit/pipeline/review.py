"""The trained-model review applied to a model's layers: evidence per layer, scale across layers, findings.

Runs after the moments pass and the per-layer verdicts (``pipeline.layer.finish``), on the
per-unit sums of ``measure.units.measure_units`` (only with ``--profile trained|auto`` or
``--fp16``): ``apply_review`` walks ``judge.review.REVIEW_CHECKS`` over each layer's evidence.
In the trained profile the Xavier ratio stays in the report but no longer raises IA101/IA102.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from initaudit.findings import Finding, finding, worst_status
from initaudit.judge.review import (
    REVIEW_CHECKS,
    Review,
    flush_finding,
    review_layer,
    scale_outliers,
    with_spectrum,
)
from initaudit.judge.verdict import distribution
from initaudit.measure.spectrum import Spectrum
from initaudit.measure.units import UnitSums
from initaudit.pipeline.options import AuditOptions
from initaudit.report.model import LayerReport

#: Variance verdicts against a target: information only in the trained profile.
TARGET_CODES = ("IA101", "IA102")


def model_findings(findings: Sequence[Finding], opts: AuditOptions) -> list[Finding]:
    """Model-level findings kept in this profile: the signal-drift estimate (IA104) multiplies each
    layer's variance against its init gain, which trained layers (folded BatchNorm) need not keep;
    in the trained profile its number stays (``signal_gain``) but raises no finding."""
    return [f for f in findings if not (opts.profile == "trained" and f.code == "IA104")]


def profile_finding(reason: str | None) -> Finding | None:
    """IA405 (model level, info): why this profile, or the hint that an init run met a trained model."""
    return finding("IA405", reason) if reason else None


def _group_key(layer: LayerReport) -> tuple[object, ...]:
    """Comparable layers: same op, same kernel (receptive field), depthwise or not."""
    kernel = tuple(d for d, letter in zip(layer.shape, layer.layout) if letter not in "OIB1")
    depthwise = layer.fan_in is not None and layer.groups > 1 and layer.fan_in == math.prod(kernel or (1,))
    return (layer.op, kernel, depthwise)


def apply_review(layers: Sequence[LayerReport], sums: Sequence[UnitSums | None], opts: AuditOptions,
                 spectrum: Callable[[int], Spectrum | None] | None = None) -> list[LayerReport]:
    """Findings of the review added to each layer (trained profile), IA207 with ``--fp16``.

    ``spectrum(i)`` measures layer i's largest singular value; it is asked only for the layers every
    other test calls fresh, whose never-trained verdict it confirms or clears.
    """
    trained = opts.profile == "trained"
    reviews: list[Review | None] = []
    for layer, s in zip(layers, sums):
        if s is None or not trained:
            reviews.append(None)
            continue
        fan_in = layer.fans["connectivity"].fan_in if layer.fans else None
        evidence = review_layer(s, layer.stats, layer.fans, distribution(layer.stats), fan_in, layer.scale,
                                layer.input_scale)
        if evidence.fresh and spectrum is not None:
            evidence = with_spectrum(evidence, spectrum(len(reviews)))
        reviews.append(evidence)
    if trained:
        keys = [_group_key(layer) for layer in layers]
        gains = [r.log_gain if r is not None and not r.fresh else None for r in reviews]
        zs, offsets = scale_outliers(keys, gains)
        compared = [key for key, gain in zip(keys, gains) if gain is not None]
        sizes = {key: compared.count(key) for key in set(keys)}
    out = []
    for i, (layer, s, review) in enumerate(zip(layers, sums, reviews)):
        findings = [f for f in layer.findings if not (trained and f.code in TARGET_CODES)]
        if review is not None:
            review = replace(review, scale_z=zs[i], scale_offset=offsets[i], scale_group=sizes[keys[i]])
            findings.extend(filter(None, (check(review, layer.stats) for check in REVIEW_CHECKS)))
        if opts.fp16 and s is not None:
            findings.extend(filter(None, [flush_finding(s)]))
        if tuple(findings) == layer.findings and review is None:
            out.append(layer)
            continue
        # a trained layer is not held to its init target: no fix towards it either
        out.append(replace(layer, findings=tuple(findings), status=worst_status(findings),
                           suggestion=None if trained else layer.suggestion, review=review))
    return out
