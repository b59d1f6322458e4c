"""The library entry point: model file(s) in, ``Report`` out."""
from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from initaudit.errors import InitauditError
from initaudit.findings import finding, worst_status
from initaudit.judge.drift import signal_drift
from initaudit.judge.profile import decide_profile, looks_trained
from initaudit.measure.histogram import layer_histogram
from initaudit.measure.spectrum import planned_spectrum
from initaudit.measure.stats import Moments
from initaudit.measure.streaming import PARALLEL_MIN_BYTES, default_jobs, single_blas_thread
from initaudit.measure.units import measure_units
from initaudit.pipeline.layer import finish
from initaudit.pipeline.layer_rules import dead_rules
from initaudit.pipeline.options import FAIL_ON, AuditOptions
from initaudit.pipeline.paths import Exclude, expand
from initaudit.pipeline.review import apply_review, model_findings, profile_finding
from initaudit.pipeline.specs import layer_specs
from initaudit.read.graph import ModelGraph
from initaudit.read.loader import load_model
from initaudit.report.model import LayerReport, ModelReport, Report
from initaudit.trace.follow import uses_by_weight
from initaudit.trace.plan import MeasureTask, other_constants, plan, plan_absent
from initaudit.version import __version__

__all__ = ["audit", "audit_model", "expand_paths", "unreadable_model", "AuditOptions", "FAIL_ON"]

#: IA003's message: a model in which no weight slot reads anything (not "0 ok").
NO_WEIGHTS = "no weight-carrying layer found: nothing was checked"
#: The statistics of a weight the file does not hold.
NOT_MEASURED = Moments().stats()


