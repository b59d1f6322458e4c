"""One reporter per output format, all reading the same ``Report``.

The contract: a format is one module here, named as the format, with
``render(report: Report) -> str`` (plus ``color: bool`` when the format takes colour), and one
entry in ``FORMATS`` that says what the rest of the tool needs to know of it: the extension of a
file written in it, and what it needs the audit to collect beyond the default report (histograms
of flagged layers' values: a second pass over those layers).  Adding a format is that module and
that entry; the CLI's choices, the golden tests and the docs' list follow the table.  Modules are
imported only when asked for (start-up time matters for a tool that runs on every CI job).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from initaudit.report.model import Report


@dataclass(frozen=True)
class Format:
    name: str
    extension: str              # of a file written in this format
    summary: str                # one line, for --help and the docs
    histograms: bool = False    # draws flagged layers' values: the audit measures them (a second pass)
    color: bool = False         # render() takes color=True for a terminal


FORMATS: tuple[Format, ...] = (
    Format("table", ".txt", "aligned text for a terminal (the default)", color=True),
    Format("json", ".json", "the full report, following the schema `initaudit schema` prints"),
    Format("markdown", ".md", "a summary and tables for a pull request or a job summary"),
    Format("html", ".html", "a self-contained page with charts and histograms", histograms=True),
    Format("sarif", ".sarif", "SARIF 2.1.0 for code scanning"),
    Format("junit", ".xml", "JUnit XML: one test case per layer"),
    Format("github", ".txt", "GitHub Actions workflow commands (annotations)"),
    Format("codequality", ".json", "GitLab Code Quality"),
)
FORMAT: dict[str, Format] = {f.name: f for f in FORMATS}
REPORTERS: tuple[str, ...] = tuple(FORMAT)


def render(report: Report, fmt: str, color: bool = False, **kwargs: object) -> str:
    """The report in format ``fmt``; ``color`` is passed only to a format that takes it."""
    if fmt not in FORMAT:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(REPORTERS)}")
    module = importlib.import_module(f".{fmt}", __name__)
    if FORMAT[fmt].color:
        kwargs["color"] = color
    return module.render(report, **kwargs)


def needs_histograms(formats: tuple[str, ...] | list[str]) -> bool:
    """Whether any of these formats draws histograms, so the audit must measure them."""
    return any(FORMAT[f].histograms for f in formats)
