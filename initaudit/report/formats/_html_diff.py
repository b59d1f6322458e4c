"""The chart of the HTML diff: per matched layer, in graph order, its SQNR (dB) and its relative change
‖B − A‖ / ‖A‖, as two panels of bars in one inline SVG (no script, nothing fetched).

Every matched layer has exactly one bar in each panel (``class="bar sqnr …"`` and ``class="bar rel …"``)
so a reader counts them; an identical layer's SQNR is infinite (a hatched bar to the top, ``=`` under its
relative-change bar of zero), an uncompared one has empty bars and a ``×``.  A bar is grey when its layer
is ok and takes its status colour when flagged; on a layer whose storage was lowered (quantized) a dashed
mark shows the SQNR below which IA601 calls it damaged, and a dark tick the SQNR of its worst output unit.
"""
from __future__ import annotations

import math
from html import escape

from initaudit.judge.change import damage_threshold_db
from initaudit.report.comparison import LayerPair
from initaudit.report.formats._diff import db, label
from initaudit.report.formats._html_review import nice_step, x_labels

OK_BAR = "#90a4ae"      # an ok layer's bar: quiet, so the flagged ones stand out
PANEL_H = 150
LEFT, RIGHT, TOP, GAP, BOTTOM = 56, 10, 26, 40, 22


def lowered(pair: LayerPair) -> bool:
    """B keeps fewer bits than A (as the judge reads it): the IA601 threshold applies."""
    return pair.bits_b is not None and (pair.bits_a is None or pair.bits_b < pair.bits_a)


def _sqnr_axis(pairs: list[LayerPair]) -> tuple[float, float]:
    """(low, high) dB: round tens around every finite SQNR and threshold shown, 0 dB always inside."""
    values = [0.0, 10.0]
    for p in pairs:
        c = p.change
        if c is not None and not c.identical:
            values += [v for v in (c.sqnr_db, c.worst_unit_sqnr_db) if v is not None and math.isfinite(v)]
        if lowered(p) and p.bits_b is not None:
            values.append(damage_threshold_db(p.bits_b))
    return 10 * math.floor(min(values) / 10), 10 * math.ceil(max(values) / 10)


def _rel_axis(pairs: list[LayerPair]) -> tuple[int, int]:
    """(low, high) decades of the relative changes (log scale), at least one decade apart."""
    rels = [p.change.rel_change for p in pairs if p.change is not None and p.change.rel_change]
    rels = [r for r in rels if r is not None and math.isfinite(r) and r > 0]
    if not rels:
        return -3, 0
    lo, hi = math.floor(math.log10(min(rels))), math.ceil(math.log10(max(rels)))
    return lo, max(hi, lo + 1)


def _decade(exponent: int) -> str:
    return f"{10.0 ** exponent:g}" if -3 <= exponent <= 3 else f"1e{exponent}"