def audit(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], jobs: int | None = None,
          errors: str = "raise", progress: Callable[[int, int, str], None] | None = None,
          **options: object) -> Report:
    """Audit one model, several, or every ``*.onnx`` below a folder.

    Keyword options are the fields of ``AuditOptions`` (target, convention,
    profile, pool_aware, fail_on, select, ignore, fp16, drift_limit).  ``jobs``
    (default: the number of cores) processes share the work: several models are
    spread over them, a single large model's tensors too.

    ``errors="raise"`` (default) raises on the first model that cannot be read;
    ``errors="report"`` audits every readable model and carries each unreadable
    one as a ``ModelReport`` with ``error`` set and no layers (exit code 2).
    ``progress(done, total, path)`` is called after each model.

    Raises:
        InitauditError: a bad option, or (with ``errors="raise"``) a model that cannot be read.
    """
    if errors not in ("raise", "report"):
        raise InitauditError(f"errors must be 'raise' or 'report', got {errors!r}")
    opts = AuditOptions(**options)  # type: ignore[arg-type]
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise InitauditError(f"jobs must be at least 1, got {jobs}")
    files = expand_paths([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    models: list[ModelReport] = []
    if len(files) > 1 and jobs > 1 and _folder_bytes(files) >= PARALLEL_MIN_BYTES:
        results: Generator[ModelReport | InitauditError, None, None] = _audit_in_processes(files, opts, jobs)
    else:
        results = (_audit_one((path, opts, jobs)) for path in files)
    with closing(results):  # a raise below shuts the worker pool down here, not in a finalizer
        for path, result in zip(files, results):
            if isinstance(result, InitauditError):
                if errors == "raise":
                    raise result
                result = unreadable_model(path, str(result), opts)
            models.append(result)
            if progress is not None:
                progress(len(models), len(files), str(path))
    dead = dead_rules(opts.layers, {i for m in models for i in m.rules_matched})
    warnings = tuple(f"{rule.label} matched no layer in any audited model" for rule in dead)
    notes = opts.selected(finding("IA503", w) for w in warnings)
    if notes:
        models = [replace(m, findings=m.findings + notes) if m.error is None else m for m in models]
    warnings += tuple(f"{m.path}: {NO_WEIGHTS}" for m in models if any(f.code == "IA003" for f in m.findings))
    return Report(tuple(models), opts.fail_on, {"version": __version__}, warnings)


def _folder_bytes(files: list[Path]) -> int:
    """Bytes in the models' folders (external data lives next to its model): below
    ``PARALLEL_MIN_BYTES`` a process pool's start-up costs more than the work it shares."""
    total = 0
    for folder in {f.resolve().parent for f in files}:
        try:
            total += sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
        except OSError:
            continue
        if total >= PARALLEL_MIN_BYTES:
            break
    return total


def unreadable_model(path: str | os.PathLike[str], reason: str, opts: AuditOptions) -> ModelReport:
    """The entry of a model that could not be read: its path, the one-line reason, no layers."""
    prefix = f"{path}: "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
    return ModelReport(path=str(path), opset=0, producer="", ir_version=0, target=opts.target,
                       convention=opts.convention, profile=opts.profile, layers=(), error=reason)


def _audit_one(args: tuple[Path, AuditOptions, int]) -> ModelReport | InitauditError:
    try:
        return audit_model(*args)
    except InitauditError as exc:  # carried back and raised (or reported) in order
        return exc


def _audit_in_processes(files: list[Path], opts: AuditOptions, jobs: int) -> Generator[ModelReport | InitauditError, None, None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(files)), mp_context=context) as pool:
        yield from pool.map(_audit_one, [(f, opts, 1) for f in files])


def expand_paths(paths: Iterable[str | os.PathLike[str]], exclude: Exclude | None = None) -> list[Path]:
    """The model files of a run: each folder walked for ``*.onnx`` less ``exclude`` (default: hidden
    folders, venv, node_modules, __pycache__), a lone ``x.onnx.data`` mapped to ``x.onnx``, each once."""
    return expand(paths, exclude)


def audit_model(path: str | os.PathLike[str], opts: AuditOptions | None = None, jobs: int = 1) -> ModelReport:
    """Audit one model; with ``jobs`` > 1 a large model's tensors are read by that many processes."""
    opts = opts or AuditOptions()
    with single_blas_thread(), load_model(path) as model:
        graph = ModelGraph(model.proto)
        grouped, absent = uses_by_weight(graph, model.load_array)
        planned = [plan(model, graph, uses, opts.convention, opts.pool_aware) for uses in grouped.values()]
        skipped, unsupported = other_constants(model, graph, grouped)
        planned += unsupported
        measured, sums = measure_units(planned, jobs, opts.profile in ("trained", "auto") or opts.fp16)
        profile_reason = None
        if opts.profile == "auto":
            decided, profile_reason = decide_profile(sums, [stats for stats, _ in measured])
            opts = replace(opts, profile=decided)  # type: ignore[arg-type]
        for uses in absent.values():  # listed last, with IA002: nothing to measure or review
            planned.append(plan_absent(model, graph, uses, opts.convention))
            measured.append((NOT_MEASURED, []))
            sums += [None] if sums else []
        specs, policy, matched = layer_specs(planned, measured, opts)
        layers = [finish(p, stats, parts, opts, spec) for p, (stats, parts), spec in zip(planned, measured, specs)]
        if sums:
            layers = apply_review(layers, sums, opts, lambda i: planned_spectrum(planned[i]))
        if opts.profile == "init" and profile_reason is None:
            profile_reason = looks_trained([stats for stats, _ in measured])
        drift, findings = signal_drift(graph, grouped, [(layer.name, layer.forward_gain) for layer in layers],
                                        opts.drift_limit)
        findings = model_findings(findings, opts)
        hint = profile_finding(profile_reason)
        if hint is not None:
            findings = [*findings, hint]
        if not layers and not skipped:
            findings = [*findings, finding("IA003", NO_WEIGHTS)]
        proto = model.proto
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        report = selected(ModelReport(
            path=str(path), opset=opset,
            producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
            ir_version=proto.ir_version, target=opts.target, convention=opts.convention, profile=opts.profile,
            layers=tuple(layers), skipped=tuple(skipped), signal_gain=drift, findings=tuple(findings),
            policy=policy, rules_matched=matched, profile_reason=profile_reason,
        ), opts)
        if opts.histograms:  # of the layers still flagged once the code filter is applied
            report = replace(report, layers=tuple(with_histogram(layer, p.task)
                                                  for p, layer in zip(planned, report.layers)))
    return report


def selected(model: ModelReport, opts: AuditOptions) -> ModelReport:
    """A judged model with only the findings ``--select`` / ``--ignore`` keep: each layer's status
    follows what is kept, and a layer left with nothing to fix loses its suggestion."""
    layers = []
    for layer in model.layers:
        kept = opts.selected(layer.findings)
        status = worst_status(kept)
        layers.append(layer if kept == layer.findings else replace(
            layer, findings=kept, status=status, suggestion=layer.suggestion if status != "ok" else None))
    return replace(model, layers=tuple(layers), findings=opts.selected(model.findings))


def with_histogram(layer: LayerReport, task: MeasureTask) -> LayerReport:
    """A flagged layer with the histogram of its values (a second pass over that layer only)."""
    if layer.status == "ok" or not layer.stats.count:
        return layer
    s = layer.stats
    found = layer_histogram(task, s.min, s.max, s.std, layer.target_var, layer.scale)
    return replace(layer, histogram=found)


