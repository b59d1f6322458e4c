"""The terminal table: one row per weight, the findings that matter, a summary line.

A table longer than a screen (``SUMMARY_FIRST_ROWS``) starts with the model's summary line too, so the
verdict is seen without scrolling back; ``quiet`` keeps the flagged rows, the findings and the summary;
a batch ends with a grand total.  ``statistics`` is ``--statistics``: the count per rule code.
"""
from __future__ import annotations

from tabulate import tabulate

from initaudit.codes import RULES
from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER, Finding, finding
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
from initaudit.report.formats._diff import HEADERS as DIFF_HEADERS
from initaudit.report.formats._diff import row as diff_row
from initaudit.report.formats._diff import summary_line as diff_summary
from initaudit.report.model import ModelReport, Report

HEADERS = ["layer", "op", "shape", "layout", "fan_in", "fan_out", "std", "target std", "ratio", "status"]
COLORS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31;1m"}
RESET = "\033[0m"
#: A table of more rows than this (about a screen) shows the summary line above it as well as below.
SUMMARY_FIRST_ROWS = 40


def _model(model: ModelReport, color: bool, quiet: bool) -> str:
    with_hint = any(layer.suggestion for layer in model.layers)
    with_target = model.target == "auto" or any(layer.target not in (None, model.target) for layer in model.layers)
    rows = []
    for layer in model.layers:
        if quiet and layer.status == "ok":
            continue
        status = f"{COLORS[layer.status]}{layer.status}{RESET}" if color else layer.status
        row = [layer.name, layer.op, shape(layer.shape), layer.layout or "-",
               num(layer.fan_in, 9), num(layer.fan_out, 9), num(std(layer)), num(target_std(layer)),
               num(layer.ratio), status]
        if with_target:
            row.insert(-2, chosen_target(layer))
        if with_hint:
            row.append(hint(layer))
        rows.append(row)
    lines = []
    if len(rows) > SUMMARY_FIRST_ROWS:
        lines += [summary_line(model), ""]
    if rows:
        headers = HEADERS[:-2] + (["target"] if with_target else []) + HEADERS[-2:] + (["fix"] if with_hint else [])
        lines.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    notes = [f"  {layer.name}: {f.code} {f.severity}: {f.message}"
             for layer in model.layers for f in layer.findings if f.severity != "info" or f.code == "IA502"]
    notes += [f"  model: {f.code} {f.severity}: {f.message}" for f in model.findings]
    if notes:
        if lines:
            lines.append("")
        lines.extend(notes)
    lines.append(summary_line(model))
    return "\n".join(lines)


def total_line(report: Report) -> str:
    """``total: 3 models, 120 weights — 100 ok, 15 warn, 5 fail; 1 unreadable`` (a batch's last line)."""
    readable = [m for m in report.models if m.error is None]
    counts = {key: sum(m.summary[key] for m in readable) for key in ("layers", "ok", "warn", "fail")}
    text = (f"total: {len(report.models)} models, {counts['layers']} weight{'s' if counts['layers'] != 1 else ''} — "
            f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    failing = sum(1 for m in readable if m.status == "fail")
    if failing:
        text += f"; {failing} model{'s' if failing != 1 else ''} failing"
    if report.unreadable:
        text += f"; {len(report.unreadable)} unreadable"
    return text


def render(report: Report, color: bool = False, quiet: bool = False) -> str:
    blocks = [_model(model, color, quiet) for model in report.models]
    baseline = baseline_line(report)
    if baseline:
        blocks.append(baseline)
    if len(report.models) > 1:
        blocks.append(total_line(report))
    return "\n\n".join(blocks) + "\n"


def _all_findings(report: Report) -> list[Finding]:
    found = []
    for model in report.models:
        if model.error is not None:
            found.append(finding("IA001", model.error))
            continue
        found += [f for layer in model.layers for f in layer.findings]
        found += list(model.findings)
    return found


def statistics(report: Report) -> str:
    """``--statistics``: how many findings of each rule code (most first), with their severities."""
    counts: dict[str, dict[str, int]] = {}
    for f in _all_findings(report):
        counts.setdefault(f.code, {}).setdefault(f.severity, 0)
        counts[f.code][f.severity] += 1
    if not counts:
        return "no findings\n"
    order = sorted(counts, key=lambda code: (-sum(counts[code].values()), code))
    rows = []
    for code in order:
        by_severity = sorted(counts[code].items(), key=lambda item: -STATUS_ORDER[SEVERITY_STATUS[item[0]]])
        rows.append([str(sum(counts[code].values())), code, RULES[code].name if code in RULES else code,
                     ", ".join(f"{n} {severity}" for severity, n in by_severity)])
    return tabulate(rows, tablefmt="plain", colalign=("right", "left", "left", "left"), disable_numparse=True) + "\n"


def render_diff(report: DiffReport, color: bool = False, quiet: bool = False) -> str:
    """The matched layers worst first, then the layers found on one side only, the findings, the summary."""
    rows = []
    for pair in report.worst_first():
        if quiet and pair.status == "ok":
            continue
        cells = diff_row(pair)
        if color:
            cells[-1] = f"{COLORS[pair.status]}{pair.status}{RESET}"
        rows.append(cells)
    lines = []
    if rows:
        lines.append(tabulate(rows, headers=DIFF_HEADERS, tablefmt="simple", disable_numparse=True))
    if report.unmatched:
        lines += ["", tabulate([[u.side.upper(), u.name, u.op or "-", shape(u.shape), u.dtype] for u in report.unmatched],
                               headers=["only in", "weight", "op", "shape", "stored"], tablefmt="simple",
                               disable_numparse=True)]
    items: list[LayerPair | Unmatched] = [*report.worst_first(), *report.unmatched]
    notes = [f"  {f.code} {f.severity}: {f.message}" for item in items for f in item.findings if f.severity != "info"]
    if notes:
        lines += ["", *notes]
    lines += ["" if lines else "", diff_summary(report)]
    return "\n".join(lines).lstrip("\n") + "\n"
