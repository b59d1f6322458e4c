"""``--format json``: the contract of ../shared/design.md (schema 1), plus extensions."""
from __future__ import annotations

import json
import math
from typing import Any

from initaudit.measure.stats import TensorStats
from initaudit.report.comparison import DiffReport, LayerPair
from initaudit.report.fingerprint import located_findings
from initaudit.report.formats._review import review_dict
from initaudit.report.model import LayerReport, ModelReport, Provenance, Report
from initaudit.version import __version__

SCHEMA = 1


def _clean(value: float | None) -> float | None:
    """JSON has no NaN/Inf: non-finite numbers become null."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _stats(stats: TensorStats) -> dict[str, Any]:
    return {
        "count": stats.total,
        "mean": _clean(stats.mean),
        "std": _clean(stats.std) if stats.count else None,
        "var": _clean(stats.var),
        "min": _clean(stats.min),
        "max": _clean(stats.max),
        "excess_kurtosis": _clean(stats.excess_kurtosis),
        "nonfinite": stats.nonfinite,
        "zeros": stats.zeros,
    }


def layer_dict(layer: LayerReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": layer.name,
        "node": layer.node,
        "op": layer.op,
        "shape": list(layer.shape),
        "layout": layer.layout,
        "groups": layer.groups,
        "fan_in": layer.fan_in,
        "fan_out": layer.fan_out,
        **_stats(layer.stats),
        "target": layer.target,
        "target_var": _clean(layer.target_var),
        "ratio": _clean(layer.ratio),
        "status": layer.status,
        "matches": list(layer.matches),
        "distribution": layer.distribution,
        "findings": [{"code": f.code, "severity": f.severity, "message": f.message} for f in layer.findings],
        # extensions beyond schema 1's minimum
        "graph": layer.graph,
        "dtype": layer.dtype,
        "storage": layer.storage,
        "fans": {k: v.as_list() for k, v in layer.fans.items()} if layer.fans else None,
        "gain": layer.gain,
        "target_reason": layer.target_reason,
        "pool_area": layer.pool_area,
        "scale": layer.scale,
        "forward_gain": _clean(layer.forward_gain),
        "ignored": next((f.message for f in layer.findings if f.code == "IA502"), None),
        "consumers": [
            {"node": c.node, "op": c.op, "graph": c.graph, "input": c.slot, "layout": c.layout,
             "fan_in": c.fans.fan_in if c.fans else None, "fan_out": c.fans.fan_out if c.fans else None}
            for c in layer.consumers
        ],
    }
    if layer.parts:
        out["parts"] = [{"name": p.name, **_stats(p.stats), "ratio": _clean(p.ratio), "status": p.status}
                        for p in layer.parts]
    if layer.review is not None:
        out["review"] = review_dict(layer.review)
    if layer.suggestion:
        s = layer.suggestion
        out["suggestion"] = {"scale": _clean(s.scale), "target_std": _clean(s.target_std),
                             "pytorch": s.pytorch, "keras": s.keras, "jax": s.jax}
    return out


def model_dict(model: ModelReport) -> dict[str, Any]:
    if model.error is not None:  # same keys as a readable model, so a reader needs no special case
        return {
            "model": {"path": model.path, "opset": None, "producer": None, "ir_version": None},
            "target": model.target, "convention": model.convention, "profile": model.profile,
            "layers": [], "summary": model.summary, "status": "error", "error": model.error,
            "findings": [{"code": "IA001", "severity": "fail", "message": model.error}],
            "signal_gain": None, "skipped": [],
        }
    return {
        "model": {"path": model.path, "opset": model.opset, "producer": model.producer,
                  "ir_version": model.ir_version, **files_dict(model)},
        "target": model.target,
        "convention": model.convention,
        "profile": model.profile,
        "layers": [layer_dict(layer) for layer in model.layers],
        "summary": model.summary,
        "status": model.status,
        "findings": [{"code": f.code, "severity": f.severity, "message": f.message} for f in model.findings],
        "signal_gain": _clean(model.signal_gain),
        "profile_reason": model.profile_reason,
        "skipped": [{"name": s.name, "graph": s.graph, "op": s.op, "reason": s.reason} for s in model.skipped],
        "policy": policy_dict(model),
    }


def files_dict(model: ModelReport) -> dict[str, Any]:
    """With provenance: the model file's ``bytes`` and ``sha256``, and each external data file's."""
    if not model.files:
        return {}
    first, rest = model.files[0], model.files[1:]
    return {"bytes": first.size, "sha256": first.sha256,
            "external_data": [{"location": f.path, "bytes": f.size, "sha256": f.sha256} for f in rest]}


def provenance_dict(provenance: Provenance) -> dict[str, Any]:
    return {"initaudit": provenance.initaudit, "command": provenance.command, "time_utc": provenance.time_utc,
            "options": provenance.options, "config": provenance.config, "versions": provenance.versions}


def policy_dict(model: ModelReport) -> dict[str, Any] | None:
    """The init most layers share (judge.policy.infer_policy), or null when none dominates."""
    p = model.policy
    if p is None:
        return None
    return {"kind": p.kind, "value": p.scheme if p.kind == "scheme" else p.groups[0].label,
            "convention": p.convention, "label": p.label,
            "groups": [{"value": g.label, "std": g.std, "count": len(g.members)} for g in p.groups],
            "count": len(p.followers), "of": p.layers, "layers": list(p.follower_names)}


def report_dict(report: Report) -> dict[str, Any]:
    head: dict[str, Any] = {"initaudit": __version__, "schema": SCHEMA}
    if report.warnings:
        head["warnings"] = list(report.warnings)
    if report.provenance is not None:
        head["provenance"] = provenance_dict(report.provenance)
    models = [model_dict(m) for m in report.models]
    if report.baseline is not None:
        _mark_baseline(report, models)
    if len(report.models) == 1:
        out = {**head, **models[0], "exit_code": report.exit_code}
    else:
        out = {**head, "models": models, "exit_code": report.exit_code}
    if report.baseline is not None:
        known = len(report.baseline.known)
        total = sum(1 for _ in located_findings(report))
        out["baseline"] = {"path": report.baseline.path, "new": total - known, "unchanged": known,
                           "gone": list(report.baseline.gone)}
    return out


def _mark_baseline(report: Report, models: list[dict[str, Any]]) -> None:
    """Each finding's ``baseline``: ``new`` (counts toward the exit code) or ``unchanged``."""
    for item in located_findings(report):
        m, layer, f = item.position
        owner = models[m] if layer < 0 else models[m]["layers"][layer]
        owner["findings"][f]["baseline"] = "new" if report.counts(*item.position) else "unchanged"


