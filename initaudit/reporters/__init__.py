"""One reporter per output format, all reading the same ``Report``."""
from __future__ import annotations

from typing import Callable

from ..report import Report
from . import html, json, junit, markdown, sarif, table

Renderer = Callable[[Report], str]

REPORTERS: dict[str, Renderer] = {
    "table": table.render,
    "json": json.render,
    "markdown": markdown.render,
    "html": html.render,
    "sarif": sarif.render,
    "junit": junit.render,
}


def render(report: Report, fmt: str, **kwargs: object) -> str:
    try:
        renderer = REPORTERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(REPORTERS)}") from None
    return renderer(report, **kwargs) if kwargs else renderer(report)
