"""``--format markdown``: for pull-request comments, step summaries and review documents.

A GitHub comment holds at most 65,536 characters, so the report always fits: the
summary first, then the failing and warning layers, the ok layers folded in a
``<details>`` block, the findings grouped by rule.  When that is still too long,
the ok layers are counted instead of listed, then the flagged rows and findings
are cut to what fits, each cut saying how much was left out; if even one line per
model is too long (hundreds of models), the report keeps the whole lines that fit
and ends with a note.
"""
from __future__ import annotations

from typing import TypeVar

from tabulate import tabulate

from initaudit.codes import RULES
from initaudit.findings import STATUS_ORDER
from initaudit.report.comparison import DiffReport, LayerPair
from initaudit.report.formats._common import baseline_line, num, shape, std, summary_line, target_std
from initaudit.report.formats._diff import HEADERS as DIFF_HEADERS
from initaudit.report.formats._diff import flagged_items
from initaudit.report.formats._diff import row as diff_row
from initaudit.report.formats._diff import summary_line as diff_summary
from initaudit.report.formats._provenance import markdown_model, markdown_run
from initaudit.report.formats._review import review_markdown
from initaudit.report.model import LayerReport, ModelReport, Report

HEADERS = ["layer", "op", "shape", "layout", "fan_in", "fan_out", "std", "target std", "ratio", "status"]
ICON = {"ok": "ok", "warn": "**warn**", "fail": "**FAIL**"}
LIMIT = 65_536       # characters in a GitHub comment
CAPS = (None, 400, 150, 60, 20, 5, 0)
T = TypeVar("T")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(layers: list[LayerReport]) -> str:
    rows = [[_cell(layer.name), layer.op, shape(layer.shape), layer.layout or "-", num(layer.fan_in, 9),
             num(layer.fan_out, 9), num(std(layer)), num(target_std(layer)), num(layer.ratio),
             ICON[layer.status]] for layer in layers]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True) + "\n"


def _findings(model: ModelReport, cap: int | None) -> list[str]:
    out = [f"- **model** `{f.code}` {f.severity}: {_cell(f.message)}" for f in model.findings]
    flagged = sorted((layer for layer in model.layers if layer.findings),
                     key=lambda layer: -STATUS_ORDER[layer.status])
    shown = flagged if cap is None else flagged[:cap]
    for layer in shown:
        for finding in layer.findings:
            out.append(f"- `{_cell(layer.name)}` `{finding.code}` {finding.severity}: {_cell(finding.message)}")
        if layer.suggestion:
            s = layer.suggestion
            out.append(f"  - fix: multiply by {s.scale:.4g} (target std {s.target_std:.4g}); "
                       f"PyTorch `{s.pytorch}`; Keras `{s.keras}`; JAX `{s.jax}`")
    if len(shown) < len(flagged):
        rest = flagged[len(shown):]
        counts: dict[str, int] = {}
        for layer in rest:
            for f in layer.findings:
                counts[f.code] = counts.get(f.code, 0) + 1
        by_rule = ", ".join(f"{n} {code} ({RULES[code].name if code in RULES else code})"
                            for code, n in sorted(counts.items()))
        out.append(f"- … and the findings of {len(rest)} more layers: {by_rule} (the JSON and HTML reports list all)")
    return out


def _model(model: ModelReport, fold_ok: bool, cap: int | None) -> list[str]:
    out = [f"## initaudit: `{model.path}`\n"]
    if model.error is not None:
        out.append(f"**Could not be read** (`IA001`): {_cell(model.error)}\n")
        return out
    out.append(summary_line(model) + "\n")
    out.extend(markdown_model(model))
    flagged = sorted((layer for layer in model.layers if layer.status != "ok"),
                     key=lambda layer: -STATUS_ORDER[layer.status])
    ok = [layer for layer in model.layers if layer.status == "ok"]
    shown = flagged if cap is None else flagged[:cap]
    if shown:
        out.append(_table(shown))
    if len(shown) < len(flagged):
        out.append(f"… and {len(flagged) - len(shown)} more flagged layers (the JSON and HTML reports list all).\n")
    if ok and fold_ok:
        out.append(f"<details><summary>{len(ok)} ok layer{'s' if len(ok) != 1 else ''}</summary>\n\n"
                   f"{_table(ok)}\n</details>\n")
    elif ok:
        out.append(f"{len(ok)} ok layer{'s' if len(ok) != 1 else ''} not listed.\n")
    findings = _findings(model, cap)
    if findings:
        out.append("### Findings\n")
        out.extend(findings)
    out.extend(review_markdown(model, None if fold_ok else cap))
    out.append("")
    return out


