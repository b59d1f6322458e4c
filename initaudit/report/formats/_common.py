"""Formatting shared by the text reporters."""
from __future__ import annotations

import math

from initaudit.judge.schemes import usual_gain
from initaudit.report.fingerprint import located_findings
from initaudit.report.model import LayerReport, ModelReport, Report


def num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def shape(dims: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def target_std(layer: LayerReport) -> float | None:
    return math.sqrt(layer.target_var) if layer.target_var else None


def std(layer: LayerReport) -> float | None:
    return layer.stats.std * abs(layer.scale) if layer.stats.count else None


def summary_line(model: ModelReport) -> str:
    if model.error is not None:
        return f"{model.path}: could not be read (IA001): {model.error}"
    s = model.summary
    text = (f"{model.path}: {s['layers']} weight{'s' if s['layers'] != 1 else ''} — "
            f"{s['ok']} ok, {s['warn']} warn, {s['fail']} fail "
            f"(target {model.target}, convention {model.convention}, profile {model.profile})")
    if s["skipped"]:
        text += f"; {s['skipped']} non-weight constant{'s' if s['skipped'] != 1 else ''} skipped"
    if model.policy is not None:
        text += f"; policy {model.policy.summary()}"
    return text


def hint(layer: LayerReport) -> str:
    if layer.suggestion is None:
        return ""
    return f"×{layer.suggestion.scale:.3g}"


def chosen_target(layer: LayerReport) -> str:
    """``he×1.41`` style: the scheme a layer is held to, with a gain other than the scheme's usual one."""
    if layer.target is None:
        return "-"
    return layer.target if abs(layer.gain - usual_gain(layer.target)) < 1e-12 else f"{layer.target} g={layer.gain:.3g}"


def baseline_line(report: Report) -> str | None:
    """``baseline FILE: 2 new, 5 unchanged, 1 gone`` and a line per gone finding."""
    b = report.baseline
    if b is None:
        return None
    total = sum(1 for _ in located_findings(report))
    lines = [f"baseline {b.path}: {total - len(b.known)} new, {len(b.known)} unchanged, {len(b.gone)} gone"]
    for entry in b.gone:
        where = entry.get("layer") or "model"
        lines.append(f"  gone: {entry.get('model')} {where} {entry.get('code')} ({entry.get('message')})")
    return "\n".join(lines)
