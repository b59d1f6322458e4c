"""What every format says of a diff the same way: the figures of a pair as text, the summary line."""
from __future__ import annotations

from initaudit.report.comparison import DiffReport, LayerPair

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
