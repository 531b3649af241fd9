"""Errors the harness reports to the user as a message, not a traceback; its environment variables."""
from __future__ import annotations

import os


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and where."""


def env(name: str, default: str | None = None) -> str | None:
    """Environment variable ``name``; an empty value counts as unset (``FERBENCH_RESULTS=""`` must not
    put the store in the current directory)."""
    return os.environ.get(name) or default
