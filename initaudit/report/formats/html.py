"""``--format html``: a self-contained page a reviewer can attach to a sign-off.

Per model: a chart of every layer's variance ratio on a log scale against the ok/fail
bands (axis labels spaced so they never overprint), the table (filter and sort with
a small inline script: no network, works from disk, every name from the model is
escaped and never placed in the script), the findings grouped by rule with the
layers listed once, and for each flagged layer a histogram of its values against
the target's density.
"""
from __future__ import annotations

import math
from html import escape

from initaudit.codes import RULES
from initaudit.findings import STATUS_ORDER, Finding
from initaudit.judge.bands import FIXED_BANDS
from initaudit.measure.histogram import Histogram
from initaudit.report.formats._common import (
    baseline_line,
    chosen_target,
    hint,
    num,
    shape,
    std,
    summary_line,
    target_std,
)
from initaudit.report.formats._review import review_html
from initaudit.report.model import LayerReport, ModelReport, Report
from initaudit.version import __version__

COLOR = {"ok": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828"}
DETAILED_FINDINGS = 12   # a rule flagging at most this many layers lists each with its message
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em;word-break:break-all}h3{font-size:1.05em;margin-top:1.5em}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
thead th{background:#e6ecf5;cursor:pointer;user-select:none;position:sticky;top:0}
thead th.sorted-asc::after{content:" \\25B2"}thead th.sorted-desc::after{content:" \\25BC"}
.l{text-align:left}td.l:nth-child(2){white-space:normal;word-break:break-all}
.ok{color:#2e7d32}.warn{color:#ef6c00;font-weight:600}.fail{color:#c62828;font-weight:700}
.badge{display:inline-block;border-radius:3px;padding:1px 8px;margin-right:6px;color:#fff}
code{background:#f4f4f4;padding:0 3px}li{margin:.3em 0}.muted{color:#666}
svg text{font:11px system-ui,sans-serif}
.controls{margin:.6em 0}.controls input{width:22em}
.rule{margin:.4em 0 1em}.rule .layers{word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:4px;padding:4px 6px;width:340px}
.card .name{font-weight:600;word-break:break-all;font-size:12px}
"""
# Filter by text and status, sort by a column: plain DOM code, no data from the model in it.
SCRIPT = """
(function(){
  function cellValue(row, i){
    var c = row.cells[i], v = c.getAttribute('data-v');
    if (v === null) v = c.textContent;
    var n = parseFloat(v);
    return isNaN(n) || !/^-?[0-9.]/.test(v) ? v.toLowerCase() : n;
  }
  document.querySelectorAll('table.layers').forEach(function(table){
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    var box = document.getElementById(table.getAttribute('data-filter'));
    var select = document.getElementById(table.getAttribute('data-status'));
    var shown = document.getElementById(table.getAttribute('data-shown'));
    function apply(){
      var text = box.value.toLowerCase(), status = select.value, count = 0;
      Array.prototype.forEach.call(body.rows, function(row){
        var ok = (!text || row.textContent.toLowerCase().indexOf(text) >= 0) &&
                 (!status || row.getAttribute('data-status') === status);
        row.style.display = ok ? '' : 'none';
        if (ok) count++;
      });
      shown.textContent = count;
    }
    function sortBy(i, descending){
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = cellValue(a, i), y = cellValue(b, i);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (descending ? -1 : 1);
      });
      rows.forEach(function(r){ body.appendChild(r); });
      Array.prototype.forEach.call(heads, function(h){ h.classList.remove('sorted-asc', 'sorted-desc'); });
      heads[i].classList.add(descending ? 'sorted-desc' : 'sorted-asc');
    }
    Array.prototype.forEach.call(heads, function(h, i){
      h.addEventListener('click', function(){ sortBy(i, h.classList.contains('sorted-asc')); });
    });
    box.addEventListener('input', apply);
    select.addEventListener('change', apply);
    var m = /sort=([a-z_]+)(-desc)?/.exec(location.hash);
    if (m) Array.prototype.forEach.call(heads, function(h, i){
      if (h.getAttribute('data-key') === m[1]) sortBy(i, !!m[2]);
    });
    apply();
  });
})();
"""
COLUMNS = [("#", "n", ""), ("layer", "layer", "l"), ("op", "op", "l"), ("shape", "shape", ""), ("layout", "layout", ""),
           ("fan_in", "fan_in", ""), ("fan_out", "fan_out", ""), ("std", "std", ""), ("target", "target", "l"),
           ("target std", "target_std", ""), ("ratio", "ratio", ""), ("matches", "matches", "l"),
           ("distribution", "distribution", "l"), ("status", "status", ""), ("fix", "fix", "")]


def _nice_step(minimum: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … that is at least ``minimum``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= minimum:
                return factor * magnitude
        magnitude *= 10


def _chart(model: ModelReport) -> str:
    """Every layer at its table number; a dot at its ratio, or a mark on the axis when it has none (all zero)."""
    if not any(layer.ratio for layer in model.layers):
        return ""
    ok_lo, ok_hi, fail_lo, fail_hi = FIXED_BANDS[model.profile]
    lo, hi = math.log10(0.02), math.log10(50)
    count = len(model.layers)
    width, height, left, top, bottom = max(480, min(1150, 60 + 14 * count)), 240, 50, 10, 22
    plot_w, plot_h = width - left - 10, height - top - bottom
    step = plot_w / count
    radius = max(1.5, min(4.5, step / 2))

    def y(ratio: float) -> float:  # ratios beyond the axis sit on its edge, fully visible
        value = min(max(math.log10(ratio), lo), hi)
        return top + 6 + (hi - value) / (hi - lo) * (plot_h - 12)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="variance ratio per layer">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fdecea"/>',
             f'<rect x="{left}" y="{y(fail_hi):.1f}" width="{plot_w}" height="{y(fail_lo) - y(fail_hi):.1f}" '
             f'fill="#fff4e0"/>',
             f'<rect x="{left}" y="{y(ok_hi):.1f}" width="{plot_w}" height="{y(ok_lo) - y(ok_hi):.1f}" fill="#e8f5e9"/>']
    for tick in (0.1, 0.5, 1, 2, 10):
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#bbb" stroke-width="{1 if tick == 1 else 0.5}"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}×</text>')
    # x labels: table numbers at a round spacing wide enough for the longest label (7 px a digit + a gap)
    label_px = 7 * len(str(count)) + 10
    every = _nice_step(label_px / step)
    for number, layer in enumerate(model.layers, 1):
        cx = left + step * (number - 0.5)
        title = f"<title>#{number} {escape(layer.name)}: ratio {num(layer.ratio)} ({layer.status})</title>"
        if layer.ratio:
            parts.append(f'<circle cx="{cx:.1f}" cy="{y(layer.ratio):.1f}" r="{radius:.1f}" '
                         f'fill="{COLOR[layer.status]}">{title}</circle>')
        elif layer.status != "ok":
            base = top + plot_h
            parts.append(f'<path d="M{cx - radius:.1f},{base:.1f} L{cx + radius:.1f},{base:.1f} L{cx:.1f},'
                         f'{base - 2 * radius:.1f} Z" fill="{COLOR[layer.status]}">{title}</path>')
        if (number == 1 and every * step >= label_px) or number % every == 0:
            parts.append(f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle">{number}</text>')
    parts.append("</svg>")
    legend = ('<p class="muted">Each dot is a layer (numbered as in the table) at its variance ratio, on a log '
              'scale: green band ok, amber warn, red fail; a triangle on the axis marks a flagged layer without '
              'a ratio (all zero).</p>')
    return "".join(parts) + legend


def _row(index: int, number: int, layer: LayerReport) -> str:
    ratio = layer.ratio
    cells = [
        (str(number), str(number), ""), (escape(layer.name), None, "l"), (escape(layer.op), None, "l"),
        (shape(layer.shape), None, ""), (escape(layer.layout or "-"), None, ""),
        (num(layer.fan_in, 9), "" if layer.fan_in is None else str(layer.fan_in), ""),
        (num(layer.fan_out, 9), "" if layer.fan_out is None else str(layer.fan_out), ""),
        (num(std(layer)), _data(std(layer)), ""), (escape(chosen_target(layer)), None, "l"),
        (num(target_std(layer)), _data(target_std(layer)), ""), (num(ratio), _data(ratio), ""),
        (escape(", ".join(layer.matches) or "-"), None, "l"), (escape(layer.distribution), None, "l"),
        (layer.status, str(STATUS_ORDER[layer.status]), layer.status), (escape(hint(layer)), None, ""),
    ]
    tds = "".join(f'<td{_attrs(cls, value)}>{text}</td>' for text, value, cls in cells)
    return f'<tr id="{_anchor(index, number)}" data-status="{layer.status}">{tds}</tr>'


def _data(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _attrs(cls: str, value: str | None) -> str:
    out = f' class="{cls}"' if cls else ""
    return out + (f' data-v="{value}"' if value is not None else "")


def _anchor(index: int, number: int) -> str:
    return f"m{index}-{number}"


def _table(model: ModelReport, index: int) -> str:
    ids = {key: f"{key}{index}" for key in ("filter", "status", "shown")}
    head = "".join(f'<th data-key="{key}"{" class=l" if cls else ""}>{label}</th>' for label, key, cls in COLUMNS)
    rows = "\n".join(_row(index, number, layer) for number, layer in enumerate(model.layers, 1))
    return (f'<div class="controls"><input id="{ids["filter"]}" type="search" placeholder="filter layers by any text">'
            f' <select id="{ids["status"]}"><option value="">any status</option><option value="fail">fail</option>'
            f'<option value="warn">warn</option><option value="ok">ok</option></select> '
            f'<span class="muted"><span id="{ids["shown"]}">{len(model.layers)}</span> of {len(model.layers)} '
            f'layers shown; click a column to sort</span></div>'
            f'<table class="layers" data-filter="{ids["filter"]}" data-status="{ids["status"]}" '
            f'data-shown="{ids["shown"]}"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>')


def _grouped_findings(model: ModelReport, index: int) -> str:
    """One entry per rule: what it means and its fix once, then every layer it flags, once."""
    by_code: dict[str, list[tuple[int, LayerReport, Finding]]] = {}
    for number, layer in enumerate(model.layers, 1):
        for f in layer.findings:
            by_code.setdefault(f.code, []).append((number, layer, f))
    if not by_code and not model.findings:
        return ""
    out = ["<h3>Findings by rule</h3>"]
    for f in model.findings:
        out.append(f'<p><b>model</b> <code>{f.code}</code> <span class="{_sev(f.severity)}">{f.severity}</span> '
                   f"{escape(f.message)}</p>")
    order = sorted(by_code, key=lambda c: (-max(STATUS_ORDER[_status(f.severity)] for _, _, f in by_code[c]), c))
    for code in order:
        entries = by_code[code]
        rule = RULES.get(code)
        severity = max((f.severity for _, _, f in entries), key=lambda s: STATUS_ORDER[_status(s)])
        seen: set[int] = set()
        names = []
        for number, layer, f in entries:
            if number in seen:
                continue
            seen.add(number)
            ratio = f" {layer.ratio:.3g}×" if layer.ratio else ""
            names.append((f'<a href="#{_anchor(index, number)}" title="{escape(f.message)}">{escape(layer.name)}</a>',
                          ratio, f.message))
        # a few layers: each with its evidence (the message); many: the names once, the message on hover
        listed = ("<ul>" + "".join(f"<li>{name}: {escape(message)}</li>" for name, _, message in names) + "</ul>"
                  if len(names) <= DETAILED_FINDINGS else ", ".join(name + ratio for name, ratio, _ in names))
        out.append(f'<div class="rule"><b><code>{code}</code> {escape(rule.name if rule else code)}</b> '
                   f'<span class="{_sev(severity)}">{severity}</span> — {len(seen)} '
                   f'layer{"s" if len(seen) != 1 else ""}<br><span class="muted">'
                   f'{escape(rule.summary if rule else "")} Fix: {escape(rule.fix if rule else "")}</span>'
                   f'<div class="layers">{listed}</div></div>')
    return "\n".join(out)


def _status(severity: str) -> str:
    return {"info": "ok", "warn": "warn", "fail": "fail"}[severity]


def _sev(severity: str) -> str:
    return "ok" if severity == "info" else severity


def _histogram_svg(h: Histogram, layer: LayerReport) -> str:
    """Bars: the layer's values (density); curve: the target's normal density; box: its uniform density."""
    width, height, pad = 320, 120, 18
    n = sum(h.counts) + h.below + h.above
    if n == 0:
        return ""
    densities = [c / (n * h.width) for c in h.counts]
    target = layer.target_var
    t_std = math.sqrt(target) if target else None
    peak_target = 1 / (t_std * math.sqrt(2 * math.pi)) if t_std else 0.0
    top = max(max(densities), peak_target) or 1.0

    def px(x: float) -> float:
        return pad + (x - h.lo) / (h.hi - h.lo) * (width - 2 * pad)

    def py(d: float) -> float:
        return height - pad - min(d / top, 1.0) * (height - 2 * pad)

    bar_w = (width - 2 * pad) / len(h.counts)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="histogram of values against the target">']
    for i, d in enumerate(densities):
        if d > 0:
            out.append(f'<rect x="{pad + i * bar_w:.1f}" y="{py(d):.1f}" width="{max(bar_w - 0.5, 0.5):.1f}" '
                       f'height="{height - pad - py(d):.1f}" fill="{COLOR[layer.status]}" fill-opacity="0.55"/>')
    if t_std:
        points = []
        for k in range(121):
            x = h.lo + (h.hi - h.lo) * k / 120
            d = math.exp(-0.5 * (x / t_std) ** 2) * peak_target
            points.append(f"{px(x):.1f},{py(d):.1f}")
        out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')
        bound = math.sqrt(3) * t_std
        u = 1 / (2 * bound)
        if bound < h.hi:
            out.append(f'<polyline points="{px(-bound):.1f},{py(0):.1f} {px(-bound):.1f},{py(u):.1f} '
                       f'{px(bound):.1f},{py(u):.1f} {px(bound):.1f},{py(0):.1f}" fill="none" stroke="#1565c0" '
                       f'stroke-dasharray="3 2" stroke-width="1"/>')
    out.append(f'<line x1="{pad}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" stroke="#888"/>')
    for x in (h.lo, 0.0, h.hi):
        out.append(f'<text x="{px(x):.1f}" y="{height - 4}" text-anchor="middle">{x:.3g}</text>')
    out.append("</svg>")
    outside = h.below + h.above
    note = f" {outside} values outside the drawn range." if outside else ""
    return "".join(out) + note


def _histograms(model: ModelReport, index: int) -> str:
    cards = []
    for number, layer in enumerate(model.layers, 1):
        if layer.histogram is None:
            continue
        ratio = f"ratio {layer.ratio:.3g}, " if layer.ratio else ""
        cards.append(f'<div class="card"><div class="name">#{number} <a href="#{_anchor(index, number)}">'
                     f'{escape(layer.name)}</a></div><div class="muted">{ratio}std {num(std(layer))}, target std '
                     f'{num(target_std(layer))}</div>{_histogram_svg(layer.histogram, layer)}</div>')
    if not cards:
        return ""
    return ("<h3>Flagged layers: values against the target</h3><p class=muted>Bars: the layer's values (density). "
            "Solid curve: the target variance as a normal density; dashed box: as a uniform one.</p>"
            f'<div class="cards">{"".join(cards)}</div>')


def _fixes(model: ModelReport) -> str:
    items = []
    for layer in model.layers:
        if layer.suggestion:
            sg = layer.suggestion
            items.append(f"<li><b>{escape(layer.name)}</b>: multiply by {sg.scale:.4g} (target std "
                         f"{sg.target_std:.4g}), or PyTorch <code>{escape(sg.pytorch)}</code>, Keras "
                         f"<code>{escape(sg.keras)}</code>, JAX <code>{escape(sg.jax)}</code></li>")
    if not items:
        return ""
    return f"<details><summary>Fixes for {len(items)} layers</summary><ul>{''.join(items)}</ul></details>"


def _model(model: ModelReport, index: int) -> str:
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
           _chart(model)]
    if model.layers:
        out.append(_table(model, index))
    out += [_grouped_findings(model, index), review_html(model), _histograms(model, index), _fixes(model)]
    return "\n".join(part for part in out if part)


def render(report: Report) -> str:
    body = "\n".join(_model(m, i) for i, m in enumerate(report.models))
    baseline = baseline_line(report)
    if baseline:
        body = f"<pre>{escape(baseline)}</pre>\n{body}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>initaudit report</title><style>{STYLE}</style></head><body>"
            f"<h1>initaudit {__version__} — weight initialization audit</h1>\n{body}\n"
            f'<p class="muted">Rule pages: <code>initaudit rules CODE</code>. Exit code of this run: '
            f"{report.exit_code} (fail-on {escape(report.fail_on)}).</p><script>{SCRIPT}</script></body></html>\n")
