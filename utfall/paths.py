"""Where utfall finds plans, deliveries, reports and the warehouse: never the install location.

Everything a user makes lives under one home folder: `$UTFALL_HOME`, else the working
directory. Defaults below it: `data/plans/`, `data/deliveries/<contract>/`,
`data/reports/<contract>/`, `data/warehouse.duckdb`; each can be overridden by its own
environment variable (or a command-line option). The example plans ship inside the
package (`utfall/example_plans/`, in the repository a link to `data/plans/`), so `utfall
demo` works from an empty folder after `pip install`.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "UTFALL_HOME"
WAREHOUSE_ENV = "UTFALL_WAREHOUSE"
PLANS_ENV = "UTFALL_PLANS"
DELIVERIES_ENV = "UTFALL_DELIVERIES"
REPORTS_ENV = "UTFALL_REPORTS"

#: The example plans shipped as package data.
EXAMPLE_PLANS = Path(__file__).parent / "example_plans"
EXAMPLE_PLAN = EXAMPLE_PLANS / "botkyrka_sick_leave.yaml"


def home() -> Path:
    """$UTFALL_HOME, else the working directory (a relative path, resolved when used)."""
    return Path(os.environ.get(HOME_ENV) or ".")


def _data(env: str, *parts: str) -> Path:
    return Path(os.environ.get(env) or home().joinpath("data", *parts))


def warehouse() -> Path:
    return _data(WAREHOUSE_ENV, "warehouse.duckdb")


def deliveries_root() -> Path:
    return _data(DELIVERIES_ENV, "deliveries")


def reports_root() -> Path:
    return _data(REPORTS_ENV, "reports")


def plans_dir() -> Path:
    """$UTFALL_PLANS, else `<home>/data/plans` when it exists, else the example plans."""
    if os.environ.get(PLANS_ENV):
        return Path(os.environ[PLANS_ENV])
    own = home() / "data" / "plans"
    return own if own.is_dir() else EXAMPLE_PLANS
