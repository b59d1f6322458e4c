"""initaudit: static audit of neural-network weight initialization in ONNX models.

The public names load on first use, so that ``import initaudit`` (and ``python -m
initaudit``) does not load numpy yet: the command line sets BLAS to one thread first
(``initaudit.cli.entry``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

_EXPORTS = {
    "audit": "pipeline.run", "audit_model": "pipeline.run", "AuditOptions": "pipeline.options",
    "InitauditError": "errors", "Fans": "trace.fans", "layout_fans": "trace.fans", "Finding": "findings",
    "LayerReport": "report.model", "ModelReport": "report.model", "Report": "report.model",
    "diff": "pipeline.diff", "DiffReport": "report.comparison",
}

__all__ = [
    "__version__", "audit", "audit_model", "AuditOptions", "InitauditError", "Fans", "layout_fans",
    "Finding", "LayerReport", "ModelReport", "Report", "diff", "DiffReport",
]

if TYPE_CHECKING:
    from initaudit.errors import InitauditError
    from initaudit.findings import Finding
    from initaudit.pipeline.diff import diff
    from initaudit.pipeline.options import AuditOptions
    from initaudit.pipeline.run import audit, audit_model
    from initaudit.report.comparison import DiffReport
    from initaudit.report.model import LayerReport, ModelReport, Report
    from initaudit.trace.fans import Fans, layout_fans


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'initaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