def chart(pairs: list[LayerPair], colors: dict[str, str]) -> str:
    """The two panels (``pairs`` in graph order, numbered from 1 as the table numbers them)."""
    if not pairs:
        return ""
    count = len(pairs)
    width = max(480, min(1150, LEFT + RIGHT + 14 * count))
    plot_w = width - LEFT - RIGHT
    height = TOP + PANEL_H + GAP + PANEL_H + BOTTOM
    step = plot_w / count
    bar_w = max(1.0, min(28.0, step * 0.7))
    s_lo, s_hi = _sqnr_axis(pairs)
    r_lo, r_hi = _rel_axis(pairs)
    top_s, top_r = TOP, TOP + PANEL_H + GAP

    def ys(value: float) -> float:
        value = min(max(value, s_lo), s_hi)
        return top_s + (s_hi - value) / (s_hi - s_lo) * PANEL_H

    def yr(value: float) -> float:
        exponent = min(max(math.log10(value), r_lo), r_hi)
        return top_r + (r_hi - exponent) / (r_hi - r_lo) * PANEL_H

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="SQNR and relative change per matched layer">',
             '<defs><pattern id="ia-identical" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eceff1"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#90a4ae" stroke-width="2"/></pattern></defs>',
             f'<text class="panel" x="{LEFT}" y="{top_s - 5}">SQNR of B against A (dB; higher is closer)</text>',
             f'<text class="panel" x="{LEFT}" y="{top_r - 5}">relative change ‖B − A‖ / ‖A‖ (log scale)</text>',
             f'<rect x="{LEFT}" y="{top_s}" width="{plot_w}" height="{PANEL_H}" fill="#fafafa"/>',
             f'<rect x="{LEFT}" y="{top_r}" width="{plot_w}" height="{PANEL_H}" fill="#fafafa"/>']
    every = nice_step((s_hi - s_lo) / 6)
    for tick in range(int(s_lo), int(s_hi) + 1, every):
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{ys(tick):.1f}" y2="{ys(tick):.1f}" '
                     f'stroke="#bbb" stroke-width="{1 if tick == 0 else 0.5}"/>'
                     f'<text x="{LEFT - 6}" y="{ys(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for exponent in range(r_lo, r_hi + 1):
        y = yr(10.0 ** exponent)
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#bbb" '
                     f'stroke-width="0.5"/><text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{_decade(exponent)}</text>")
    zero, floor = ys(0.0), top_r + PANEL_H
    for number, pair in enumerate(pairs, 1):
        cx = LEFT + step * (number - 0.5)
        x = cx - bar_w / 2
        change = pair.change
        status = pair.status
        fill = OK_BAR if status == "ok" else colors[status]
        name = escape(label(pair))
        if change is None:
            tip = f"#{number} {name}: not compared ({status})"
            parts += [f'<rect class="bar sqnr none {status}" x="{x:.1f}" y="{zero:.1f}" width="{bar_w:.1f}" '
                      f'height="0" fill="{fill}"><title>{tip}</title></rect>',
                      f'<text x="{cx:.1f}" y="{zero - 3:.1f}" text-anchor="middle" fill="{fill}">×</text>',
                      f'<rect class="bar rel none {status}" x="{x:.1f}" y="{floor:.1f}" width="{bar_w:.1f}" '
                      f'height="0" fill="{fill}"><title>{tip}</title></rect>',
                      f'<text x="{cx:.1f}" y="{floor - 3:.1f}" text-anchor="middle" fill="{fill}">×</text>']
            continue
        if change.identical:
            tip = f"#{number} {name}: identical ({status})"
            parts += [f'<rect class="bar sqnr identical {status}" x="{x:.1f}" y="{top_s}" width="{bar_w:.1f}" '
                      f'height="{zero - top_s:.1f}" fill="url(#ia-identical)" stroke="{fill}" stroke-width="1">'
                      f"<title>{tip}</title></rect>",
                      f'<rect class="bar rel identical {status}" x="{x:.1f}" y="{floor:.1f}" width="{bar_w:.1f}" '
                      f'height="0" fill="{fill}"><title>{tip}</title></rect>',
                      f'<text x="{cx:.1f}" y="{floor - 3:.1f}" text-anchor="middle" fill="{fill}">=</text>']
            continue
        sqnr = change.sqnr_db if change.sqnr_db is not None else s_hi
        y = ys(sqnr)
        rel = "∞" if change.rel_change is None else f"{change.rel_change:.3g}"
        tip = f"#{number} {name}: SQNR {db(change.sqnr_db)}, relative change {rel} ({status})"
        parts.append(f'<rect class="bar sqnr {status}" x="{x:.1f}" y="{min(y, zero):.1f}" width="{bar_w:.1f}" '
                     f'height="{abs(zero - y):.1f}" fill="{fill}"><title>{tip}</title></rect>')
        if change.worst_unit_sqnr_db is not None:
            w = ys(change.worst_unit_sqnr_db)
            parts.append(f'<line x1="{x:.1f}" x2="{x + bar_w:.1f}" y1="{w:.1f}" y2="{w:.1f}" stroke="#263238" '
                         f'stroke-width="2"><title>#{number} {name}: worst output unit #{change.worst_unit} '
                         f"{db(change.worst_unit_sqnr_db)}</title></line>")
        if lowered(pair) and pair.bits_b is not None:
            limit = damage_threshold_db(pair.bits_b)
            t = ys(limit)
            parts.append(f'<line x1="{x - 2:.1f}" x2="{x + bar_w + 2:.1f}" y1="{t:.1f}" y2="{t:.1f}" '
                         f'stroke="#c62828" stroke-dasharray="3 2" stroke-width="1.5"><title>#{number} {name}: '
                         f"IA601 below {limit:.1f} dB ({pair.bits_b}-bit storage)</title></line>")
        r = yr(change.rel_change) if change.rel_change else (top_r if change.rel_change is None else floor)
        parts.append(f'<rect class="bar rel {status}" x="{x:.1f}" y="{r:.1f}" width="{bar_w:.1f}" '
                     f'height="{floor - r:.1f}" fill="{fill}"><title>{tip}</title></rect>')
    for cx, text in x_labels(count, step):
        parts.append(f'<text x="{LEFT + cx:.1f}" y="{height - 8}" text-anchor="middle">{text}</text>')
    parts.append("</svg>")
    legend = ('<p class="muted">One bar per matched layer in each panel, in graph order and numbered as in the table '
              "(#). Grey: ok; amber: warn; red: fail. A hatched SQNR bar to the top with <b>=</b> under it: the "
              "layer is identical in both models; <b>×</b>: not compared. On a quantized layer the dashed red mark "
              "is the SQNR below which IA601 calls it damaged, the dark tick the SQNR of its worst output unit.</p>")
    return f'<div class="box chart">{"".join(parts)}</div>' + legend
