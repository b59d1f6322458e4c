"""One reporter per output format, all reading the same ``Report``.

Each format lives in its own module, imported only when asked for (start-up
time matters for a tool that runs on every CI job).
"""
from __future__ import annotations

import importlib

from initaudit.report.model import Report

REPORTERS: tuple[str, ...] = ("table", "json", "markdown", "html", "sarif", "junit", "github", "codequality")


def render(report: Report, fmt: str, **kwargs: object) -> str:
    if fmt not in REPORTERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(REPORTERS)}")
    module = importlib.import_module(f".{fmt}", __name__)
    return module.render(report, **kwargs)
