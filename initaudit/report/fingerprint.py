"""Identities of findings that hold across runs, machines and re-exports of the same weights.

A finding is identified by the model's path relative to the working directory,
the graph, the stored tensor's name and the rule code, never by its position in
the report, by the consuming node's name (exporters renumber nodes) or by its
message (which carries measured floats).  A second, content identity replaces the
tensor name and graph by what only the same weights share: shape, dtype, count,
exact minimum and maximum, zeros and non-finite counts (all independent of the
order values are summed in), so a re-export that renames a tensor still matches.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath

from initaudit.findings import Finding
from initaudit.report.model import LayerReport, ModelReport, Report

VERSION = "v1"


def relative_path(path: str, root: str | os.PathLike[str] | None = None) -> str:
    """``path`` relative to ``root`` (default: the working directory), with forward slashes."""
    return _relative(os.path.abspath(path), os.path.abspath(root if root is not None else os.getcwd()))


@lru_cache(maxsize=4096)
def _relative(path: str, base: str) -> str:  # one model's findings ask for the same path thousands of times
    return PurePath(os.path.relpath(path, base)).as_posix()


def is_inside(relative: str) -> bool:
    return not (relative == ".." or relative.startswith("../") or PurePath(relative).is_absolute())


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join((VERSION, *parts)).encode("utf-8")).hexdigest()[:32]


def content_signature(layer: LayerReport) -> str:
    s = layer.stats
    return (f"{list(layer.shape)}|{layer.dtype}|{s.total}|{s.min!r}|{s.max!r}|{s.zeros}|{s.nonfinite}")


@dataclass(frozen=True)
class Located:
    """A finding with where it is in the report (positions, for this run only) and in the model."""

    model_index: int
    layer_index: int                  # -1: a model-level finding
    finding_index: int
    model: ModelReport
    layer: LayerReport | None
    finding: Finding
    occurrence: int                   # how many earlier findings of this layer share its code

    def path(self, root: str | os.PathLike[str] | None = None) -> str:
        return relative_path(self.model.path, root)

    def fingerprint(self, root: str | os.PathLike[str] | None = None) -> str:
        graph, tensor = (self.layer.graph, self.layer.name) if self.layer else ("", "")
        return digest(self.path(root), graph, tensor, self.finding.code, str(self.occurrence))

    def content_fingerprint(self, root: str | os.PathLike[str] | None = None) -> str:
        content = content_signature(self.layer) if self.layer else ""
        return digest(self.path(root), "content", content, self.finding.code, str(self.occurrence))

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.model_index, self.layer_index, self.finding_index)


def located_findings(report: Report) -> Iterator[Located]:
    """Every finding of the report, model-level ones first within each model."""
    for m, model in enumerate(report.models):
        owners: list[tuple[int, LayerReport | None, tuple[Finding, ...]]] = [(-1, None, model.findings)]
        owners += [(i, layer, layer.findings) for i, layer in enumerate(model.layers)]
        for index, layer, findings in owners:
            seen: dict[str, int] = {}
            for f, finding in enumerate(findings):
                occurrence = seen.get(finding.code, 0)
                seen[finding.code] = occurrence + 1
                yield Located(m, index, f, model, layer, finding, occurrence)


def unreadable_fingerprint(model: ModelReport, root: str | os.PathLike[str] | None = None) -> str:
    return digest(relative_path(model.path, root), "", "", "IA001", "0")


def file_uri(path: str) -> str:
    return Path(os.path.abspath(path)).as_uri()
