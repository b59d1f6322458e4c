"""The review-first headline of the HTML report (``--profile trained``, or ``auto`` deciding trained).

Against Xavier a trained layer sits far from 1× while it is fine, so the init chart would paint a
healthy model red.  What a reviewer signs off instead is each check of the trained review against its
own threshold: the units' norm dispersion against the fresh-draw zone |z| ≤ 4 (and σ₁ against the
Marchenko–Pastur edge), the share of dead units against 10 %, the scale against comparable layers
against 100×, the int8 SQNR against −6 dB.  A chart of those per layer, and the table's columns, in the
colour of the finding each check raised (the verdict's colours); the Xavier ratio is a secondary column.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from initaudit.findings import SEVERITY_STATUS, Finding
from initaudit.judge.review import (
    DEAD_WARN_FRACTION,
    SCALE_OUTLIER_FACTOR,
    SCALE_OUTLIER_Z,
    SQNR_WARN_DB,
    Z_IID,
    Review,
    check_notes,
)
from initaudit.report.model import LayerReport, ModelReport

COLOR = {"ok": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828", "info": "#546e7a"}
QUIET = "#81c784"   # a check that found nothing: the ok green, lighter, so the eye goes to what was flagged


def finding_of(layer: LayerReport, code: str) -> Finding | None:
    return next((f for f in layer.findings if f.code == code), None)


def check_class(layer: LayerReport, code: str) -> str:
    """The CSS class of a check's cell: the severity of the finding it raised (info shown as such)."""
    f = finding_of(layer, code)
    if f is None:
        return ""
    return "info" if f.severity == "info" else SEVERITY_STATUS[f.severity]


def check_color(layer: LayerReport, code: str) -> str:
    f = finding_of(layer, code)
    return QUIET if f is None else COLOR["info" if f.severity == "info" else SEVERITY_STATUS[f.severity]]


# -- the evidence of each check, as a cell (text, sort key) -----------------------------------------------------

def never_trained(review: Review) -> tuple[str, float | None]:
    disp = review.dispersion
    if disp is None:
        return "not tested", None
    text = f"z {disp.z:+.3g}"
    ratio, limit = review.spectrum_ratio, review.spectrum_limit
    if ratio is not None and limit is not None:
        text += f"; σ₁ {ratio:.3f}× edge (≤ {limit:.3f}×)"
    return text, abs(disp.z)


def dead(review: Review) -> tuple[str, float | None]:
    if review.units < 2:
        return "-", None
    share = review.dead / review.units
    return f"{review.dead} of {review.units} ({share:.0%})", share


def scale(review: Review) -> tuple[str, float | None]:
    if review.scale_z is None or review.scale_offset is None:
        return ("not compared" if review.log_gain is not None else "-"), None
    factor = 10 ** review.scale_offset
    return (f"{factor:.3g}× the median of {review.scale_group} (z {review.scale_z:+.1f})",
            abs(review.scale_offset))


def int8(review: Review) -> tuple[str, float | None]:
    if review.sqnr_int8_db is None:
        return "-", None
    return f"{review.sqnr_int8_db:.1f} dB", review.sqnr_int8_db


def float16(review: Review) -> tuple[str, float | None]:
    return f"{review.float16_flushed} flush to 0", float(review.float16_flushed)


@dataclass(frozen=True)
class Check:
    key: str                                   # the table column's sort key
    label: str
    limit: str                                 # the threshold, under the column's name
    code: str                                  # the rule the check raises
    cell: Callable[[Review], tuple[str, float | None]]
    note: str                                  # check_notes' key: its words go in the cell's tooltip


CHECKS = (
    Check("never_trained", "never trained", f"dispersion z; a fresh draw has |z| ≤ {Z_IID:g} and σ₁ ≤ its limit",
          "IA401", never_trained,
          "never trained"),
    Check("dead", "dead units", f"warn from {DEAD_WARN_FRACTION:.0%}", "IA402", dead, "dead units"),
    Check("scale", "scale vs comparable layers", f"flag: |z| > {SCALE_OUTLIER_Z:g} and ≥ {SCALE_OUTLIER_FACTOR:g}×",
          "IA403", scale, "scale vs comparable layers"),
    Check("int8", "int8 SQNR", f"flag below {SQNR_WARN_DB:g} dB", "IA404", int8, "int8 outliers"),
    Check("fp16", "float16", "IA207 with --fp16", "IA207", float16, "float16"),
)


def cells(layer: LayerReport) -> list[tuple[str, str | None, str, str]]:
    """(text, sort key, css class, tooltip) of each check for one reviewed layer."""
    review = layer.review
    out: list[tuple[str, str | None, str, str]] = []
    for check in CHECKS:
        if review is None:
            out.append(("-", None, "", ""))
            continue
        text, key = check.cell(review)
        tip = check_notes(review).get(check.note, "")
        out.append((text, None if key is None or not math.isfinite(key) else repr(float(key)),
                    check_class(layer, check.code), tip))
    return out


# -- the headline chart ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Panel:
    title: str
    code: str
    value: Callable[[Review], float | None]
    log: bool
    lo: float
    hi: float
    ticks: tuple[float, ...]
    limits: tuple[float, ...]                  # threshold lines
    band: tuple[float, float] | None = None    # a shaded zone (the fresh-draw zone)
    unit: str = ""


