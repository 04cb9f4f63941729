"""Errors a user caused (a plan, a delivery, a key, a warehouse file) versus bugs.

Everything a user can fix derives from `UserError`: the CLI prints its one-line message
and exits 2 (the traceback only with `--debug`). Messages never echo delivered row
content, which may hold identity numbers: they name the file, line, column and rule.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave that cannot be used; the message says what and where."""


class KeyProblem(UserError):
    """The pseudonymisation key is missing, too short or unreadable."""


class WarehouseError(UserError):
    """The warehouse file cannot be used (damaged, locked, another layout, wrong run)."""


class MeasurementError(UserError, ValueError):
    """The data cannot support the plan's measurement (too few units, a zero baseline)."""


class QualityBlocked(UserError):
    """A blocking data-quality expectation (completeness, control file) failed."""
