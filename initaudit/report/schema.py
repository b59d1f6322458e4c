"""The JSON Schema of the ``--format json`` report, shipped inside the package."""
from __future__ import annotations

import json
from importlib import resources
from typing import Any


def schema_text(name: str = "schema.json") -> str:
    """``schema.json`` (the audit's report) or ``diff-schema.json`` (``initaudit diff``'s)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def schema(name: str = "schema.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(name))
    return data
