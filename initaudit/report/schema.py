"""The JSON Schema of the ``--format json`` report, shipped inside the package."""
from __future__ import annotations

import json
from importlib import resources
from typing import Any


def schema_text() -> str:
    return resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text())
    return data
