"""The library entry point: model file(s) in, ``Report`` out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from . import __version__
from .errors import InitauditError
from .graph import ModelGraph, Scope
from .layers import analyze, is_candidate, unclaimed_layer
from .loader import load_model
from .ops import _canonical_domain
from .options import FAIL_ON, AuditOptions
from .report import Finding, ModelReport, Report, Skipped
from .signal import signal_drift
from .trace import PASS_THROUGH, SourceRef, WeightUse, constant_tensor, find_uses

__all__ = ["audit", "audit_model", "expand_paths", "AuditOptions", "FAIL_ON"]


def audit(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **options: object) -> Report:
    """Audit one model, several, or every ``*.onnx`` below a folder.

    Keyword options are the fields of ``AuditOptions`` (target, convention,
    profile, pool_aware, fail_on, select, ignore, fp16, drift_limit).

    Raises:
        InitauditError: a bad option, or a model that cannot be read.
    """
    opts = AuditOptions(**options)  # type: ignore[arg-type]
    files = expand_paths([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    models = tuple(audit_model(path, opts) for path in files)
    return Report(models, opts.fail_on, {"version": __version__})


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.onnx") if p.is_file())
            if not found:
                raise InitauditError(f"{path}: no *.onnx file in this folder")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise InitauditError("no model given")
    return files


def audit_model(path: str | os.PathLike[str], opts: AuditOptions | None = None) -> ModelReport:
    opts = opts or AuditOptions()
    with load_model(path) as model:
        graph = ModelGraph(model.proto)
        grouped: dict[tuple[str, str], list[WeightUse]] = {}
        for use in find_uses(graph, model.load_array):
            grouped.setdefault(use.source.key, []).append(use)
        layers = [analyze(model, graph, uses, opts) for uses in grouped.values()]
        skipped = []
        for scope in graph.scopes:
            for ref in _stored_tensors(scope):
                if ref.key in grouped or not is_candidate(ref.tensor):
                    continue
                op, domain, slot = _final_consumer(graph, scope, ref.name)
                if op is None:
                    continue
                if _canonical_domain(domain) == "":
                    skipped.append(Skipped(ref.name, scope.path, op, f"input {slot} of {op}, not a layer weight"))
                else:
                    layers.append(unclaimed_layer(model, ref, op, domain, opts))
        drift, findings = signal_drift(graph, grouped, layers, opts.drift_limit)
    proto = model.proto
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelReport(
        path=str(path), opset=opset, producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
        ir_version=proto.ir_version, target=opts.target, convention=opts.convention, profile=opts.profile,
        layers=tuple(layers), skipped=tuple(skipped), signal_gain=drift,
        findings=tuple(f for f in findings if opts.keeps(f.code)),
    )


def _stored_tensors(scope: Scope) -> Iterable[SourceRef]:
    for name, tensor in scope.initializers.items():
        yield SourceRef(scope.path, name, tensor, "initializer")
    for node in scope.nodes:
        if node.op_type == "Constant" and node.output:
            tensor = constant_tensor(node)
            if tensor is not None:
                yield SourceRef(scope.path, node.output[0], tensor, "constant")


def _final_consumer(graph: ModelGraph, scope: Scope, name: str) -> tuple[str | None, str, int]:
    """The first op that reads ``name`` (here or in a nested body) other than a pass-through node."""
    for _ in range(32):
        users = [(node, slot) for inner in graph.scopes for node, slot in inner.consumers.get(name, [])
                 if inner is scope or graph.resolve(inner, name).scope is scope]
        if not users:
            return None, "", 0
        node, slot = users[0]
        if node.op_type in PASS_THROUGH and slot == 0 and node.output:
            name = node.output[0]
            continue
        return node.op_type, node.domain, slot
    return None, "", 0
