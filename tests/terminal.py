"""Reading what a child process wrote to a pseudo-terminal, for the tests of terminal output."""
from __future__ import annotations

import os


def read_terminal(main_fd: int) -> bytes:
    """Everything written to the terminal until the child closes it, then closes our side.

    Read while it writes: a terminal buffers a few KiB only."""
    seen = b""
    try:
        while chunk := os.read(main_fd, 4096):
            seen += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    os.close(main_fd)
    return seen
