"""initaudit: static audit of neural-network weight initialization in ONNX models.

The public names load on first use, so that ``import initaudit`` (and ``python -m
initaudit``) does not load numpy yet: the command line sets BLAS to one thread first
(``initaudit.entry``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "audit": "pipeline", "audit_model": "pipeline", "AuditOptions": "options", "InitauditError": "errors",
    "Fans": "fans", "layout_fans": "fans", "Finding": "report", "LayerReport": "report",
    "ModelReport": "report", "Report": "report",
}

__all__ = [
    "__version__", "audit", "audit_model", "AuditOptions", "InitauditError", "Fans", "layout_fans",
    "Finding", "LayerReport", "ModelReport", "Report",
]

if TYPE_CHECKING:
    from .errors import InitauditError
    from .fans import Fans, layout_fans
    from .options import AuditOptions
    from .pipeline import audit, audit_model
    from .report import Finding, LayerReport, ModelReport, Report


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'initaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