def _abs_z(r: Review) -> float | None:
    return abs(r.dispersion.z) if r.dispersion is not None and math.isfinite(r.dispersion.z) else None


def _dead_share(r: Review) -> float | None:
    return 100.0 * r.dead / r.units if r.units > 1 else None


def _scale_factor(r: Review) -> float | None:
    return 10 ** r.scale_offset if r.scale_offset is not None and r.scale_z is not None else None


PANELS = (
    Panel(f"never trained: |z| of the units' norm dispersion (a fresh draw stays within {Z_IID:g})", "IA401", _abs_z,
          True, 0.1, 1e4, (Z_IID, 100, 1e4), (Z_IID,), (0.1, Z_IID)),
    Panel(f"dead units, % of the layer's units (warn from {DEAD_WARN_FRACTION:.0%})", "IA402", _dead_share, False, 0, 100,
          (0, 50, 100), (100 * DEAD_WARN_FRACTION,), unit="%"),
    Panel(f"scale against the median of comparable layers (flagged beyond {SCALE_OUTLIER_FACTOR:g}×)", "IA403",
          _scale_factor, True, 1e-3, 1e3, (1e-2, 1, 1e2), (1 / SCALE_OUTLIER_FACTOR, SCALE_OUTLIER_FACTOR), unit="×"),
    Panel(f"int8 SQNR of the other values, dB (flagged below {SQNR_WARN_DB:g} dB)", "IA404",
          lambda r: r.sqnr_int8_db, False, -30, 60, (-30, 0, 30, 60), (SQNR_WARN_DB,), unit=" dB"),
)


def _tick(value: float, unit: str) -> str:
    return f"{value:g}{unit}"


def nice_step(minimum: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … that is at least ``minimum``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= minimum:
                return factor * magnitude
        magnitude *= 10


def x_labels(count: int, step: float) -> list[tuple[float, str]]:
    """Table numbers along a chart's x axis (offset from the plot's left, label) at a round spacing wide
    enough for the longest label (7 px a digit and a gap): they never overprint."""
    label_px = 7 * len(str(count)) + 10
    every = nice_step(label_px / step)
    return [(step * (number - 0.5), str(number)) for number in range(1, count + 1)
            if (number == 1 and every * step >= label_px) or number % every == 0]


def review_chart(model: ModelReport) -> str:
    """One strip per check, layers along x (numbered as in the table), each dot in its check's colour."""
    layers = model.layers
    reviewed = [(n, layer) for n, layer in enumerate(layers, 1) if layer.review is not None]
    if not reviewed:
        return ""
    count = len(layers)
    width, left, right, strip, gap, top = max(480, min(1150, 60 + 14 * count)), 50, 10, 70, 26, 4
    plot_w = width - left - right
    step = plot_w / count
    radius = max(1.5, min(4.0, step / 2))
    panels = [p for p in PANELS if any(p.value(layer.review) is not None for _, layer in reviewed)]  # type: ignore[arg-type]
    height = top + len(panels) * (strip + gap) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="trained-model review per layer">']
    for k, panel in enumerate(panels):
        y0 = top + k * (strip + gap) + 14

        def y(value: float, panel: Panel = panel, y0: float = y0) -> float:
            if panel.log:
                v = math.log10(min(max(value, panel.lo), panel.hi))
                lo, hi = math.log10(panel.lo), math.log10(panel.hi)
            else:
                v, lo, hi = min(max(value, panel.lo), panel.hi), panel.lo, panel.hi
            return y0 + 4 + (hi - v) / (hi - lo) * (strip - 8)

        parts.append(f'<text x="{left}" y="{y0 - 4:.1f}" class="panel">{escape(panel.title)}</text>'
                     f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{strip}" fill="#fafafa" stroke="#ddd"/>')
        if panel.band is not None:
            parts.append(f'<rect x="{left}" y="{y(panel.band[1]):.1f}" width="{plot_w}" '
                         f'height="{y(panel.band[0]) - y(panel.band[1]):.1f}" fill="#fdecea"/>')
        for tick in panel.ticks:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e0e0e0" '
                         f'stroke-width="0.5"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                         f'{_tick(tick, panel.unit)}</text>')
        for limit in panel.limits:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
                         f'stroke="#c62828" stroke-width="1" stroke-dasharray="4 3"/>')
        for number, layer in reviewed:
            value = panel.value(layer.review)  # type: ignore[arg-type]
            if value is None or not math.isfinite(value):
                continue
            cx = left + step * (number - 0.5)
            f = finding_of(layer, panel.code)
            title = f"#{number} {escape(layer.name)}: {value:.3g}{panel.unit}" + (f" ({f.code} {f.severity})" if f else "")
            parts.append(f'<circle cx="{cx:.1f}" cy="{y(value):.1f}" r="{radius:.1f}" '
                         f'fill="{check_color(layer, panel.code)}"><title>{title}</title></circle>')
    base = height - 2
    for cx, label in x_labels(count, step):
        parts.append(f'<text x="{left + cx:.1f}" y="{base}" text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    legend = ('<p class="muted">Each dot is a layer (numbered as in the table) on each check of the review, against '
              'its threshold (dashed red), in the colour of the finding the check raised: red fail, amber warn, '
              'grey-blue info, light green where it found nothing. The shaded zone of the first strip is where a '
              'fresh, never-trained draw falls.</p>')
    return f'<div class="box chart">{"".join(parts)}</div>' + legend
