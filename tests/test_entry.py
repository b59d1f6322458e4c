"""The command's entry point: BLAS held to one thread before numpy loads (a user's own value kept)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from initaudit.cli import entry


def test_entry_sets_one_blas_thread_unless_the_user_chose(monkeypatch, capsys):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")
    monkeypatch.setattr(sys, "argv", ["initaudit", "--version"])
    with pytest.raises(SystemExit) as done:
        entry.main()
    assert done.value.code == 0 and "initaudit" in capsys.readouterr().out
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "4"


def test_importing_the_package_does_not_load_numpy_until_a_name_is_used():
    code = ("import sys, initaudit; before = 'numpy' in sys.modules; f = initaudit.audit; "
            "print(before, 'numpy' in sys.modules, callable(f), f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True", "initaudit.pipeline.run"]
