"""Baselines: record today's findings, then fail only on findings that are not in the record.

Findings are matched by fingerprint (``initaudit.fingerprint``), never by position:
first by model path + graph + tensor name + rule, then, for what is left, by model
path + the weights' content signature + rule, so a re-export that renumbers nodes or
renames tensors still matches.  Paths are taken relative to the baseline file's
folder, so the same file works from any working directory.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from initaudit.errors import InitauditError
from initaudit.report.fingerprint import located_findings
from initaudit.report.model import BaselineResult, Report
from initaudit.version import __version__

FORMAT = 1


def _root(path: str | os.PathLike[str]) -> str:
    return str(Path(os.path.abspath(path)).parent)


def baseline_entries(report: Report, root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    entries = []
    for item in located_findings(report):
        entries.append({
            "fingerprint": item.fingerprint(root), "content_fingerprint": item.content_fingerprint(root),
            "model": item.path(root), "graph": item.layer.graph if item.layer else "",
            "layer": item.layer.name if item.layer else "", "code": item.finding.code,
            "severity": item.finding.severity, "message": item.finding.message,
        })
    return entries


def write_baseline(report: Report, path: str | os.PathLike[str]) -> int:
    """Write every finding of ``report`` to ``path``; returns how many."""
    entries = baseline_entries(report, _root(path))
    data = {"initaudit_baseline": FORMAT, "initaudit": __version__, "findings": entries}
    try:
        Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InitauditError(f"{path}: cannot write the baseline ({exc.strerror})") from None
    return len(entries)


def read_baseline(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InitauditError(f"{path}: baseline file not found (write one with --write-baseline)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InitauditError(f"{path}: not a readable baseline ({exc})") from None
    if not isinstance(data, dict) or data.get("initaudit_baseline") != FORMAT or not isinstance(
            data.get("findings"), list) or not all(isinstance(e, dict) and "fingerprint" in e for e in data["findings"]):
        raise InitauditError(f"{path}: not an initaudit baseline (format {FORMAT})")
    entries: list[dict[str, Any]] = data["findings"]
    return entries


def compare(report: Report, entries: list[dict[str, Any]], path: str | os.PathLike[str]) -> BaselineResult:
    """Which findings of ``report`` the baseline already holds, and which of its entries are gone."""
    root = _root(path)
    unmatched: dict[str, dict[str, list[int]]] = {"fingerprint": defaultdict(list),
                                                  "content_fingerprint": defaultdict(list)}
    for index, entry in enumerate(entries):
        for key in unmatched:
            unmatched[key][str(entry.get(key))].append(index)
    used: set[int] = set()
    known: set[tuple[int, int, int]] = set()
    pending = list(located_findings(report))
    for key in ("fingerprint", "content_fingerprint"):  # by name first, then by content
        rest = []
        for item in pending:
            value = item.fingerprint(root) if key == "fingerprint" else item.content_fingerprint(root)
            candidates = [i for i in unmatched[key].get(value, []) if i not in used]
            if candidates:
                used.add(candidates[0])
                known.add(item.position)
            else:
                rest.append(item)
        pending = rest
    gone = tuple({k: str(v) for k, v in entries[i].items()} for i in range(len(entries)) if i not in used)
    return BaselineResult(str(path), frozenset(known), gone)


