"""--jobs: a folder of small models is audited in this process; large ones are spread over workers,
and both give the same report."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import initaudit
from initaudit.errors import InitauditError

audit_module = importlib.import_module("initaudit.pipeline.run")

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _summary(report) -> list[tuple[str, str, float]]:
    return [(m.path, layer.name, layer.stats.var) for m in report.models for layer in m.layers]


def test_small_models_stay_in_process(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool for a few KiB of models")
    monkeypatch.setattr(audit_module, "_audit_in_processes", no_pool)
    report = initaudit.audit(SAMPLES, jobs=2)
    assert len(report.models) == len(list(SAMPLES.glob("*.onnx")))


def test_pool_gives_the_same_report(monkeypatch, tmp_path):
    sequential = initaudit.audit(SAMPLES, jobs=1)
    monkeypatch.setattr(audit_module, "PARALLEL_MIN_BYTES", 0)
    assert audit_module._folder_bytes(sorted(SAMPLES.glob("*.onnx"))) > 0
    parallel = initaudit.audit(SAMPLES, jobs=2)
    assert _summary(parallel) == _summary(sequential)
    for sample in SAMPLES.glob("*.onnx"):
        (tmp_path / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "zz_broken.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(InitauditError, match="zz_broken.onnx"):
        initaudit.audit(tmp_path, jobs=2)