def _render(report: Report, fold_ok: bool, cap: int | None, stop: int | None = None) -> tuple[str, bool]:
    """(the report, whether it is complete): with ``stop``, the models after the first ``stop``
    characters are not rendered (such a text cannot fit; only its beginning may be kept)."""
    out = []
    baseline = baseline_line(report)
    if baseline:
        out.append("```text\n" + baseline + "\n```\n")
    out.extend(markdown_run(report))
    size = sum(len(line) + 1 for line in out)
    for i, model in enumerate(report.models):
        lines = _model(model, fold_ok, cap)
        out.extend(lines)
        size += sum(len(line) + 1 for line in lines)
        if stop is not None and size > stop and i + 1 < len(report.models):
            return "\n".join(out), False
    return "\n".join(out).rstrip() + "\n", True


def render(report: Report, limit: int = LIMIT) -> str:
    """The most complete report that fits in ``limit`` characters."""
    text = ""
    for fold_ok in (True, False):
        for cap in CAPS if not fold_ok else (None,):
            text, complete = _render(report, fold_ok, cap, stop=limit)
            if complete and len(text) <= limit:
                return text
    # even the most compact form is too long (hundreds of models): keep the whole lines that fit, then the note
    return _cut_to_fit(text, limit)


def _diff_table(pairs: list[LayerPair]) -> str:
    rows = []
    for pair in pairs:
        cells = [_cell(text) for text in diff_row(pair)]
        cells[-1] = ICON[pair.status]
        rows.append(cells)
    return tabulate(rows, headers=DIFF_HEADERS, tablefmt="github", disable_numparse=True) + "\n"


def _left_out(count: int, what: str) -> str:
    return f"… and {count} more {what} (the JSON and HTML reports list all).\n"


def _render_diff(report: DiffReport, cap: int | None) -> str:
    """The report with at most ``cap`` rows in each list (None: all)."""
    def capped(items: list[T]) -> list[T]:
        return items if cap is None else items[:cap]

    out = [f"## initaudit diff: `{_cell(report.a.path)}` → `{_cell(report.b.path)}`\n",
           _cell(diff_summary(report)) + "\n",
           tabulate([[side, f"`{_cell(s.path)}`", _cell(s.producer or "-"), str(s.opset), str(s.weights)]
                     for side, s in (("A", report.a), ("B", report.b))],
                    headers=["", "model", "producer", "opset", "weights"], tablefmt="github",
                    disable_numparse=True) + "\n"]
    pairs = report.worst_first()
    if pairs:
        out.append("### Matched layers, worst first\n")
        shown = capped(pairs)
        out.append(_diff_table(shown))
        if len(shown) < len(pairs):
            out.append(_left_out(len(pairs) - len(shown), "matched layers"))
    if report.unmatched:
        out.append("### Found in one model only\n")
        shown_u = capped(list(report.unmatched))
        out.append(tabulate([[u.side.upper(), _cell(u.name), _cell(u.op or "-"), shape(u.shape), u.dtype,
                              ICON[u.status]] for u in shown_u],
                            headers=["only in", "weight", "op", "shape", "stored", "status"], tablefmt="github",
                            disable_numparse=True) + "\n")
        if len(shown_u) < len(report.unmatched):
            out.append(_left_out(len(report.unmatched) - len(shown_u), "unmatched layers"))
    flagged = flagged_items(report)
    if flagged:
        out.append("### Findings\n")
        shown_f = capped(flagged)
        for item in shown_f:
            out += [f"- `{f.code}` {f.severity}: {_cell(f.message)}" for f in item.findings]
        if len(shown_f) < len(flagged):
            counts: dict[str, int] = {}
            for item in flagged[len(shown_f):]:
                for f in item.findings:
                    counts[f.code] = counts.get(f.code, 0) + 1
            by_rule = ", ".join(f"{n} {code} ({RULES[code].name if code in RULES else code})"
                                for code, n in sorted(counts.items()))
            out.append(f"- … and the findings of {len(flagged) - len(shown_f)} more layers: {by_rule} "
                       "(the JSON and HTML reports list all)")
    return "\n".join(out).rstrip() + "\n"


def render_diff(report: DiffReport, limit: int = LIMIT) -> str:
    """The diff as the audit's Markdown is: the most complete form that fits in ``limit`` characters."""
    text = ""
    for cap in CAPS:
        text = _render_diff(report, cap)
        if len(text) <= limit:
            return text
    return _cut_to_fit(text, limit)


def _cut_to_fit(text: str, limit: int) -> str:
    """The whole lines of ``text`` that fit in ``limit`` characters with the note that it was cut (the last
    resort when even the most compact form is too long)."""
    note = "\n\n… cut to fit a comment; the JSON and HTML reports have everything.\n"
    room = limit - len(note)
    end = text.rfind("\n", 0, room + 1) if room > 0 else -1
    kept = text[:end].rstrip("\n") if end > 0 else ""
    return (kept + note if kept else note.lstrip("\n"))[:max(0, limit)]
