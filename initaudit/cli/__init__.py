"""The command line: argv to exit code (must not import numpy before ``entry`` has set BLAS to one thread)."""
