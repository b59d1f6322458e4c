"""One reporter per output format, all reading the same ``Report``.

The contract: a format is one module here, named as the format, with
``render(report: Report) -> str`` and ``render_diff(report: DiffReport) -> str`` for ``initaudit diff``
(plus ``color: bool`` when the format takes colour), and one
entry in ``FORMATS`` that says what the rest of the tool needs to know of it: the extension of a
file written in it, and what it needs the audit to collect beyond the default report (histograms
of flagged layers' values: a second pass over those layers).  Adding a format is that module and
that entry; the CLI's choices and the golden tests follow the table, and a test holds the formats
table of docs/ci.md against it.  Modules are imported only when asked for (start-up time matters
for a tool that runs on every CI job).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from initaudit.report.comparison import DiffReport
from initaudit.report.model import Report


@dataclass(frozen=True)
class Format:
    name: str
    extension: str              # of a file written in this format
    histograms: bool = False    # draws flagged layers' values: the audit measures them (a second pass)
    color: bool = False         # render() takes color=True for a terminal
    provenance: bool = False    # names what was reviewed: the command line hashes the files (report.provenance)


FORMATS: tuple[Format, ...] = (
    Format("table", ".txt", color=True),
    Format("json", ".json", provenance=True),
    Format("markdown", ".md", provenance=True),
    Format("html", ".html", histograms=True, provenance=True),
    Format("sarif", ".sarif"),
    Format("junit", ".xml"),
    Format("github", ".txt"),
    Format("codequality", ".json"),
)
FORMAT: dict[str, Format] = {f.name: f for f in FORMATS}
REPORTERS: tuple[str, ...] = tuple(FORMAT)


def render(report: Report | DiffReport, fmt: str, color: bool = False, **kwargs: object) -> str:
    """The report in format ``fmt`` (a ``DiffReport`` by the module's ``render_diff``); ``color`` is passed
    only to a format that takes it."""
    if fmt not in FORMAT:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(REPORTERS)}")
    module = importlib.import_module(f".{fmt}", __name__)
    if FORMAT[fmt].color:
        kwargs["color"] = color
    if isinstance(report, DiffReport):
        return module.render_diff(report, **kwargs)
    return module.render(report, **kwargs)


def needs_histograms(formats: tuple[str, ...] | list[str]) -> bool:
    """Whether any of these formats draws histograms, so the audit must measure them."""
    return any(FORMAT[f].histograms for f in formats)


def needs_provenance(formats: tuple[str, ...] | list[str]) -> bool:
    """Whether any of these formats records the run's provenance (file hashes, options, command)."""
    return any(FORMAT[f].provenance for f in formats)
