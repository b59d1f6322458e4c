"""What every format says of a diff the same way: the figures of a pair as text, the summary line, how an
item is named, which items fail the run, and each finding's identity across runs."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from initaudit.findings import STATUS_ORDER, Finding
from initaudit.report.comparison import DiffReport, LayerPair, Unmatched
from initaudit.report.fingerprint import digest, relative_path

HEADERS = ["A", "B", "op", "shape", "B stored", "SQNR", "worst unit", "rel change", "corr", "status"]


def layer_name(pair: LayerPair) -> tuple[str, str]:
    """A's name, and B's when it differs ("=" otherwise)."""
    return pair.a, ("=" if pair.b == pair.a else pair.b)


def storage(pair: LayerPair) -> str:
    """B's storage: its element type, or the bits of MatMulNBits' packed blocks."""
    if pair.op_b == "MatMulNBits" and pair.bits_b is not None:
        return f"{pair.bits_b}-bit blocks"
    return pair.dtype_b


def db(value: float | None) -> str:
    if value is None:
        return "∞"
    return "-∞" if value == float("-inf") else f"{value:.1f} dB"


def figures(pair: LayerPair) -> list[str]:
    """SQNR, worst unit, relative change, correlation, as a table shows them."""
    change = pair.change
    if change is None:
        return ["not compared", "-", "-", "-"]
    if change.identical:
        return ["identical", "-", "0", "1"]
    worst = (f"#{change.worst_unit} {db(change.worst_unit_sqnr_db)}" if change.worst_unit is not None else "-")
    rel = "∞" if change.rel_change is None else f"{change.rel_change:.3g}"
    corr = "-" if change.correlation is None else f"{change.correlation:.4f}"
    return [db(change.sqnr_db), worst, rel, corr]


def row(pair: LayerPair) -> list[str]:
    a, b = layer_name(pair)
    op = pair.op_a if pair.op_a == pair.op_b else f"{pair.op_a} → {pair.op_b}"
    shape = "×".join(map(str, pair.shape_a)) or "scalar"
    return [a, b, op, shape, storage(pair), *figures(pair), pair.status]


def summary_line(report: DiffReport) -> str:
    s = report.summary
    text = (f"{report.a.path} → {report.b.path}: {s['matched']} matched ({s['changed']} changed, {s['identical']} "
            f"identical, {s['not_compared']} not compared), {s['only_in_a']} only in A, {s['only_in_b']} only in B — "
            f"{s['ok']} ok, {s['warn']} warn, {s['fail']} fail")
    return text


def label(item: LayerPair | Unmatched) -> str:
    """How a report names an item: ``a → b`` (``a`` when both names agree), ``only in A: name``."""
    if isinstance(item, Unmatched):
        return f"only in {item.side.upper()}: {item.name}"
    return item.a if item.a == item.b else f"{item.a} → {item.b}"


def flagged_items(report: DiffReport) -> list[LayerPair | Unmatched]:
    """The items with findings: the matched layers worst first, then the unmatched ones, fail before warn."""
    pairs: list[LayerPair | Unmatched] = [p for p in report.worst_first() if p.findings]
    rest = sorted((u for u in report.unmatched if u.findings), key=lambda u: -STATUS_ORDER[u.status])
    return [*pairs, *rest]


def failing(report: DiffReport, item: LayerPair | Unmatched) -> bool:
    """Whether the item counts toward the exit code (its status at or above ``--fail-on``)."""
    return (report.fail_on != "never" and bool(item.findings)
            and STATUS_ORDER[item.status] >= STATUS_ORDER[report.fail_on])


@dataclass(frozen=True)
class DiffFinding:
    """A finding of a diff with its item and an identity that holds across runs."""

    item: LayerPair | Unmatched
    finding: Finding
    occurrence: int              # earlier findings of this item with the same code

    def fingerprint(self, report: DiffReport, root: str | os.PathLike[str] | None = None) -> str:
        """From B's path (relative to ``root``), the tensor names and the rule: never the measured figures
        in the message, the positions in the report or the node names (exporters renumber nodes)."""
        item = self.item
        names = (f"{item.side}:{item.name}", "") if isinstance(item, Unmatched) else (item.a, item.b)
        return digest(relative_path(report.b.path, root), "diff", *names, self.finding.code, str(self.occurrence))


def diff_findings(report: DiffReport) -> Iterator[DiffFinding]:
    """Every finding, in report order (matched layers, then unmatched ones)."""
    for item in report.items:
        seen: dict[str, int] = {}
        for f in item.findings:
            occurrence = seen.get(f.code, 0)
            seen[f.code] = occurrence + 1
            yield DiffFinding(item, f, occurrence)
