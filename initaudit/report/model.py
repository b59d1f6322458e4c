"""The report: the one data model every reporter reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from initaudit.findings import SEVERITY_STATUS, STATUS_ORDER, Finding, worst_status
from initaudit.judge.suggest import Suggestion
from initaudit.measure.histogram import Histogram
from initaudit.measure.stats import TensorStats
from initaudit.trace.fans import Fans
from initaudit.trace.plan import Skipped

if TYPE_CHECKING:
    from initaudit.judge.policy import Policy
    from initaudit.judge.review import Review


@dataclass(frozen=True)
class Consumer:
    node: str
    op: str
    graph: str
    slot: int
    layout: str
    fans: Fans | None


@dataclass(frozen=True)
class PartReport:
    name: str
    stats: TensorStats
    ratio: float | None
    status: str


@dataclass(frozen=True)
class LayerReport:
    name: str
    graph: str
    node: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    storage: str                       # inline | external | constant
    layout: str
    groups: int
    fans: dict[str, Fans] | None       # every convention
    fan_in: int | None                 # under the convention in use
    fan_out: int | None
    stats: TensorStats
    target: str | None
    target_var: float | None
    ratio: float | None
    status: str
    matches: tuple[str, ...]
    distribution: str
    findings: tuple[Finding, ...]
    consumers: tuple[Consumer, ...] = ()
    parts: tuple[PartReport, ...] = ()
    suggestion: Suggestion | None = None
    target_reason: str | None = None
    gain: float = 1.0
    pool_area: int = 1
    scale: float = 1.0                 # the consumer multiplies the weight by this (Gemm alpha)
    input_scale: float = 1.0           # a stored scalar the consumer's data input was multiplied by
    forward_gain: float | None = None  # estimated output/input activation variance of this layer
    review: Review | None = None       # trained-model review evidence (--profile trained)
    histogram: Histogram | None = None  # values of a flagged layer, only when a report that draws them asks


@dataclass(frozen=True)
class FileDigest:
    """A file a model was read from (the model, or an external data file next to it): what a sign-off names."""

    path: str          # the model's path as given, or an external data file's location inside its folder
    role: str          # "model" | "external data"
    size: int          # bytes
    sha256: str


@dataclass(frozen=True)
class Provenance:
    """How a report was made: the tool, the effective options and config file, the command, when (UTC)."""

    initaudit: str
    command: str                             # the command line, shell-quoted ("" from the library)
    time_utc: str                            # ISO 8601, to the second
    options: dict[str, object]               # the audit's effective options (config and flags applied)
    config: str | None = None                # the config file whose table was read
    versions: dict[str, str] = field(default_factory=dict)  # python, numpy, onnx


@dataclass(frozen=True)
class ModelReport:
    path: str
    opset: int
    producer: str
    ir_version: int
    target: str
    convention: str
    profile: str
    layers: tuple[LayerReport, ...]
    skipped: tuple[Skipped, ...] = ()
    findings: tuple[Finding, ...] = ()       # model-level findings
    signal_gain: float | None = None         # estimated output/input activation variance
    policy: Policy | None = None             # the init most layers share (None: no dominant one)
    rules_matched: tuple[int, ...] = ()      # indices of the config's layer rules that matched a layer here
    profile_reason: str | None = None        # why this profile (--profile auto), or a hint for an init run
    error: str | None = None                 # why the model could not be read (then no layers)
    files: tuple[FileDigest, ...] = ()       # the model file and its external data (report.provenance)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        statuses = [layer.status for layer in self.layers] + [worst_status(self.findings)]
        return max(statuses, key=STATUS_ORDER.__getitem__, default="ok")

    @property
    def summary(self) -> dict[str, int]:
        counts = {"layers": len(self.layers), "ok": 0, "warn": 0, "fail": 0}
        for layer in self.layers:
            counts[layer.status] += 1
        counts["skipped"] = len(self.skipped)
        return counts


@dataclass(frozen=True)
class Report:
    models: tuple[ModelReport, ...]
    fail_on: str = "fail"
    options: dict[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()           # about the run itself (a layer rule that matched nothing)
    baseline: BaselineResult | None = None
    provenance: Provenance | None = None     # report.provenance.with_provenance (the command line adds it)

    @property
    def unreadable(self) -> tuple[ModelReport, ...]:
        return tuple(m for m in self.models if m.error is not None)

    def counts(self, model: int, layer: int, finding: int) -> bool:
        """Whether a finding (by position: layer -1 for a model-level one) can fail the run: not in the baseline."""
        return self.baseline is None or (model, layer, finding) not in self.baseline.known

    def failing(self, model: int, layer: int) -> bool:
        """Whether a layer (or, with layer -1, the model's own findings) fails the run under ``fail_on``."""
        if self.fail_on == "never":
            return False
        threshold = STATUS_ORDER[self.fail_on]
        m = self.models[model]
        findings = m.findings if layer < 0 else m.layers[layer].findings
        status = worst_status(findings) if layer < 0 else m.layers[layer].status
        return STATUS_ORDER[status] >= threshold and (self.baseline is None or any(
            STATUS_ORDER[SEVERITY_STATUS[f.severity]] >= threshold and self.counts(model, layer, i)
            for i, f in enumerate(findings)))

    @property
    def exit_code(self) -> int:
        """0: nothing at or above ``fail_on``; 1: something is (not in the baseline); 2: a model was unreadable."""
        if self.unreadable:
            return 2
        return int(any(self.failing(i, j) for i, m in enumerate(self.models) for j in range(-1, len(m.layers))))


@dataclass(frozen=True)
class BaselineResult:
    """A run compared with a baseline file: which findings it already held, which of its entries are gone."""

    path: str
    known: frozenset[tuple[int, int, int]]          # (model, layer or -1, finding) positions found in the baseline
    gone: tuple[dict[str, str], ...] = ()           # baseline entries that no finding matches any more
