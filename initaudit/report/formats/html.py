"""``--format html``: a self-contained page a reviewer can read on screen, print and attach to a sign-off.

Per report: what was reviewed and how (provenance: each file's SHA-256 and size, the options, the
command, the time).  Per model: the headline — for the init profile every layer's variance ratio on a
log scale against the ok/fail bands; for a trained model (``--profile trained``, or ``auto`` deciding
so) each check of the review against its own threshold (``_html_review``) — then the layers, flagged
first and the ok ones folded, with a reason column (filter and sort with a small inline script: no
network, works from disk, every name from the model is escaped and never placed in the script), the
findings grouped by severity and rule with each layer's evidence for that rule, and the histograms of
the flagged layers (the first ``HISTOGRAMS_SHOWN``, the rest one click away).

Layout: every table sits in its own scrolling box on screen; long names break at their separators
(``/ . _ - :``); the print stylesheet (landscape A4 or Letter) shrinks the type so no column is cut,
repeats table headers on each page and starts each section on a new page.
"""
from __future__ import annotations

import math
import re
from html import escape

from initaudit.codes import RULES
from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER, Finding
from initaudit.judge.bands import FIXED_BANDS
from initaudit.measure.histogram import Histogram
from initaudit.report.comparison import DiffReport, LayerPair, Unmatched
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
from initaudit.report.formats._diff import flagged_items
from initaudit.report.formats._diff import row as diff_row
from initaudit.report.formats._diff import summary_line as diff_summary
from initaudit.report.formats._html_diff import chart as diff_chart
from initaudit.report.formats._html_review import CHECKS, review_chart, x_labels
from initaudit.report.formats._html_review import cells as review_cells
from initaudit.report.formats._provenance import html_rows, model_rows, run_rows
from initaudit.report.formats._review import CHECK_WHY
from initaudit.report.model import LayerReport, ModelReport, Report
from initaudit.version import __version__

