"""Resources: the warehouse (DuckDB file) and, per contract, its plan and folders.

Paths come from the environment or the working directory (see `utfall.paths`), never from
where utfall is installed: UTFALL_HOME (default: the working directory), UTFALL_WAREHOUSE,
UTFALL_PLAN (one plan) or UTFALL_PLANS (a folder of plans; default data/plans, else the
example plans shipped in the package), UTFALL_DELIVERIES and UTFALL_REPORTS (roots holding
one folder per contract id), UTFALL_LOCK_TIMEOUT (seconds a run waits for the warehouse).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from utfall import paths, warehouse
from utfall.errors import UserError
from utfall.plan import Plan, load_plan

PLAN_ENV = "UTFALL_PLAN"
PLANS_ENV = paths.PLANS_ENV


def plan_paths() -> list[Path]:
    """The plans Dagster builds assets for: $UTFALL_PLAN alone, else every *.yaml in
    $UTFALL_PLANS (default: data/plans under $UTFALL_HOME or the working directory, else the
    example plans)."""
    if os.environ.get(PLAN_ENV):
        return [Path(os.environ[PLAN_ENV])]
    folder = paths.plans_dir()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such plans folder (${PLANS_ENV} or data/plans)")
    found = sorted(p for p in folder.glob("*.y*ml") if p.is_file())
    if not found:
        raise UserError(f"{folder}: no measurement plan (*.yaml) in the plans folder")
    return found


def resource_key(plan: Plan) -> str:
    """The resource key of a contract (Dagster names allow letters, digits, underscore)."""
    return "contract_" + plan.contract_id.replace("-", "_")


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse, opened by utfall: layout created or checked, and while another
    process holds the file's lock the run waits up to `lock_timeout` seconds, logging each
    wait, then fails with an error naming the file (DuckDB admits one writing process).

    In a run, the connection is opened by the first asset that needs it and kept until the
    run ends, like `utfall run`'s: one writer from the first step to the last, and no
    reopening per asset and check (each open and close cost ~35 ms, ~30 times a run)."""

    database: str
    lock_timeout: float = warehouse.DEFAULT_LOCK_TIMEOUT
    _log: object = PrivateAttr(default=None)
    _in_run: bool = PrivateAttr(default=False)
    _con: object = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._log = context.log
        self._in_run = True

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()  # type: ignore[attr-defined]

    def _connect(self) -> duckdb.DuckDBPyConnection:
        say = self._log.warning if self._log is not None else None  # type: ignore[attr-defined]
        return warehouse.connect(self.database, timeout=self.lock_timeout, on_wait=say)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self._in_run:  # used outside a run (a script, a test): open and close
            con = self._connect()
            try:
                yield con
            finally:
                con.close()
            return
        if self._con is None:
            self._con = self._connect()
        yield self._con  # type: ignore[misc]

    def read_only(self, timeout: float = 0.0) -> duckdb.DuckDBPyConnection:
        """A reader's connection (sensors): never waits unless told to."""
        return warehouse.connect(self.database, read_only=True, timeout=timeout)


class ContractResource(ConfigurableResource):
    """Where one contract's plan, deliveries and reports are."""

    plan_path: str
    deliveries_dir: str = ""
    reports_dir: str = ""

    def plan(self) -> Plan:
        return load_plan(self.plan_path)

    def deliveries(self, plan: Plan) -> Path:
        return Path(self.deliveries_dir or paths.deliveries_root() / plan.contract_id)

    def reports(self, plan: Plan) -> Path:
        return Path(self.reports_dir or paths.reports_root() / plan.contract_id)


def default_resources(plans: list[Plan]) -> dict:
    resources: dict = {
        "duckdb": WarehouseResource(
            database=str(warehouse.default_path()), lock_timeout=warehouse.lock_timeout()
        )
    }
    for plan in plans:
        resources[resource_key(plan)] = ContractResource(plan_path=str(plan.path))
    return resources
