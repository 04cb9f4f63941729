"""Resources: the warehouse (DuckDB file) and the contract's plan and delivery folders.

Both read environment variables so the same code runs on a laptop, in CI and in
production: UTFALL_WAREHOUSE, UTFALL_PLAN, UTFALL_DELIVERIES, UTFALL_REPORTS.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from utfall.cli import DELIVERIES_ROOT, EXAMPLE_PLAN, REPORTS_ROOT
from utfall.plan import Plan, load_plan
from utfall.warehouse import default_path

PLAN_ENV = "UTFALL_PLAN"


def plan_path() -> Path:
    return Path(os.environ.get(PLAN_ENV) or EXAMPLE_PLAN)


class ContractResource(ConfigurableResource):
    """Where the contract's plan, deliveries and reports are."""

    plan_path: str
    deliveries_dir: str = ""
    reports_dir: str = ""

    def plan(self) -> Plan:
        return load_plan(self.plan_path)

    def deliveries(self, plan: Plan) -> Path:
        return Path(self.deliveries_dir or DELIVERIES_ROOT / plan.contract_id)

    def reports(self, plan: Plan) -> Path:
        return Path(self.reports_dir or REPORTS_ROOT / plan.contract_id)


def default_resources() -> dict:
    return {
        "duckdb": DuckDBResource(database=str(default_path())),
        "contract": ContractResource(
            plan_path=str(plan_path()),
            deliveries_dir=os.environ.get("UTFALL_DELIVERIES", ""),
            reports_dir=os.environ.get("UTFALL_REPORTS", ""),
        ),
    }
