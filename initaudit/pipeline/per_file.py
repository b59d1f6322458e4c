"""``per-file-ignores``: rule codes that the models a pattern matches do not report (ruff's convention).

The patterns are those of ``exclude`` (``pipeline.paths``): a name at any depth, or a path relative
to the project root; a pattern that names a folder covers every model below it. Applied after the
audit, as ``--ignore`` is, but per model.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from initaudit.codes import RULES
from initaudit.errors import InitauditError
from initaudit.pipeline.options import AuditOptions
from initaudit.pipeline.paths import check_patterns, name_matches, relative_to
from initaudit.pipeline.run import selected
from initaudit.report.model import ModelReport, Report


@dataclass(frozen=True)
class PerFileIgnore:
    pattern: str
    codes: tuple[str, ...]


def parse_per_file_ignores(raw: Any, where: str = "config") -> tuple[PerFileIgnore, ...]:
    """``{"models/legacy/*" = ["IA102"], "*_int8.onnx" = ["IA2"]}``: codes or prefixes per pattern."""
    if not isinstance(raw, Mapping):
        raise InitauditError(f"{where}: per-file-ignores must be a table of \"pattern\" = [\"CODE\", …]")
    rules = []
    for pattern, codes in raw.items():
        (clean,) = check_patterns(str(pattern), f"{where}: per-file-ignores")
        items = [codes] if isinstance(codes, str) else codes
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(c, str) for c in items):
            raise InitauditError(f"{where}: per-file-ignores {pattern!r}: expected a list of rule codes")
        upper = tuple(c.strip().upper() for c in items)
        for code in upper:
            if not code or not any(known.startswith(code) for known in RULES):
                raise InitauditError(f"{where}: per-file-ignores {pattern!r}: unknown rule code {code!r}; "
                                     "`initaudit rules` lists them")
        rules.append(PerFileIgnore(clean, upper))
    return tuple(rules)


def ignored_codes(path: str, rules: Iterable[PerFileIgnore], root: str | os.PathLike[str] | None = None
                  ) -> tuple[str, ...]:
    """The codes the per-file rules drop for one model: a pattern matches the file, or a folder it is in."""
    relative = relative_to(path, root)
    parts = PurePath(relative).parts if relative is not None else (PurePath(os.path.abspath(path)).name,)
    codes: list[str] = []
    for rule in rules:
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts)
            prefix = "/".join(parts[:depth]) if relative is not None else None
            if name_matches(rule.pattern, parts[depth - 1], prefix, is_dir):
                codes.extend(c for c in rule.codes if c not in codes)
                break
    return tuple(codes)


def apply_per_file_ignores(report: Report, rules: Iterable[PerFileIgnore],
                           root: str | os.PathLike[str] | None = None) -> Report:
    """The report with each model's per-file codes dropped, layer statuses following what is kept;
    an unreadable model (IA001) is kept whatever the patterns say."""
    rules = tuple(rules)
    if not rules:
        return report
    models: list[ModelReport] = []
    for model in report.models:
        codes = ignored_codes(model.path, rules, root) if model.error is None else ()
        models.append(selected(model, AuditOptions(ignore=codes)) if codes else model)
    return replace(report, models=tuple(models))
