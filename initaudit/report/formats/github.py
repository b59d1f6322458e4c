"""``--format github``: GitHub Actions workflow commands, one annotation per finding.

GitHub shows at most 10 error, 10 warning and 10 notice annotations per step, so the
most severe come first, each level is capped at 10 and one plain line counts the
rest.  Data is escaped as the Actions toolkit does (``%``, CR, LF), properties also
``:`` and ``,``.  The command line also appends the Markdown report to
``$GITHUB_STEP_SUMMARY`` when that variable is set.

No file or tensor name can make a workflow command of its own: the runner reads a line as
a command when, leading spaces trimmed, it starts with ``::``, or when it holds the legacy
``##[`` anywhere.  Every plain line (the summaries, the counts) starts with ``initaudit:``,
is escaped like command data (a name with a newline stays on its line) and has ``##[``
broken up; names inside a command are escaped data or properties.
"""
from __future__ import annotations

from initaudit.codes import RULES
from initaudit.report.comparison import DiffReport
from initaudit.report.fingerprint import located_findings, relative_path
from initaudit.report.formats._common import summary_line
from initaudit.report.formats._diff import flagged_items, label
from initaudit.report.formats._diff import summary_line as diff_summary
from initaudit.report.model import Report

COMMAND = {"fail": "error", "warn": "warning", "info": "notice"}
ORDER = ("error", "warning", "notice")
PER_LEVEL = 10


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def plain(text: str) -> str:
    """A log line that is never a workflow command, whatever names ``text`` carries."""
    return "initaudit: " + escape_data(text).replace("##[", "##%5B")


def one_line(text: str) -> str:
    """A message for a log line (stderr), on one line and never a workflow command: control characters
    as backslash escapes, ``##[`` broken up. The line itself starts with ``initaudit:``."""
    out = []
    for ch in text:
        if ord(ch) < 32 or ord(ch) == 127:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{ord(ch):02x}"))
        else:
            out.append(ch)
    return "".join(out).replace("##[", "##\\[")


def command(level: str, file: str, title: str, message: str) -> str:
    return f"::{level} file={escape_property(file)},title={escape_property(title)}::{escape_data(message)}"


def render(report: Report) -> str:
    annotations: list[tuple[str, str, str, str]] = []   # level, file, title, message
    for model in report.unreadable:
        annotations.append(("error", relative_path(model.path), "IA001 unreadable-model",
                            f"could not be read: {model.error}"))
    known = 0
    for item in located_findings(report):
        if not report.counts(*item.position):
            known += 1
            continue
        f = item.finding
        name = RULES[f.code].name if f.code in RULES else f.code
        where = item.layer.name if item.layer else "model"
        annotations.append((COMMAND[f.severity], relative_path(item.model.path), f"{f.code} {name}: {where}",
                            f"{where}: {f.message}"))
    lines = _annotated(annotations)
    if known:
        lines.append(plain(f"{known} finding{'s' if known != 1 else ''} already in the baseline, not annotated"))
    lines += [plain(summary_line(m)) for m in report.models]
    return "\n".join(lines) + "\n"


def _annotated(annotations: list[tuple[str, str, str, str]]) -> list[str]:
    """The commands, most severe first, ``PER_LEVEL`` of each level, and a plain line counting the rest."""
    lines = []
    rest: dict[str, int] = {}
    for level in ORDER:
        of_level = [a for a in annotations if a[0] == level]
        lines += [command(*a) for a in of_level[:PER_LEVEL]]
        if len(of_level) > PER_LEVEL:
            rest[level] = len(of_level) - PER_LEVEL
    if rest:
        counts = ", ".join(f"{n} more {level}{'s' if n != 1 else ''}" for level, n in rest.items())
        lines.append(plain(f"{counts} not annotated (GitHub shows {PER_LEVEL} per level and step); "
                           "the step summary and the other formats list them all"))
    return lines


def render_diff(report: DiffReport) -> str:
    """One annotation per finding of the diff, on model B's file (worst layers first within a level), then
    the summary as a plain line."""
    file = relative_path(report.b.path)
    annotations = []
    for item in flagged_items(report):
        for f in item.findings:
            name = RULES[f.code].name if f.code in RULES else f.code
            annotations.append((COMMAND[f.severity], file, f"{f.code} {name}: {label(item)}", f.message))
    return "\n".join([*_annotated(annotations), plain(diff_summary(report))]) + "\n"
