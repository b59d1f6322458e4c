"""A progress line on stderr, only when stderr is a terminal (never in CI logs or pipes).

It appears once a run has taken ``delay`` seconds (about one), one model or many, and is redrawn
in place with the elapsed time, also while one large model is being read; it is erased at the end.
The clock is ``SIGALRM`` from an interval timer (where the platform has one): the redraw runs in the
main thread between two steps of the audit, so no thread is alive when the worker processes fork,
and the timer is not inherited by them.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TextIO

#: Seconds before the line appears, and between two redraws.
DELAY = 1.0
TICK = 0.25


def _size(path: str) -> str:
    try:
        size = float(os.stat(path).st_size)
    except OSError:
        return ""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f" ({size:.0f} {unit})" if unit == "bytes" else f" ({size:.1f} {unit})"
        size /= 1024
    return ""


class Progress:
    """``initaudit: 12/200 models, 3.4 s  models/encoder.onnx``, redrawn in place, erased at the end."""

    def __init__(self, stream: TextIO, min_interval: float = 0.1, delay: float | None = None,
                 clock: Callable[[], float] = time.monotonic, first: str | None = None) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self.delay = DELAY if delay is None else delay
        self.clock = clock
        self.started = clock()
        self.last = float("-inf")
        self.drawn = False
        self.done = self.total = 0
        self.path = ""
        self.first = first            # the one model of the run, when the command line names a single file
        self._timer = False
        self._previous: object = None

    @staticmethod
    def for_stream(stream: TextIO, models: list[str] | None = None) -> Progress | None:
        isatty = getattr(stream, "isatty", None)
        if isatty is None or not isatty():
            return None
        first = models[0] if models and len(models) == 1 and os.path.isfile(models[0]) else None
        progress = Progress(stream, first=first)
        progress.start_timer()
        return progress

    def line(self, width: int = 80) -> str:
        """The line, its path cut from the left (``…/encoder.onnx``) to fit ``width`` columns."""
        elapsed = f"{self.clock() - self.started:.1f} s"
        if self.total:
            head, path, tail = f"initaudit: {self.done}/{self.total} models, {elapsed}  ", self.path, ""
        elif self.first:
            head, path, tail = "initaudit: auditing ", self.first, f"{_size(self.first)}… {elapsed}"
        else:
            head, path, tail = "initaudit: auditing the models… ", "", elapsed
        room = width - 1 - len(head) - len(tail)
        if len(path) > room:
            path = "…" + path[len(path) - max(room - 1, 0):] if room > 1 else ""
        return (head + path + tail)[:max(width - 1, 10)]

    def draw(self, force: bool = False) -> None:
        now = self.clock()
        if now - self.started < self.delay or (not force and now - self.last < self.min_interval):
            return
        self.last = now
        width = shutil.get_terminal_size((80, 24)).columns
        try:
            self.stream.write("\r\033[K" + self.line(width))
            self.stream.flush()
        except (OSError, ValueError, RuntimeError):  # a closed terminal, or a write it interrupted
            return
        self.drawn = True

    def __call__(self, done: int, total: int, path: str) -> None:
        """After each model (``audit(progress=…)``)."""
        self.done, self.total, self.path = done, total, path
        self.draw(force=done == total)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        self.draw()

    def start_timer(self) -> None:
        """Redraw every ``TICK`` seconds from ``delay`` on (main thread, platforms with ``setitimer``)."""
        if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGALRM, self._tick)
        self._timer = True
        signal.setitimer(signal.ITIMER_REAL, max(self.delay, 0.01), TICK)

    def close(self) -> None:
        if self._timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)  # type: ignore[arg-type]
            self._timer = False
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False
