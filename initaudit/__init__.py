"""initaudit: static audit of neural-network weight initialization in ONNX models."""
from __future__ import annotations

__version__ = "0.1.0"

from .audit import audit, audit_model  # noqa: E402
from .errors import InitauditError  # noqa: E402
from .fans import Fans, layout_fans  # noqa: E402
from .options import AuditOptions  # noqa: E402
from .report import Finding, LayerReport, ModelReport, Report  # noqa: E402

__all__ = [
    "__version__", "audit", "audit_model", "AuditOptions", "InitauditError", "Fans", "layout_fans",
    "Finding", "LayerReport", "ModelReport", "Report",
]
