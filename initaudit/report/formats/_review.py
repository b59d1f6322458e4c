"""The trained-model review in the reports: one helper per reporter, so each calls it in one line."""
from __future__ import annotations

import math
from typing import Any

from initaudit.judge.review import Review, check_notes
from initaudit.report.model import ModelReport


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def review_dict(review: Review) -> dict[str, Any]:
    """JSON ``review`` of a layer: the evidence of every check."""
    disp = review.dispersion
    return {
        "units": review.units,
        "values_per_unit": review.per_unit,
        "dispersion": None if disp is None else {"d": _num(disp.d), "z": _num(disp.z), "p": _num(disp.p)},
        "input_dispersion": None if review.input_dispersion is None else {
            "d": _num(review.input_dispersion.d), "z": _num(review.input_dispersion.z),
            "p": _num(review.input_dispersion.p)},
        "family": review.family,
        "schemes": list(review.schemes),
        "never_trained": review.fresh,
        "dead_units": review.dead,
        "dead_indices": list(review.dead_indices),
        "dead_units_zero": review.dead_zero,
        "sqnr_int8_db": _num(review.sqnr_int8_db),
        "max_over_rms": _num(review.max_over_rms),
        "float16_flushed": review.float16_flushed,
        "float16_subnormal": review.float16_subnormal,
        "log10_scale": _num(review.log_gain),
        "scale_z": _num(review.scale_z),
        "scale_group": review.scale_group,
        "scale_offset_log10": _num(review.scale_offset),
        "spectrum": None if review.spectrum is None else {
            "rows": review.spectrum.rows, "cols": review.spectrum.cols,
            "top_singular_value": _num(review.spectrum.top), "rms": _num(review.spectrum.rms),
            "ratio_to_edge": _num(review.spectrum_ratio), "fresh_limit": _num(review.spectrum_limit)},
        "checks": check_notes(review),
    }


#: Why each check of the review looks at what it does (shown under the review table).
CHECK_WHY = {
    "never trained": "a fresh i.i.d. draw gives output (and input) units whose norms spread like sampling noise "
                     "(dispersion D ≈ 1, |z| ≤ 4); trained units differ far more or far less. Called never "
                     "trained (IA401) only when, in addition, the values fit an init family and the variance "
                     "equals a known init scheme's, on layers of at least 4096 values and 8 units, and no singular value "
                     "stands out of the bulk a fresh draw allows (σ₁ within the Marchenko–Pastur edge plus a "
                     "Tracy–Widom margin)",
    "dead units": "units whose norm is below 1e-3 × the median unit norm pass nothing (IA402: warn from 10 % of the "
                  "units exactly zero, info when they decayed to a tiny non-zero norm)",
    "scale vs comparable layers": "rms·√fan_in against layers with the same op and kernel (IA403 beyond robust "
                                  "z 3.5 and 100× from their median)",
    "int8 outliers": "per-tensor int8 takes its step from max|w|; below -6 dB SQNR of the other values one value "
                     "crushes the layer (IA404)",
    "float16": "values below 2^-25 become 0 in float16 (IA207 with --fp16 when they carry ≥ 0.1 % of Σw²)",
}


def review_markdown(model: ModelReport, cap: int | None = None) -> list[str]:
    """A "Trained-model review" section: the profile's reason and each check per layer.

    With ``cap`` (the Markdown report cutting itself to fit a comment) only the flagged
    layers are listed, at most ``cap`` of them, and the rest counted.
    """
    lines = []
    if model.profile_reason:
        lines.append(f"_Profile: {model.profile_reason}_\n")
    reviewed = [layer for layer in model.layers if layer.review is not None]
    if not reviewed:
        return lines
    lines.append("### Trained-model review\n")
    lines.append("| layer | status | " + " | ".join(check_notes(reviewed[0].review).keys()) + " |")  # type: ignore[arg-type]
    lines.append("|" + "---|" * (2 + len(check_notes(reviewed[0].review))))  # type: ignore[arg-type]
    listed = reviewed if cap is None else [layer for layer in reviewed if layer.status != "ok"][:cap]
    for layer in listed:
        notes = check_notes(layer.review)  # type: ignore[arg-type]
        cells = [layer.name, layer.status] + [notes.get(k, "-") for k in check_notes(reviewed[0].review)]  # type: ignore[arg-type]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if len(listed) < len(reviewed):
        lines.append(f"\n… {len(reviewed) - len(listed)} more reviewed layers not listed (the JSON and HTML reports list all).")
    lines.append("")
    lines.extend(f"- _{check}_: {why}" for check, why in CHECK_WHY.items())
    lines.append("")
    return lines
