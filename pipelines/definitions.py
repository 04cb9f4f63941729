"""The Definitions `dagster dev -w workspace.yaml` loads: every plan's assets and job.

One asset graph per measurement plan in the plans folder (or $UTFALL_PLAN alone), keys
prefixed by the contract id: raw and staging per delivery source, data quality, then
panel, effects, payment, report. Each contract has its job `measure_<contract id>`; one
job run is one utfall run, published by its report asset. DuckDB allows one writer, so
everything runs in the in-process executor.
"""

from __future__ import annotations

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
)

from assets.ingest import raw_asset
from assets.outcomes import measure_assets
from assets.reports import report_asset
from assets.validate import quality_asset, quality_checks, staging_asset, staging_checks
from pipelines.resources import default_resources, plan_paths, resource_key
from utfall.pipeline import validation_order
from utfall.plan import Plan, load_plan


def build_assets(plan: Plan) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    """One contract's assets and their checks, in dependency order."""
    resource = resource_key(plan)
    sources = [plan.source(name) for name in validation_order(plan)]
    assets = [raw_asset(plan, s, resource) for s in sources]
    assets += [staging_asset(plan, s, resource) for s in sources]
    assets += [quality_asset(plan, resource), *measure_assets(plan, resource)]
    assets.append(report_asset(plan, resource))
    checks = [c for s in sources for c in staging_checks(plan, s, resource)]
    checks += quality_checks(plan)
    return assets, checks


def job_name(plan: Plan) -> str:
    return "measure_" + plan.contract_id.replace("-", "_")


def build_definitions() -> Definitions:
    plans = [load_plan(p) for p in plan_paths()]
    seen: dict[str, str] = {}
    for p in plans:
        if p.contract_id in seen:
            raise ValueError(
                f"{p.path} and {seen[p.contract_id]} both define contract {p.contract_id!r}"
            )
        seen[p.contract_id] = str(p.path)
    all_assets, all_checks, jobs = [], [], []
    for plan in plans:
        assets, checks = build_assets(plan)
        all_assets += assets
        all_checks += checks
        jobs.append(
            define_asset_job(
                job_name(plan),
                selection=AssetSelection.assets(*assets),
                description=f"Measure {plan.contract_id}: ingest, validate, data quality, "
                "outcomes, effects, payment, report; publishes the run when complete.",
                tags={"utfall/contract": plan.contract_id},
            )
        )
    return Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=jobs,
        resources=default_resources(plans),
        executor=in_process_executor,
    )


defs = build_definitions()
