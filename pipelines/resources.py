"""Resources: the warehouse (DuckDB file) and, per contract, its plan and folders.

They read environment variables so the same code runs on a laptop, in CI and in
production: UTFALL_WAREHOUSE, UTFALL_PLAN (one plan) or UTFALL_PLANS (a folder of plans,
default data/plans), UTFALL_DELIVERIES and UTFALL_REPORTS (roots holding one folder per
contract id).
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
PLANS_ENV = "UTFALL_PLANS"


def plan_paths() -> list[Path]:
    """The plans Dagster builds assets for: $UTFALL_PLAN alone, else every *.yaml in
    $UTFALL_PLANS (default: the example plans folder)."""
    if os.environ.get(PLAN_ENV):
        return [Path(os.environ[PLAN_ENV])]
    folder = Path(os.environ.get(PLANS_ENV) or EXAMPLE_PLAN.parent)
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def resource_key(plan: Plan) -> str:
    """The resource key of a contract (Dagster names allow letters, digits, underscore)."""
    return "contract_" + plan.contract_id.replace("-", "_")


class ContractResource(ConfigurableResource):
    """Where one contract's plan, deliveries and reports are."""

    plan_path: str
    deliveries_dir: str = ""
    reports_dir: str = ""

    def plan(self) -> Plan:
        return load_plan(self.plan_path)

    def deliveries(self, plan: Plan) -> Path:
        return Path(
            self.deliveries_dir or _root("UTFALL_DELIVERIES", DELIVERIES_ROOT) / plan.contract_id
        )

    def reports(self, plan: Plan) -> Path:
        return Path(self.reports_dir or _root("UTFALL_REPORTS", REPORTS_ROOT) / plan.contract_id)


def _root(env: str, default: Path) -> Path:
    return Path(os.environ.get(env) or default)


def default_resources(plans: list[Plan]) -> dict:
    resources: dict = {"duckdb": DuckDBResource(database=str(default_path()))}
    for plan in plans:
        resources[resource_key(plan)] = ContractResource(plan_path=str(plan.path))
    return resources
