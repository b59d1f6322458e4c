"""The report of ``initaudit diff``: two models, their matched layers with what changed, and the layers
found on one side only.  Every format's ``render_diff`` reads this, as ``render`` reads ``Report``."""
from __future__ import annotations

from dataclasses import dataclass

from initaudit.findings import STATUS_ORDER, Finding, worst_status
from initaudit.measure.compare import Change


@dataclass(frozen=True)
class DiffSide:
    """One of the two models."""

    path: str
    producer: str
    opset: int
    weights: int                 # weights found in it


@dataclass(frozen=True)
class LayerPair:
    """A weight of A and its counterpart in B."""

    a: str                       # tensor names
    b: str
    op_a: str                    # consuming ops ("Conv", "ConvInteger", "MatMulNBits"…)
    op_b: str
    node_a: str
    node_b: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str                 # as stored ("float", "int8", "uint4"…)
    dtype_b: str
    matched_by: str              # name | position | values
    change: Change | None        # None: not compared (IA606 says why)
    findings: tuple[Finding, ...] = ()
    bits_a: int | None = None    # significant bits of each side's storage (None: float32 or wider)
    bits_b: int | None = None
    folded: str = ""             # "a" | "b": the side whose BatchNorm was applied (IA607)

    @property
    def status(self) -> str:
        return worst_status(self.findings)


@dataclass(frozen=True)
class Unmatched:
    """A weight found in one model only."""

    side: str                    # "a" | "b"
    name: str
    op: str
    node: str
    shape: tuple[int, ...]
    dtype: str
    findings: tuple[Finding, ...] = ()

    @property
    def status(self) -> str:
        return worst_status(self.findings)


@dataclass(frozen=True)
class DiffReport:
    a: DiffSide
    b: DiffSide
    layers: tuple[LayerPair, ...]
    unmatched: tuple[Unmatched, ...] = ()
    fail_on: str = "fail"
    options: dict[str, object] | None = None

    @property
    def items(self) -> tuple[LayerPair | Unmatched, ...]:
        """The matched layers, then the unmatched ones."""
        return (*self.layers, *self.unmatched)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for item in self.items for f in item.findings)

    @property
    def status(self) -> str:
        return worst_status(self.findings)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"matched": len(self.layers), "identical": 0, "changed": 0, "not_compared": 0,
                  "only_in_a": sum(u.side == "a" for u in self.unmatched),
                  "only_in_b": sum(u.side == "b" for u in self.unmatched), "ok": 0, "warn": 0, "fail": 0}
        for pair in self.layers:
            kind = "not_compared" if pair.change is None else "identical" if pair.change.identical else "changed"
            counts[kind] += 1
        for item in self.items:
            counts[item.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """0: nothing at or above ``fail_on``; 1: something is."""
        if self.fail_on == "never":
            return 0
        return int(STATUS_ORDER[self.status] >= STATUS_ORDER[self.fail_on])

    def worst_first(self) -> list[LayerPair]:
        """The matched layers, worst first: by status, then by lowest SQNR (of the worst unit), then by
        largest relative change; identical and uncompared ones last within their status."""
        def key(pair: LayerPair) -> tuple[int, float, float]:
            change = pair.change
            if change is None or change.identical:
                return (-STATUS_ORDER[pair.status], float("inf"), 0.0)
            figures = [v for v in (change.sqnr_db, change.worst_unit_sqnr_db) if v is not None]
            return (-STATUS_ORDER[pair.status], min(figures, default=float("inf")), -(change.rel_change or 0.0))
        return sorted(self.layers, key=key)
