"""The Definitions `dagster dev -w workspace.yaml` loads: the plan's assets as one job.

The asset graph follows the plan named by $UTFALL_PLAN (default: the example contract):
one raw and one staging asset per delivery source, then panel, effects, payment, report.
DuckDB allows one writer, so everything runs in the in-process executor.
"""

from __future__ import annotations

from dagster import (
    AssetChecksDefinition,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from assets.effects import effect_estimates
from assets.ingest import raw_asset
from assets.outcomes import outcome_panel_asset
from assets.payments import payment_proposal
from assets.reports import validator_report
from assets.validate import staging_asset, staging_checks
from pipelines.resources import default_resources, plan_path
from utfall.pipeline import validation_order
from utfall.plan import Plan, load_plan


def build_assets(plan: Plan) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    """The plan's assets and their checks, in dependency order."""
    roster = plan.data["cohort"]["roster_source"]
    sources = [plan.source(name) for name in validation_order(plan)]
    assets = [raw_asset(s) for s in sources]
    assets += [staging_asset(s, roster) for s in sources]
    assets += [
        outcome_panel_asset([AssetKey(["staging", s["name"]]) for s in sources]),
        effect_estimates,
        payment_proposal,
        validator_report,
    ]
    checks = [c for s in sources for c in staging_checks(s)]
    return assets, checks


def build_definitions() -> Definitions:
    plan = load_plan(plan_path())
    assets, checks = build_assets(plan)
    measure = define_asset_job(
        "measure_contract",
        selection=AssetSelection.all(),
        description=f"Measure {plan.contract_id}: ingest, validate, outcomes, effects, "
        "payment, report.",
    )
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[measure],
        resources=default_resources(),
        executor=in_process_executor,
    )


defs = build_definitions()
