"""The progress line: on a terminal only, from about a second into a run (one model or many, redrawn while a
large model is read), erased at the end, nothing in pipes or CI logs."""
from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from signoffkit import signoff_model
from terminal import read_terminal

from initaudit.cli.progress import Progress

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_on_a_terminal():
    assert Progress.for_stream(io.StringIO()) is None
    progress = Progress.for_stream(Terminal())
    assert progress is not None
    progress.close()


def test_nothing_before_a_second_then_models_and_time():
    terminal, clock = Terminal(), Clock()
    progress = Progress(terminal, min_interval=0, clock=clock)
    clock.now += 0.9
    progress(1, 3, "a.onnx")
    assert terminal.getvalue() == ""          # a run shorter than a second draws nothing
    clock.now += 0.2
    progress(2, 3, "b.onnx")
    clock.now += 1.0
    progress(3, 3, "c.onnx")
    progress.close()
    text = terminal.getvalue()
    assert text == ("\r\033[Kinitaudit: 2/3 models, 1.1 s  b.onnx" "\r\033[Kinitaudit: 3/3 models, 2.1 s  c.onnx"
                    "\r\033[K")               # erased: the report that follows starts clean


def test_one_model_shows_its_name_size_and_time_while_it_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = Path("models") / "big.onnx"
    model.parent.mkdir()
    model.write_bytes(b"\0" * (3 * 1024 * 1024 + 512 * 1024))
    terminal, clock = Terminal(), Clock()
    progress = Progress(terminal, clock=clock, first=str(model))
    clock.now += 2.5
    progress._tick(0, None)                   # the timer's redraw: no model has finished yet
    progress.close()
    assert terminal.getvalue() == f"\r\033[Kinitaudit: auditing {model} (3.5 MiB)… 2.5 s\r\033[K"
    assert progress.line(48) == "initaudit: auditing …/big.onnx (3.5 MiB)… 2.5 s"  # 47 columns: 10 for the path


def test_a_long_path_is_cut_from_the_left_to_fit():
    progress = Progress(Terminal(), clock=Clock())
    progress(2, 9, "models/" + "x" * 100 + "/encoder.onnx")
    assert progress.line(50) == "initaudit: 2/9 models, 0.0 s  …xxxxx/encoder.onnx"


def _through_a_terminal(args: list[str], delay: float, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, bytes]:
    """The command line with stderr a pseudo-terminal (stdout a pipe), the line's delay set to ``delay``."""
    code = ("import sys, initaudit.cli.progress as p; p.DELAY = float(sys.argv[1]); "
            "from initaudit.cli.main import main; sys.exit(main(sys.argv[2:]))")
    main_fd, child_fd = pty.openpty()
    out = tempfile.TemporaryFile()
    child = subprocess.Popen([sys.executable, "-c", code, str(delay), *args], stdout=out, stderr=child_fd, cwd=cwd)
    os.close(child_fd)
    seen = read_terminal(main_fd)
    code_ = child.wait(timeout=120)
    out.seek(0)
    return subprocess.CompletedProcess(child.args, code_, out.read().decode()), seen


def test_cli_progress_goes_to_a_terminal_stderr_only(tmp_path):
    args = [sys.executable, "-m", "initaudit", str(SAMPLES), "-j", "1"]
    piped = subprocess.run(args, capture_output=True, text=True)
    assert piped.stderr == "" and "models" not in piped.stderr
    done, seen = _through_a_terminal([str(SAMPLES), "-j", "1"], delay=0)
    assert done.returncode == 1 and "initaudit:" not in done.stdout
    assert f"/{len(list(SAMPLES.glob('*.onnx')))} models, ".encode() in seen and seen.endswith(b"\r\033[K")


def test_cli_progress_within_one_model(tmp_path):
    """One model of 200 layers (the trained review: about 0.09 s on an idle machine, 60 layers took under
    the 0.05 s this test once waited): the timer redraws the line while it is audited, with the model's
    name and size, before any model has finished."""
    path = signoff_model(tmp_path, 200)
    done, seen = _through_a_terminal([path.name, "--profile", "trained", "-j", "1"], delay=0.01, cwd=tmp_path)
    assert done.returncode == 1
    text = seen.decode()
    lines = re.findall(r"initaudit: auditing (\S+) \((\d+\.\d MiB)\)… (\d+\.\d) s", text)
    assert lines and all(name.endswith(path.name) for name, _, _ in lines)
    assert lines[0][1] == f"{path.stat().st_size / 2 ** 20:.1f} MiB"
    assert text.endswith("\r\033[K") and "1/1 models" not in text.split("\r\033[K")[-1]
