"""The suite does not depend on the folder it is started from."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_cli_tests_pass_from_a_folder_with_its_own_initaudit_config(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.initaudit]\nfail-on = "never"\nformat = "json"\ntarget = "he"\nignore = ["IA1"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "test_cli.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:]
