"""Which files the paths of a run mean, and which findings a file's own config drops.

A folder means every ``*.onnx`` below it, less what ``exclude`` names. The rules are ruff's:
``exclude`` replaces the default list, ``extend-exclude`` adds to it; a pattern without a slash
matches a file or folder name at any depth (``.venv``, ``*_old.onnx``), a pattern with a slash
matches the path relative to the project root (the folder of the config file, else the working
directory: ``models/legacy``, ``exports/*/tmp``); a pattern ending in ``/`` matches folders only
(``.*/``: every hidden folder). A file or folder named on the command line is never excluded, only
what a walk finds below it. ``pipeline.per_file`` matches the same patterns to drop rule codes per model.

A model's external data (``model.onnx.data``, ``model.onnx_data``) named on its own stands for its
model, so a pre-commit run on a commit that changed only the data audits the model it belongs to.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import Any

from initaudit.errors import InitauditError

#: ruff's defaults where they apply to model folders, and every hidden folder.
DEFAULT_EXCLUDE: tuple[str, ...] = (".git", ".venv", "venv", "node_modules", "__pycache__", ".*/")
#: How exporters name a model's single external-data file: ``torch.onnx`` ``model.onnx.data``, optimum
#: ``model.onnx_data``.
DATA_SUFFIXES: tuple[str, ...] = (".data", "_data")


def _clean(pattern: str) -> str:
    pattern = pattern.strip().replace("\\", "/")
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern


def check_patterns(raw: Any, what: str) -> tuple[str, ...]:
    """A pattern or a list of them, as config and command line give them (one-line error otherwise)."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise InitauditError(f"{what} must be a glob or a list of globs, e.g. [\"legacy/\", \"*_old.onnx\"]")
    patterns = tuple(_clean(p) for p in items)
    if any(p in ("", "/") for p in patterns):
        raise InitauditError(f"{what}: an empty pattern would match nothing")
    return patterns


def name_matches(pattern: str, name: str, relative: str | None, is_dir: bool) -> bool:
    """One pattern against one entry: its name (a pattern without a slash) or its path relative to the root."""
    folders_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    if folders_only and not is_dir:
        return False
    if "/" not in body:
        return fnmatchcase(name, body)
    if relative is None:
        return False
    return fnmatchcase(relative, body) or (body.startswith("**/") and fnmatchcase(relative, body[3:]))


def relative_to(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str | None:
    """``path`` relative to ``root`` (default: the working directory), or None when it is outside it."""
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root if root is not None else os.getcwd()))
    except ValueError:  # another drive (Windows)
        return None
    posix = PurePath(relative).as_posix()
    return None if posix == ".." or posix.startswith("../") or os.path.isabs(relative) else posix


@dataclass(frozen=True)
class Exclude:
    """The patterns a folder walk skips, and the folder relative patterns are anchored to."""

    patterns: tuple[str, ...] = DEFAULT_EXCLUDE
    root: str | None = None                # None: the working directory

    @staticmethod
    def of(exclude: Iterable[str] | None = None, extend: Iterable[str] = (),
           root: str | os.PathLike[str] | None = None) -> Exclude:
        base = DEFAULT_EXCLUDE if exclude is None else check_patterns(list(exclude), "exclude")
        return Exclude((*base, *check_patterns(list(extend), "extend-exclude")),
                       None if root is None else os.fspath(root))

    def skips(self, path: str, is_dir: bool) -> bool:
        name = os.path.basename(path)
        relative = relative_to(path, self.root)
        return any(name_matches(p, name, relative, is_dir) for p in self.patterns)


def walk(folder: Path, exclude: Exclude) -> tuple[list[Path], list[str]]:
    """Every ``*.onnx`` file below ``folder`` (sorted) and the entries the patterns skipped.

    Excluded folders are never entered (a ``.venv`` can hold hundreds of test models); symlinked
    folders are not followed, as ``Path.rglob`` does not follow them either."""
    found: list[Path] = []
    skipped: list[str] = []
    for top, dirs, names in os.walk(folder):
        kept = []
        for d in sorted(dirs):
            if exclude.skips(os.path.join(top, d), is_dir=True):
                skipped.append(PurePath(os.path.relpath(os.path.join(top, d), folder)).as_posix() + "/")
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            full = os.path.join(top, name)
            if not name.endswith(".onnx") or not os.path.isfile(full):
                continue
            if exclude.skips(full, is_dir=False):
                skipped.append(PurePath(os.path.relpath(full, folder)).as_posix())
            else:
                found.append(Path(full))
    return sorted(found), skipped


def model_of_data(path: Path) -> Path | None:
    """The model a lone external-data file belongs to (``x.onnx.data`` → ``x.onnx``), if it is there."""
    for suffix in DATA_SUFFIXES:
        if path.name.endswith(".onnx" + suffix):
            model = path.with_name(path.name[: -len(suffix)])
            return model if model.is_file() else None
    return None


def expand(paths: Iterable[str | os.PathLike[str]], exclude: Exclude | None = None) -> list[Path]:
    """The model files of a run, in order, each once: folders walked, external data mapped to its model."""
    exclude = exclude or Exclude()
    files: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            files.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, skipped = walk(path, exclude)
            if not found:
                note = ""
                if skipped:
                    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                    note = f" (excluded: {shown}; name it on the command line, or see `exclude`)"
                raise InitauditError(f"{path}: no *.onnx file in this folder{note}")
            for f in found:
                add(f)
        else:
            add(model_of_data(path) or path)
    if not files:
        raise InitauditError("no model given")
    return files