def render(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _findings(findings) -> list[dict[str, str]]:
    return [{"code": f.code, "severity": f.severity, "message": f.message} for f in findings]


def pair_dict(pair: LayerPair) -> dict[str, Any]:
    change = pair.change
    figures: dict[str, Any] = {"sqnr_db": None, "rel_change": None, "correlation": None, "identical": None,
                               "max_abs_diff": None, "worst_unit": None, "worst_unit_sqnr_db": None, "units": None,
                               "count": None, "nonfinite": None}
    if change is not None:
        figures = {"sqnr_db": _clean(change.sqnr_db), "rel_change": _clean(change.rel_change),
                   "correlation": _clean(change.correlation), "identical": change.identical,
                   "max_abs_diff": _clean(change.max_abs_diff), "worst_unit": change.worst_unit,
                   "worst_unit_sqnr_db": _clean(change.worst_unit_sqnr_db), "units": change.units or None,
                   "count": change.count, "nonfinite": change.nonfinite}
    return {"a": pair.a, "b": pair.b, "op": pair.op_a, "op_b": pair.op_b, "node_a": pair.node_a,
            "node_b": pair.node_b, "shape_a": list(pair.shape_a), "shape_b": list(pair.shape_b),
            "dtype_a": pair.dtype_a, "dtype_b": pair.dtype_b, "bits_a": pair.bits_a, "bits_b": pair.bits_b,
            "matched_by": pair.matched_by, "compared": change is not None, **figures,
            "batchnorm_folded": pair.folded or None, "status": pair.status, "findings": _findings(pair.findings)}


def diff_dict(report: DiffReport) -> dict[str, Any]:
    side = lambda s: {"path": s.path, "producer": s.producer, "opset": s.opset, "weights": s.weights}  # noqa: E731
    return {"initaudit": __version__, "schema": SCHEMA, "kind": "diff", "a": side(report.a), "b": side(report.b),
            "layers": [pair_dict(p) for p in report.layers],
            "unmatched": [{"side": u.side, "name": u.name, "op": u.op, "node": u.node, "shape": list(u.shape),
                           "dtype": u.dtype, "status": u.status, "findings": _findings(u.findings)}
                          for u in report.unmatched],
            "summary": report.summary, "status": report.status, "exit_code": report.exit_code}


def render_diff(report: DiffReport) -> str:
    return json.dumps(diff_dict(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
