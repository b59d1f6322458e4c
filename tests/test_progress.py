"""The progress line: on a terminal only, erased at the end, nothing in pipes or CI logs."""
from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from initaudit.cli.progress import Progress

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_only_on_a_terminal():
    assert Progress.for_stream(io.StringIO()) is None
    terminal = Terminal()
    progress = Progress.for_stream(terminal)
    assert progress is not None
    progress.min_interval = 0
    progress(1, 3, "a.onnx")
    progress(3, 3, "c.onnx")
    progress.close()
    text = terminal.getvalue()
    assert "initaudit: 1/3 models  a.onnx" in text and "initaudit: 3/3 models  c.onnx" in text
    assert text.endswith("\r\033[K")  # the line is erased: the report that follows starts clean


def test_single_model_draws_nothing():
    terminal = Terminal()
    progress = Progress(terminal)
    progress(1, 1, "a.onnx")
    progress.close()
    assert terminal.getvalue() == ""


def test_cli_progress_goes_to_a_terminal_stderr_only():
    args = [sys.executable, "-m", "initaudit", str(SAMPLES), "-j", "1"]
    piped = subprocess.run(args, capture_output=True, text=True)
    assert piped.stderr == "" and "models" not in piped.stderr
    main_fd, child_fd = pty.openpty()  # stderr a terminal, stdout a pipe
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=child_fd, text=True)
    os.close(child_fd)
    seen = b""
    try:
        while chunk := os.read(main_fd, 4096):
            seen += chunk
    except OSError:
        pass
    os.close(main_fd)
    assert done.returncode == 1 and "initaudit:" not in done.stdout
    assert f"/{len(list(SAMPLES.glob('*.onnx')))} models".encode() in seen and seen.endswith(b"\r\033[K")
