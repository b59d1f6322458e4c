import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """Run each test from an empty folder: a [tool.initaudit] table in the pyproject.toml of the folder the
    suite is started from must not change what the CLI tests see (tests of config discovery chdir themselves)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
