"""``--format markdown``: for pull-request comments and review documents."""
from __future__ import annotations

from tabulate import tabulate

from ..baseline import baseline_line
from ..report import Report
from ._common import num, shape, std, summary_line, target_std

HEADERS = ["layer", "op", "shape", "layout", "fan_in", "fan_out", "std", "target std", "ratio", "status"]
ICON = {"ok": "ok", "warn": "**warn**", "fail": "**FAIL**"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: Report) -> str:
    out = []
    baseline = baseline_line(report)
    if baseline:
        out.append("```text\n" + baseline + "\n```\n")
    for model in report.models:
        out.append(f"## initaudit: `{model.path}`\n")
        if model.error is not None:
            out.append(f"**Could not be read** (`IA001`): {_cell(model.error)}\n")
            continue
        out.append(summary_line(model) + "\n")
        rows = [[_cell(layer.name), layer.op, shape(layer.shape), layer.layout or "-", num(layer.fan_in, 9),
                 num(layer.fan_out, 9), num(std(layer)), num(target_std(layer)), num(layer.ratio),
                 ICON[layer.status]] for layer in model.layers]
        if rows:
            out.append(tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True) + "\n")
        flagged = [layer for layer in model.layers if layer.findings]
        if flagged or model.findings:
            out.append("### Findings\n")
        for finding in model.findings:
            out.append(f"- **model** `{finding.code}` {finding.severity}: {_cell(finding.message)}")
        for layer in flagged:
            for finding in layer.findings:
                out.append(f"- `{_cell(layer.name)}` `{finding.code}` {finding.severity}: {_cell(finding.message)}")
            if layer.suggestion:
                s = layer.suggestion
                out.append(f"  - fix: multiply by {s.scale:.4g} (target std {s.target_std:.4g}); "
                           f"PyTorch `{s.pytorch}`; Keras `{s.keras}`; JAX `{s.jax}`")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
