"""The one error base class: a problem the user can fix (a bad path, rules
file, database, output or tree). Every stage's own error derives from it; the
CLI catches it once and prints its message in one line (exit 2)."""

from __future__ import annotations


class UserError(Exception):
    """Its message names the file and what to do."""


class InputError(UserError):
    """A bad argument or input found by the CLI or the workspace."""
