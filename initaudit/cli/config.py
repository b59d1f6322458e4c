"""Defaults from ``[tool.initaudit]`` in the nearest pyproject.toml (or ``--config FILE``)."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from initaudit.errors import InitauditError
from initaudit.pipeline.layer_rules import parse_rules
from initaudit.pipeline.paths import check_patterns
from initaudit.pipeline.per_file import parse_per_file_ignores

KEYS = {"target", "convention", "profile", "pool_aware", "fail_on", "select", "ignore", "format", "fp16", "jobs",
        "drift_limit", "layers", "exclude", "extend_exclude", "per_file_ignores"}


def find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def config_file(explicit: str | None, start: Path | None = None) -> Path | None:
    """The file the config comes from (None: no config): its folder is the project root that relative
    ``exclude`` and ``per-file-ignores`` patterns are anchored to, as in ruff."""
    if explicit == os.devnull:
        return None
    return Path(explicit) if explicit else find_pyproject((start or Path.cwd()).resolve())


def load_config(explicit: str | None, start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.initaudit]`` table, keys normalised to option names (``fail-on`` → ``fail_on``)."""
    path = config_file(explicit, start)
    if path is None:
        return {}
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise InitauditError(f"{path}: config is not a regular file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InitauditError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InitauditError(f"{path}: cannot read config ({exc})") from None
    if explicit and "tool" not in data:
        table = data  # a file holding the options at top level
    else:
        table = data.get("tool", {}).get("initaudit", {})
    config = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = set(config) - KEYS
    if unknown:
        raise InitauditError(f"{path}: unknown [tool.initaudit] key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(KEYS))}")
    for key in ("select", "ignore"):
        if isinstance(config.get(key), str):
            config[key] = [config[key]]
    if "layers" in config:
        config["layers"] = parse_rules(config["layers"], str(path))
    for key in ("exclude", "extend_exclude"):
        if key in config:
            try:
                config[key] = list(check_patterns(config[key], key.replace("_", "-")))
            except InitauditError as exc:
                raise InitauditError(f"{path}: {exc}") from None
    if "per_file_ignores" in config:
        config["per_file_ignores"] = parse_per_file_ignores(config["per_file_ignores"], str(path))
    return config
