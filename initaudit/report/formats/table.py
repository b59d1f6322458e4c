"""The terminal table: one row per weight, the findings that matter, a summary line."""
from __future__ import annotations

from tabulate import tabulate

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
from initaudit.report.model import Report

HEADERS = ["layer", "op", "shape", "layout", "fan_in", "fan_out", "std", "target std", "ratio", "status"]
COLORS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31;1m"}
RESET = "\033[0m"


def render(report: Report, color: bool = False) -> str:
    blocks = []
    for model in report.models:
        with_hint = any(layer.suggestion for layer in model.layers)
        with_target = model.target == "auto" or any(layer.target not in (None, model.target) for layer in model.layers)
        rows = []
        for layer in model.layers:
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
        if rows:
            headers = HEADERS[:-2] + (["target"] if with_target else []) + HEADERS[-2:] + (["fix"] if with_hint else [])
            lines.append(tabulate(rows, headers=headers,
                                  tablefmt="simple", disable_numparse=True))
        notes = [f"  {layer.name}: {f.code} {f.severity}: {f.message}"
                 for layer in model.layers for f in layer.findings if f.severity != "info" or f.code == "IA502"]
        notes += [f"  model: {f.code} {f.severity}: {f.message}" for f in model.findings]
        if notes:
            lines.append("")
            lines.extend(notes)
        lines.append(summary_line(model))
        blocks.append("\n".join(lines))
    baseline = baseline_line(report)
    if baseline:
        blocks.append(baseline)
    return "\n\n".join(blocks) + "\n"
