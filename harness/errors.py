"""Errors the harness reports to the user as a message, not a traceback."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and where."""
