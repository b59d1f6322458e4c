"""The provenance block of the Markdown and HTML reports: what was reviewed (each file's size and
SHA-256, producer, opset) and how (initaudit and its options, the config file, the command, the time).
Rows of (label, text), each reporter setting them in its own markup."""
from __future__ import annotations

from html import escape

from initaudit.report.model import ModelReport, Provenance, Report

#: External data files listed one by one; beyond, a count (some exporters write a file per tensor).
FILES_LISTED = 20


def size_text(size: int) -> str:
    """``1,234,567 bytes (1.2 MiB)``: the exact count a reader compares, and its magnitude."""
    if size < 1024:
        return f"{size:,} bytes"
    value, units = size / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{size:,} bytes ({value:.1f} {units[0]})"


def options_text(options: dict[str, object]) -> str:
    """``target xavier, convention connectivity, profile trained, …``: every option, lists joined."""
    parts = []
    for key, value in options.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) if value else "none"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{key.replace('_', '-')} {value}")
    return "; ".join(parts)


def run_rows(provenance: Provenance) -> list[tuple[str, str]]:
    versions = ", ".join(f"{name} {version}" for name, version in provenance.versions.items())
    return [("initaudit", provenance.initaudit + (f" ({versions})" if versions else "")),
            ("command", provenance.command or "(the Python API)"),
            ("time (UTC)", provenance.time_utc),
            ("config file", provenance.config or "none"),
            ("options", options_text(provenance.options))]


def model_rows(model: ModelReport) -> list[tuple[str, str]]:
    """The model's own facts; its files when the report carries provenance."""
    rows = [("model", model.path)]
    if model.files:
        first = model.files[0]
        rows.append(("size", size_text(first.size)))
        rows.append(("SHA-256", first.sha256))
        external = model.files[1:]
        for f in external[:FILES_LISTED]:
            rows.append(("external data", f"{f.path}: {size_text(f.size)}, SHA-256 {f.sha256}"))
        if len(external) > FILES_LISTED:
            rows.append(("external data", f"… and {len(external) - FILES_LISTED} more files (the JSON report "
                                          "lists every one)"))
        if external:
            rows.append(("total size", size_text(sum(f.size for f in model.files))))
    if model.error is None:
        rows.append(("producer", model.producer or "unknown"))
        rows.append(("opset", f"{model.opset} (IR version {model.ir_version})"))
    return rows


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_run(report: Report) -> list[str]:
    """The run's provenance, folded under a summary line that already says the essentials."""
    p = report.provenance
    if p is None:
        return []
    rows = "\n".join(f"| {label} | {_md(text)} |" for label, text in run_rows(p))
    return [f"<details><summary>Provenance: initaudit {p.initaudit}, {p.time_utc}</summary>\n\n"
            f"| | |\n|---|---|\n{rows}\n\n</details>\n"]


def markdown_model(model: ModelReport) -> list[str]:
    if not model.files:
        return []
    (label, path), *rest = model_rows(model)
    rows = "\n".join(f"| {label} | {_md(text)} |" for label, text in rest)
    return [f"| {label} | `{_md(path)}` |\n|---|---|\n{rows}\n"]


def html_rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(label)}</th><td>{escape(text)}</td></tr>" for label, text in rows)
