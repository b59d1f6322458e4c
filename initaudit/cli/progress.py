"""A progress line on stderr for batches, only when stderr is a terminal (never in CI logs or pipes)."""
from __future__ import annotations

import shutil
import time
from typing import TextIO


class Progress:
    """``initaudit: 12/200 models  models/encoder.onnx``, redrawn in place, erased at the end."""

    def __init__(self, stream: TextIO, min_interval: float = 0.1) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self.last = 0.0
        self.drawn = False

    @staticmethod
    def for_stream(stream: TextIO) -> Progress | None:
        isatty = getattr(stream, "isatty", None)
        return Progress(stream) if isatty is not None and isatty() else None

    def __call__(self, done: int, total: int, path: str) -> None:
        now = time.monotonic()
        if total < 2 or (done < total and now - self.last < self.min_interval):
            return
        self.last = now
        width = shutil.get_terminal_size((80, 24)).columns
        line = f"initaudit: {done}/{total} models  {path}"[:max(width - 1, 10)]
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False
