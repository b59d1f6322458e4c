"""Golden files: the reviewed output of a fixed input, with volatile fields scrubbed by the caller.

``INITAUDIT_REGEN_GOLDEN=1 pytest`` rewrites them; review the diff before committing.
"""
from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = FOLDER / name
    if os.environ.get("INITAUDIT_REGEN_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with INITAUDIT_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs (INITAUDIT_REGEN_GOLDEN=1 after review)"
