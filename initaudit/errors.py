"""The one exception type a user ever sees: it becomes a one-line message and exit code 2."""
from __future__ import annotations


class InitauditError(Exception):
    """A problem with the input (file, option, model) rather than a bug in initaudit."""
