"""``--format html``: a self-contained page a reviewer can attach to a sign-off.

One chart per model (each layer's variance ratio on a log scale against the
ok/fail bands), the table, then every finding with its fix.  No scripts, no
external assets; every name from the model is escaped.
"""
from __future__ import annotations

import math
from html import escape

from .. import __version__
from ..bands import FIXED_BANDS
from ..report import ModelReport, Report
from ..rules import RULES
from ._common import chosen_target, num, shape, std, summary_line, target_std

COLOR = {"ok": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em;word-break:break-all}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
.l{text-align:left}td.l:nth-child(2){white-space:normal;word-break:break-all}
.ok{color:#2e7d32}.warn{color:#ef6c00;font-weight:600}.fail{color:#c62828;font-weight:700}
.badge{display:inline-block;border-radius:3px;padding:1px 8px;margin-right:6px;color:#fff}
code{background:#f4f4f4;padding:0 3px}li{margin:.3em 0}.muted{color:#666}
svg text{font:11px system-ui,sans-serif}
"""


def _chart(model: ModelReport) -> str:
    layers = [(i, layer, layer.ratio) for i, layer in enumerate(model.layers, 1) if layer.ratio]
    if not layers:
        return ""
    ok_lo, ok_hi, fail_lo, fail_hi = FIXED_BANDS[model.profile]
    lo, hi = math.log10(0.02), math.log10(50)
    width, height, left, top, bottom = max(480, min(1150, 60 + 14 * len(layers))), 240, 50, 10, 22
    plot_h = height - top - bottom
    step = (width - left - 10) / max(len(layers), 1)

    def y(ratio: float) -> float:  # ratios beyond the axis sit on its edge, fully visible
        value = min(max(math.log10(ratio), lo), hi)
        return top + 6 + (hi - value) / (hi - lo) * (plot_h - 12)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="variance ratio per layer">',
             f'<rect x="{left}" y="{top}" width="{width - left - 10}" height="{plot_h}" fill="#fdecea"/>',
             f'<rect x="{left}" y="{y(fail_hi):.1f}" width="{width - left - 10}" '
             f'height="{y(fail_lo) - y(fail_hi):.1f}" fill="#fff4e0"/>',
             f'<rect x="{left}" y="{y(ok_hi):.1f}" width="{width - left - 10}" '
             f'height="{y(ok_lo) - y(ok_hi):.1f}" fill="#e8f5e9"/>']
    for tick in (0.1, 0.5, 1, 2, 10):
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#bbb" stroke-width="{1 if tick == 1 else 0.5}"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}×</text>')
    every = max(1, math.ceil(len(layers) * 18 / (width - left - 10)))  # keep the numbers apart
    for position, (number, layer, ratio) in enumerate(layers):
        cx = left + step * (position + 0.5)
        parts.append(f'<circle cx="{cx:.1f}" cy="{y(ratio):.1f}" r="4.5" fill="{COLOR[layer.status]}">'
                     f'<title>#{number} {escape(layer.name)}: ratio {ratio:.3g} ({layer.status})</title></circle>')
        if position % every == 0:
            parts.append(f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{number}</text>')
    parts.append("</svg>")
    legend = ('<p class="muted">Each dot is a layer (numbered as in the table) at its variance ratio, on a log '
              'scale: green band ok, amber warn, red fail.</p>')
    return "".join(parts) + legend


def _model(model: ModelReport) -> str:
    if model.error is not None:
        return (f"<h2>{escape(model.path)}</h2>"
                f'<p><span class="badge" style="background:{COLOR["fail"]}">unreadable</span> '
                f"<code>IA001</code> {escape(model.error)}</p>")
    s = model.summary
    out = [f"<h2>{escape(model.path)}</h2>",
           f'<p><span class="badge" style="background:{COLOR["ok"]}">{s["ok"]} ok</span>'
           f'<span class="badge" style="background:{COLOR["warn"]}">{s["warn"]} warn</span>'
           f'<span class="badge" style="background:{COLOR["fail"]}">{s["fail"]} fail</span> '
           f'<span class="muted">{escape(summary_line(model))}</span></p>',
           f'<p class="muted">opset {model.opset}, producer {escape(model.producer or "unknown")}, '
           f"IR version {model.ir_version}. Ratio = observed variance / target variance; "
           "a correctly initialized layer sits near 1×.</p>",
           _chart(model),
           "<table><tr><th>#</th><th class=l>layer</th><th class=l>op</th><th>shape</th><th>layout</th>"
           "<th>fan_in</th><th>fan_out</th><th>std</th><th class=l>target</th><th>target std</th><th>ratio</th>"
           "<th class=l>matches</th><th class=l>distribution</th><th>status</th></tr>"]
    for number, layer in enumerate(model.layers, 1):
        out.append(
            f"<tr><td>{number}</td><td class=l>{escape(layer.name)}</td><td class=l>{escape(layer.op)}</td>"
            f"<td>{shape(layer.shape)}</td>"
            f"<td>{escape(layer.layout or '-')}</td><td>{num(layer.fan_in, 9)}</td><td>{num(layer.fan_out, 9)}</td>"
            f"<td>{num(std(layer))}</td><td class=l title=\"{escape(layer.target_reason or '')}\">"
            f"{escape(chosen_target(layer))}</td><td>{num(target_std(layer))}</td><td>{num(layer.ratio)}</td>"
            f"<td class=l>{escape(', '.join(layer.matches) or '-')}</td><td class=l>{layer.distribution}</td>"
            f'<td class="{layer.status}">{layer.status}</td></tr>')
    out.append("</table>")
    items = [f"<li><b>model</b> <code>{f.code}</code> {escape(f.message)}</li>" for f in model.findings]
    for layer in model.layers:
        for f in layer.findings:
            items.append(f'<li><b>{escape(layer.name)}</b> <span class="{"ok" if f.severity == "info" else f.severity}">'
                         f"{f.severity}</span> <code>{f.code}</code> {escape(RULES[f.code].name)}: "
                         f"{escape(f.message)}</li>")
        if layer.suggestion:
            sg = layer.suggestion
            items.append(f"<li class=muted>fix for <b>{escape(layer.name)}</b>: multiply by {sg.scale:.4g} "
                         f"(target std {sg.target_std:.4g}), or PyTorch <code>{escape(sg.pytorch)}</code>, "
                         f"Keras <code>{escape(sg.keras)}</code>, JAX <code>{escape(sg.jax)}</code></li>")
    if items:
        out.append("<h3>Findings</h3><ul>" + "".join(items) + "</ul>")
    return "\n".join(out)


def render(report: Report) -> str:
    body = "\n".join(_model(m) for m in report.models)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>initaudit report</title><style>{STYLE}</style></head><body>"
            f"<h1>initaudit {__version__} — weight initialization audit</h1>\n{body}\n"
            f'<p class="muted">Rule pages: <code>initaudit rules CODE</code>. Exit code of this run: '
            f"{report.exit_code} (fail-on {escape(report.fail_on)}).</p></body></html>\n")
