"""The command's entry point: one BLAS thread before numpy is loaded, then the CLI.

Every BLAS call of an audit runs under a one-thread limit, but OpenBLAS starts its
thread pool when it is loaded (and again in each forked worker), and those idle threads
spin on the cores the workers need: 0.1 s of CPU at start-up, and 0.25 s more over two
workers on four 256 MiB models (measured).  A value the user set is kept.
"""
from __future__ import annotations

import os

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def main() -> int:
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    from initaudit.cli.main import main as cli_main

    return cli_main()