COLOR = {"ok": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828"}
DETAILED_FINDINGS = 12   # a rule flagging at most this many layers lists each with its message
HISTOGRAMS_SHOWN = 24    # histogram cards drawn in the page; the rest behind one click
SEVERITIES = ("fail", "warn", "info")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1320px;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em;overflow-wrap:break-word}h3{font-size:1.05em;margin-top:1.6em}
h4{font-size:.95em;margin:1.2em 0 .3em}
.box{overflow-x:auto;max-width:100%;margin:.4em 0}.box.rows{max-height:85vh;overflow:auto}
table{border-collapse:collapse;font-size:13px}table.layers{width:100%}
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}
thead th{background:#e6ecf5;cursor:pointer;user-select:none;position:sticky;top:0;vertical-align:bottom}
thead th small{display:block;font-weight:400;color:#555;white-space:normal}
thead th.sorted-asc::after{content:" \\25B2"}thead th.sorted-desc::after{content:" \\25BC"}
td.v{white-space:nowrap}td.reason span{white-space:nowrap}td.e{min-width:7em}.l{text-align:left}.secondary{color:#666}
.name{overflow-wrap:break-word;min-width:14em;max-width:34em}
table.facts th{text-align:left;background:none;font-weight:600;cursor:auto;position:static;white-space:nowrap}
table.facts td{text-align:left;overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:12px}
table.folded tr[data-status=ok]{display:none}
.ok{color:#2e7d32}.warn{color:#ef6c00;font-weight:600}.fail{color:#c62828;font-weight:700}.info{color:#546e7a}
td.warn,td.fail,td.info{background:#fff8f0}td.fail{background:#fdecea}td.info{background:#eef2f4}
.badge{display:inline-block;border-radius:3px;padding:1px 8px;margin-right:6px;color:#fff}
code{background:#f4f4f4;padding:0 3px}li{margin:.3em 0}.muted{color:#666}
svg text{font:11px system-ui,sans-serif}svg text.panel{font-weight:600;fill:#444}
.controls{margin:.6em 0}.controls input{width:22em;max-width:60%}
.rule{margin:.4em 0 1em}.rule ul.names{columns:22em;column-gap:2em;padding-left:1.2em}
.rule ul.names li{break-inside:avoid;margin:.1em 0;overflow-wrap:break-word}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;border-radius:4px;padding:4px 6px;width:340px}
.card .name{font-weight:600;font-size:12px;min-width:0;max-width:none}.card .note{font-size:12px;color:#666}
details>summary{cursor:pointer;color:#1565c0;margin:.4em 0}
@media print{
  @page{size:landscape;margin:10mm}
  body{max-width:none;margin:0;padding:0;font-size:10px}
  .controls,.noprint{display:none}
  .box,.box.rows{overflow:visible;max-height:none}
  table{font-size:8.5px;width:100%}
  th,td{padding:1px 3px}
  thead{display:table-header-group}
  thead th{position:static}
  tr,.card,.rule ul.names li{break-inside:avoid}
  .name{min-width:0;max-width:none}
  td.e{min-width:0}
  h2,h3,h4{break-after:avoid}
  section.model+section.model,section.layers,section.findings,section.histograms{break-before:page}
  .rule ul.names{columns:3}
  svg{max-width:100%;height:auto}
}
"""
# Filter by text and status, sort by a column, unfold the ok layers: plain DOM code, no data from the model in it.
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
    var unfold = document.getElementById(table.getAttribute('data-unfold'));
    function apply(){
      var text = box.value.toLowerCase(), status = select.value, count = 0;
      Array.prototype.forEach.call(body.rows, function(row){
        var s = row.getAttribute('data-status');
        var ok = (!text || row.textContent.toLowerCase().indexOf(text) >= 0) &&
                 (!status || (status === 'flagged' ? s !== 'ok' : s === status));
        row.style.display = ok ? '' : 'none';
        if (ok) count++;
      });
      shown.textContent = count;
      if (unfold) unfold.style.display = status === 'flagged' ? '' : 'none';
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
    function reveal(){
      var row = location.hash ? document.getElementById(location.hash.slice(1)) : null;
      if (row && row.parentNode === body && row.style.display === 'none') {
        box.value = ''; select.value = ''; apply(); row.scrollIntoView();
      }
    }
    Array.prototype.forEach.call(heads, function(h, i){
      h.addEventListener('click', function(){ sortBy(i, h.classList.contains('sorted-asc')); });
    });
    box.addEventListener('input', apply);
    select.addEventListener('change', apply);
    if (unfold) unfold.addEventListener('click', function(e){ e.preventDefault(); select.value = ''; apply(); });
    window.addEventListener('hashchange', reveal);
    var m = /sort=([a-z_0-9]+)(-desc)?/.exec(location.hash);
    if (m) Array.prototype.forEach.call(heads, function(h, i){
      if (h.getAttribute('data-key') === m[1]) sortBy(i, !!m[2]);
    });
    table.classList.remove('folded');
    apply();
    reveal();
  });
})();
"""
#: (label, sort key, css class of its cells, the threshold or note under the label)
INIT_COLUMNS = [("#", "n", "v", ""), ("layer", "layer", "l name", ""), ("op", "op", "l", ""),
                ("shape", "shape", "v", ""), ("layout", "layout", "v", ""), ("fan_in", "fan_in", "v", ""),
                ("fan_out", "fan_out", "v", ""), ("std", "std", "v", ""), ("target", "target", "l", ""),
                ("target std", "target_std", "v", ""), ("ratio", "ratio", "v", ""), ("matches", "matches", "l", ""),
                ("distribution", "distribution", "l", ""), ("status", "status", "v", ""),
                ("reason", "reason", "l", ""), ("fix", "fix", "v", "")]
TRAINED_COLUMNS = ([("#", "n", "v", ""), ("layer", "layer", "l name", ""), ("op", "op", "l", ""),
                    ("shape", "shape", "v", ""), ("status", "status", "v", ""), ("reason", "reason", "l", "")]
                   + [(c.label, c.key, "l e", c.limit) for c in CHECKS]
                   + [("ratio", "ratio", "v secondary", "to the init target (secondary)")])
_SEPARATORS = re.compile(r"([/._\-:])")


def name_html(text: str) -> str:
    """A name from the model, escaped, breakable after each separator (``/ . _ - :``) and nowhere else."""
    return "".join(escape(part) + ("<wbr>" if _SEPARATORS.fullmatch(part) else "")
                   for part in _SEPARATORS.split(text) if part)


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
    for cx, label in x_labels(count, step):
        parts.append(f'<text x="{left + cx:.1f}" y="{height - 8}" text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    legend = ('<p class="muted">Each dot is a layer (numbered as in the table) at its variance ratio, on a log '
              'scale: green band ok, amber warn, red fail; a triangle on the axis marks a flagged layer without '
              'a ratio (all zero).</p>')
    return f'<div class="box chart">{"".join(parts)}</div>' + legend


def _sev(severity: str) -> str:
    """The CSS class of a severity (info has its own, quieter colour)."""
    return "info" if severity == "info" else severity


def _by_severity(findings: tuple[Finding, ...] | list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: -STATUS_ORDER[SEVERITY_STATUS[f.severity]])


def _reason(layer: LayerReport) -> tuple[str, str]:
    """(cell html, sort key): each finding's code and rule name, worst first; its message on hover."""
    return _reason_of(layer.findings)


def _reason_of(findings: tuple[Finding, ...]) -> tuple[str, str]:
    found = _by_severity(findings)
    html = "; ".join(f'<span class="{_sev(f.severity)}" title="{escape(f.message)}">{f.code} '
                     f'{escape(RULES[f.code].name if f.code in RULES else "")}</span>' for f in found)
    return html, " ".join(f.code for f in found)


def _data(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _td(text: str, cls: str = "", value: str | None = None, title: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' data-v="{escape(value)}"' if value is not None else ""
    attrs += f' title="{escape(title)}"' if title else ""
    return f"<td{attrs}>{text}</td>"


def _common_cells(number: int, layer: LayerReport) -> list[str]:
    return [_td(str(number), "v", str(number)), _td(name_html(layer.name), "l name", layer.name),
            _td(escape(layer.op), "l"), _td(shape(layer.shape), "v")]


def _status_cell(layer: LayerReport) -> str:
    return _td(layer.status, f"v {layer.status}", str(STATUS_ORDER[layer.status]))


def _init_row(number: int, layer: LayerReport) -> list[str]:
    reason, key = _reason(layer)
    return _common_cells(number, layer) + [
        _td(escape(layer.layout or "-"), "v"),
        _td(num(layer.fan_in, 9), "v", "" if layer.fan_in is None else str(layer.fan_in)),
        _td(num(layer.fan_out, 9), "v", "" if layer.fan_out is None else str(layer.fan_out)),
        _td(num(std(layer)), "v", _data(std(layer))), _td(escape(chosen_target(layer)), "l"),
        _td(num(target_std(layer)), "v", _data(target_std(layer))), _td(num(layer.ratio), "v", _data(layer.ratio)),
        _td(escape(", ".join(layer.matches) or "-"), "l"), _td(escape(layer.distribution), "l"),
        _status_cell(layer), _td(reason, "l reason", key), _td(escape(hint(layer)), "v")]


def _trained_row(number: int, layer: LayerReport) -> list[str]:
    reason, key = _reason(layer)
    evidence = [_td(escape(text), f"l e {cls}".strip(), value, tip) for text, value, cls, tip in review_cells(layer)]
    return (_common_cells(number, layer) + [_status_cell(layer), _td(reason, "l reason", key)] + evidence
            + [_td(num(layer.ratio), "v secondary", _data(layer.ratio))])


def _anchor(index: int, number: int) -> str:
    return f"m{index}-{number}"


def flagged_first(model: ModelReport) -> list[tuple[int, LayerReport]]:
    """(table number, layer), fail then warn then ok, each in the model's order."""
    numbered = list(enumerate(model.layers, 1))
    return sorted(numbered, key=lambda item: (-STATUS_ORDER[item[1].status], item[0]))


def _order_note(flagged: int, ok: int) -> str:
    if not flagged:
        return f"All {ok} layer{'s' if ok != 1 else ''} ok."
    if not ok:
        return f"All {flagged} layer{'s' if flagged != 1 else ''} flagged: failing ones first."
    return f"{flagged} flagged layer{'s' if flagged != 1 else ''} listed first."


def _table(model: ModelReport, index: int, trained: bool) -> str:
    ids = {key: f"{key}{index}" for key in ("filter", "status", "shown", "unfold")}
    columns = TRAINED_COLUMNS if trained else INIT_COLUMNS
    head = "".join(f'<th data-key="{key}"{" class=l" if "l" in cls.split() else ""}>{escape(label)}'
                   f'{f"<small>{escape(sub)}</small>" if sub else ""}</th>' for label, key, cls, sub in columns)
    row = _trained_row if trained else _init_row
    rows = "\n".join(f'<tr id="{_anchor(index, number)}" data-status="{layer.status}">{"".join(row(number, layer))}</tr>'
                     for number, layer in flagged_first(model))
    ok = sum(1 for layer in model.layers if layer.status == "ok")
    fold = 0 < ok < len(model.layers)
    shown = len(model.layers) - ok if fold else len(model.layers)
    options = "".join(f'<option value="{value}"{" selected" if value == ("flagged" if fold else "") else ""}>'
                      f"{label}</option>" for value, label in (("flagged", "flagged (fail, warn)"), ("", "any status"),
                                                               ("fail", "fail"), ("warn", "warn"), ("ok", "ok")))
    unfold = (f' <a href="#" id="{ids["unfold"]}">show the {ok} ok layer{"s" if ok != 1 else ""} too</a>'
              if fold else "")
    folded = f' <span class="muted">{ok} ok layer{"s" if ok != 1 else ""} folded.</span>' if fold else ""
    return (f'<div class="controls"><input id="{ids["filter"]}" type="search" placeholder="filter layers by any text">'
            f' <select id="{ids["status"]}">{options}</select> '
            f'<span class="muted"><span id="{ids["shown"]}">{shown}</span> of {len(model.layers)} '
            f'layers shown, flagged first; click a column to sort</span>{unfold}</div>'
            f'<p class="muted">{_order_note(len(model.layers) - ok, ok)}{folded}</p>'
            f'<div class="box rows"><table class="layers{" folded" if fold else ""}" data-filter="{ids["filter"]}" '
            f'data-status="{ids["status"]}" data-shown="{ids["shown"]}" data-unfold="{ids["unfold"]}">'
            f"<thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table></div>")


def evidence(code: str, layer: LayerReport) -> str:
    """What a layer shows for one rule, next to its link in the findings: the rule's own figure."""
    r = layer.review
    if code == "IA401" and r is not None and r.dispersion is not None:
        return f"z {r.dispersion.z:+.2f}"
    if code == "IA402" and r is not None:
        return f"{r.dead}/{r.units} dead"
    if code == "IA403" and r is not None and r.scale_offset is not None:
        return f"{10 ** r.scale_offset:.3g}× median"
    if code == "IA404" and r is not None and r.sqnr_int8_db is not None:
        return f"{r.sqnr_int8_db:.1f} dB"
    if code == "IA207" and r is not None:
        return f"{r.float16_flushed} flushed"
    if code == "IA202":
        return "all zero"
    if code in ("IA101", "IA102", "IA501") and layer.ratio:
        return f"{layer.ratio:.3g}×"
    return ""


def _grouped_findings(model: ModelReport, index: int) -> str:
    """Fail, then warn, then info; under each, one entry per rule: what it means and its fix once, then every
    layer it flags at that severity, once, with the evidence for that rule."""
    groups: dict[tuple[str, str], list[tuple[int, LayerReport, Finding]]] = {}
    for number, layer in enumerate(model.layers, 1):
        seen: set[tuple[str, str]] = set()
        for f in layer.findings:
            key = (f.severity, f.code)
            if key not in seen:
                seen.add(key)
                groups.setdefault(key, []).append((number, layer, f))
    if not groups and not model.findings:
        return ""
    out = ['<section class="findings"><h3>Findings by rule</h3><p class="muted">Grouped by severity: fail, then '
           "warn, then info.</p>"]
    for f in model.findings:
        out.append(f'<p><b>model</b> <code>{f.code}</code> <span class="{_sev(f.severity)}">{f.severity}</span> '
                   f"{escape(f.message)}</p>")
    for severity in SEVERITIES:
        codes = sorted(code for sev, code in groups if sev == severity)
        if not codes:
            continue
        layers = sum(len(groups[(severity, code)]) for code in codes)
        out.append(f'<h4 class="{_sev(severity)}">{severity}: {len(codes)} rule{"s" if len(codes) != 1 else ""}, '
                   f'{layers} finding{"s" if layers != 1 else ""}</h4>')
        for code in codes:
            entries = groups[(severity, code)]
            rule = RULES.get(code)
            if len(entries) <= DETAILED_FINDINGS:
                listed = "<ul>" + "".join(
                    f'<li><a href="#{_anchor(index, n)}">{name_html(layer.name)}</a>: {escape(f.message)}</li>'
                    for n, layer, f in entries) + "</ul>"
            else:
                listed = '<ul class="names">' + "".join(
                    f'<li><a href="#{_anchor(index, n)}" title="{escape(f.message)}">{name_html(layer.name)}</a>'
                    + (f' <span class="muted">{escape(evidence(code, layer))}</span>' if evidence(code, layer) else "")
                    + "</li>" for n, layer, f in entries) + "</ul>"
            out.append(f'<div class="rule"><b><code>{code}</code> {escape(rule.name if rule else code)}</b> '
                       f'<span class="{_sev(severity)}">{severity}</span> — {len(entries)} '
                       f'layer{"s" if len(entries) != 1 else ""}<br><span class="muted">'
                       f'{escape(rule.summary if rule else "")} Fix: {escape(rule.fix if rule else "")}</span>'
                       f"{listed}</div>")
    out.append("</section>")
    return "\n".join(out)


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
    note = (f'<div class="note">{outside} value{"s" if outside != 1 else ""} outside the drawn range</div>'
            if outside else "")
    return "".join(out) + note


def _card(index: int, number: int, layer: LayerReport) -> str:
    assert layer.histogram is not None
    ratio = f"ratio {layer.ratio:.3g}, " if layer.ratio else ""
    return (f'<div class="card"><div class="name">#{number} <a href="#{_anchor(index, number)}">'
            f'{name_html(layer.name)}</a> <span class="{layer.status}">{layer.status}</span></div>'
            f'<div class="muted">{ratio}std {num(std(layer))}, target std {num(target_std(layer))}</div>'
            f"{_histogram_svg(layer.histogram, layer)}</div>")


def _histograms(model: ModelReport, index: int) -> str:
    drawn = [(n, layer) for n, layer in flagged_first(model) if layer.histogram is not None]
    if not drawn:
        return ""
    cards = [_card(index, n, layer) for n, layer in drawn]
    shown, rest = cards[:HISTOGRAMS_SHOWN], cards[HISTOGRAMS_SHOWN:]
    more = (f'<details class="more"><summary>{len(rest)} more histogram{"s" if len(rest) != 1 else ""} of flagged '
            f'layers</summary><div class="cards">{"".join(rest)}</div></details>' if rest else "")
    return ('<section class="histograms"><h3>Flagged layers: values against the target</h3><p class=muted>Bars: the '
            "layer's values (density). Solid curve: the target variance as a normal density; dashed box: as a "
            f'uniform one. Failing layers first.</p><div class="cards">{"".join(shown)}</div>{more}</section>')


def _fixes(model: ModelReport) -> str:
    items = []
    for layer in model.layers:
        if layer.suggestion:
            sg = layer.suggestion
            items.append(f"<li><b>{name_html(layer.name)}</b>: multiply by {sg.scale:.4g} (target std "
                         f"{sg.target_std:.4g}), or PyTorch <code>{escape(sg.pytorch)}</code>, Keras "
                         f"<code>{escape(sg.keras)}</code>, JAX <code>{escape(sg.jax)}</code></li>")
    if not items:
        return ""
    return f"<details><summary>Fixes for {len(items)} layers</summary><ul>{''.join(items)}</ul></details>"


def _facts(model: ModelReport) -> str:
    return f'<div class="box"><table class="facts">{html_rows(model_rows(model))}</table></div>'


def _review_notes(model: ModelReport) -> str:
    if not any(layer.review is not None for layer in model.layers):
        return ""
    return ('<details><summary>How each check of the review decides</summary><ul class="muted">' + "".join(
        f"<li><i>{escape(check)}</i>: {escape(why)}</li>" for check, why in CHECK_WHY.items()) + "</ul></details>")


def _model(model: ModelReport, index: int) -> str:
    head = f'<section class="model"><h2>{name_html(model.path)}</h2>'
    if model.error is not None:
        return (f"{head}{_facts(model)}"
                f'<p><span class="badge" style="background:{COLOR["fail"]}">unreadable</span> '
                f"<code>IA001</code> {escape(model.error)}</p></section>")
    s = model.summary
    trained = model.profile == "trained" and any(layer.review is not None for layer in model.layers)
    out = [head,
           f'<p><span class="badge" style="background:{COLOR["ok"]}">{s["ok"]} ok</span>'
           f'<span class="badge" style="background:{COLOR["warn"]}">{s["warn"]} warn</span>'
           f'<span class="badge" style="background:{COLOR["fail"]}">{s["fail"]} fail</span> '
           f'<span class="muted">{escape(summary_line(model))}</span></p>',
           _facts(model)]
    if model.profile_reason:
        out.append(f"<p class='profile muted'>Profile: {escape(model.profile_reason)}</p>")
    if trained:
        out += ["<h3>Trained-model review</h3>",
                '<p class="muted">Each check of the review per layer against its threshold; the ratio to the '
                "init target is a secondary column (a trained layer is not expected near 1×).</p>",
                review_chart(model)]
    else:
        out += ['<p class="muted">Ratio = observed variance / target variance; a correctly initialized layer sits '
                "near 1×.</p>", _chart(model)]
    if model.layers:
        out.append(f'<section class="layers"><h3>Layers</h3>{_table(model, index, trained)}{_review_notes(model)}'
                   "</section>")
    out += [_grouped_findings(model, index), _histograms(model, index), _fixes(model), "</section>"]
    return "\n".join(part for part in out if part)


def _provenance(report: Report) -> str:
    p = report.provenance
    if p is None:
        return ""
    return (f'<section class="provenance"><h3>Provenance</h3><div class="box"><table class="facts">'
            f"{html_rows(run_rows(p))}</table></div></section>")


def render(report: Report) -> str:
    body = "\n".join(_model(m, i) for i, m in enumerate(report.models))
    baseline = baseline_line(report)
    if baseline:
        body = f"<pre>{escape(baseline)}</pre>\n{body}"
    trained = any(m.profile == "trained" for m in report.models)
    title = "trained-model review" if trained else "weight initialization audit"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>initaudit report</title><style>{STYLE}</style></head><body>"
            f"<h1>initaudit {__version__} — {title}</h1>\n{_provenance(report)}\n{body}\n"
            f'<p class="muted">Rule pages: <code>initaudit rules CODE</code>. Exit code of this run: '
            f"{report.exit_code} (fail-on {escape(report.fail_on)}).</p><script>{SCRIPT}</script></body></html>\n")


#: The diff's table: (label, sort key, css class of its cells).
DIFF_COLUMNS = [("#", "n", "v"), ("A", "a", "l name"), ("B", "b", "l name"), ("op", "op", "l"), ("shape", "shape", "v"),
                ("B stored", "stored", "v"), ("SQNR", "sqnr", "v"), ("worst unit", "worst", "v"),
                ("rel change", "rel", "v"), ("corr", "corr", "v"), ("max |B − A|", "max_abs", "v"),
                ("matched by", "matched_by", "l"), ("status", "status", "v"), ("reason", "reason", "l")]


def _diff_sort_values(pair: LayerPair) -> tuple[str, str, str, str]:
    """data-v of SQNR, worst unit, rel change, corr: numbers the script sorts (identical: +∞ dB)."""
    c = pair.change
    if c is None:
        return "", "", "", ""
    if c.identical:
        return "1e309", "1e309", "0", "1"
    sqnr = "1e309" if c.sqnr_db is None else "-1e309" if c.sqnr_db == -math.inf else repr(c.sqnr_db)
    return sqnr, _data(c.worst_unit_sqnr_db), _data(c.rel_change), _data(c.correlation)


def _diff_row(number: int, pair: LayerPair) -> str:
    cells = diff_row(pair)                       # A, B, op, shape, stored, SQNR, worst, rel, corr, status
    sqnr, worst, rel, corr = _diff_sort_values(pair)
    reason, key = _reason_of(pair.findings)
    c = pair.change
    max_abs = "-" if c is None else num(c.max_abs_diff)
    tds = [_td(str(number), "v", str(number)), _td(name_html(pair.a), "l name", pair.a),
           _td("=" if pair.b == pair.a else name_html(pair.b), "l name", pair.b), _td(escape(cells[2]), "l"),
           _td(escape(cells[3]), "v"), _td(escape(cells[4]), "v"), _td(escape(cells[5]), "v", sqnr),
           _td(escape(cells[6]), "v", worst), _td(escape(cells[7]), "v", rel), _td(escape(cells[8]), "v", corr),
           _td(max_abs, "v", "" if c is None else _data(c.max_abs_diff)),
           _td(escape(pair.matched_by + (f", BatchNorm of {pair.folded.upper()} folded" if pair.folded else "")), "l"),
           _td(pair.status, f"v {pair.status}", str(STATUS_ORDER[pair.status])), _td(reason, "l reason", key)]
    return f'<tr id="d-{number}" data-status="{pair.status}">{"".join(tds)}</tr>'


def _diff_table(report: DiffReport) -> str:
    numbers = {id(pair): n for n, pair in enumerate(report.layers, 1)}
    head = "".join(f'<th data-key="{key}"{" class=l" if "l" in cls.split() else ""}>{escape(text)}</th>'
                   for text, key, cls in DIFF_COLUMNS)
    rows = "\n".join(_diff_row(numbers[id(pair)], pair) for pair in report.worst_first())
    options = "".join(f'<option value="{value}">{text}</option>' for value, text in
                      (("", "any status"), ("flagged", "flagged (fail, warn)"), ("fail", "fail"), ("warn", "warn"),
                       ("ok", "ok")))
    count = len(report.layers)
    return (f'<div class="controls"><input id="filterd" type="search" placeholder="filter layers by any text"> '
            f'<select id="statusd">{options}</select> <span class="muted"><span id="shownd">{count}</span> of '
            f"{count} matched layers shown, worst first; click a column to sort</span></div>"
            f'<div class="box rows"><table class="layers" data-filter="filterd" data-status="statusd" '
            f'data-shown="shownd" data-unfold="unfoldd"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n'
            "</tbody></table></div>")


def _unmatched_table(report: DiffReport) -> str:
    if not report.unmatched:
        return ""
    rows = "".join(f'<tr data-status="{u.status}">{_td(u.side.upper(), "v")}{_td(name_html(u.name), "l name")}'
                   f'{_td(escape(u.op or "-"), "l")}{_td(shape(u.shape), "v")}{_td(escape(u.dtype), "v")}'
                   f'{_td(u.status, f"v {u.status}")}{_td(_reason_of(u.findings)[0], "l reason")}</tr>'
                   for u in report.unmatched)
    head = "".join(f"<th{' class=l' if text in ('weight', 'op', 'reason') else ''}>{text}</th>"
                   for text in ("only in", "weight", "op", "shape", "stored", "status", "reason"))
    return (f'<section class="unmatched"><h3>Found in one model only</h3><div class="box"><table>'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>")


def _diff_findings(report: DiffReport) -> str:
    """Fail, then warn, then info; under each, one entry per rule (what it means, its fix) and every finding."""
    numbers = {id(pair): n for n, pair in enumerate(report.layers, 1)}
    groups: dict[tuple[str, str], list[tuple[LayerPair | Unmatched, Finding]]] = {}
    for item in flagged_items(report):
        for f in item.findings:
            groups.setdefault((f.severity, f.code), []).append((item, f))
    if not groups:
        return ""
    out = ['<section class="findings"><h3>Findings by rule</h3>']
    for severity in SEVERITIES:
        for code in sorted(code for sev, code in groups if sev == severity):
            rule = RULES.get(code)
            items = "".join(
                (f'<li><a href="#d-{numbers[id(item)]}">#{numbers[id(item)]}</a> ' if id(item) in numbers else "<li>")
                + f"{escape(f.message)}</li>" for item, f in groups[(severity, code)])
            out.append(f'<div class="rule"><b><code>{code}</code> {escape(rule.name if rule else code)}</b> '
                       f'<span class="{_sev(severity)}">{severity}</span> — {len(groups[(severity, code)])}<br>'
                       f'<span class="muted">{escape(rule.summary if rule else "")} Fix: '
                       f'{escape(rule.fix if rule else "")}</span><ul>{items}</ul></div>')
    out.append("</section>")
    return "\n".join(out)


def _diff_facts(report: DiffReport) -> str:
    rows = "".join(f"<tr><th>{side}</th><td>{escape(s.path)}</td><td>{escape(s.producer or '-')}</td>"
                   f"<td>opset {s.opset}</td><td>{s.weights} weights</td></tr>"
                   for side, s in (("A", report.a), ("B", report.b)))
    return f'<div class="box"><table class="facts">{rows}</table></div>'


def render_diff(report: DiffReport) -> str:
    """The diff as a page like the audit's: the two models, the verdict, the chart of every matched layer in
    graph order, the table worst first, the layers found on one side only, the findings by rule."""
    s = report.summary
    body = [f'<section class="model"><h2>{name_html(report.a.path)} → {name_html(report.b.path)}</h2>',
            f'<p><span class="badge" style="background:{COLOR["ok"]}">{s["ok"]} ok</span>'
            f'<span class="badge" style="background:{COLOR["warn"]}">{s["warn"]} warn</span>'
            f'<span class="badge" style="background:{COLOR["fail"]}">{s["fail"]} fail</span> '
            f'<span class="muted">{escape(diff_summary(report))}</span></p>', _diff_facts(report),
            diff_chart(list(report.layers), COLOR)]
    if report.layers:
        body.append(f'<section class="layers"><h3>Matched layers, worst first</h3>{_diff_table(report)}</section>')
    body += [_unmatched_table(report), _diff_findings(report), "</section>"]
    script = f"<script>{SCRIPT}</script>" if report.layers else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>initaudit diff</title><style>{STYLE}</style></head><body>"
            f"<h1>initaudit {__version__} — model diff</h1>\n" + "\n".join(part for part in body if part) + "\n"
            f'<p class="muted">Rule pages: <code>initaudit rules CODE</code>. Exit code of this run: '
            f"{report.exit_code} (fail-on {escape(report.fail_on)}).</p>{script}</body></html>\n")
