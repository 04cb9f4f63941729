"""The Definitions `dagster dev -w workspace.yaml` (and `dg check defs`) load: per plan, the
contract's assets, checks, job, delivery sensor, schedule and CLI-run sensor, merged.

One asset graph per measurement plan in the plans folder (or $UTFALL_PLAN alone), keys
prefixed by the contract id and grouped by stage (ingest, validate, measure, pay, report):
raw and staging per delivery source, data quality, then panel, effects, payment, report,
and the outcomes per measurement quarter (partitioned). Each contract has its job
`measure_<contract id>` (runs tagged `utfall/contract`); one job run is one utfall run,
published by its report asset. DuckDB allows one writer, so everything runs in the
in-process executor, and a run waits (logging) for another's lock.
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

from utfall.assets.ingest import raw_asset
from utfall.assets.outcomes import measure_assets
from utfall.assets.periods import quarter_asset
from utfall.assets.reports import report_asset
from utfall.assets.validate import quality_asset, quality_checks, staging_asset, staging_checks
from utfall.pipeline import has_panel, validation_order
from utfall.pipelines.resources import default_resources, plan_paths, resource_key
from utfall.pipelines.sensors import cli_runs_sensor, delivery_sensor, measure_schedule
from utfall.plan import Plan, load_plan


def build_assets(plan: Plan) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    """One contract's measure-job assets and their checks, in dependency order."""
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


def contract_definitions(plan: Plan) -> Definitions:
    """Everything Dagster knows of one contract (resources excepted)."""
    assets, checks = build_assets(plan)
    job = define_asset_job(
        job_name(plan),
        selection=AssetSelection.assets(*assets),
        description=f"Measure {plan.contract_id}: ingest, validate, data quality, "
        "outcomes, effects, payment, report; publishes the run when complete.",
        tags={"utfall/contract": plan.contract_id},
    )
    keys = [k for a in assets for k in a.keys]
    extra_assets, extra_jobs = [], []
    if has_panel(plan):  # outcomes per quarter exist only where outcomes are per period
        quarters = quarter_asset(plan, resource_key(plan))
        extra_assets.append(quarters)
        extra_jobs.append(
            define_asset_job(
                "quarters_" + job.name.removeprefix("measure_"),
                selection=AssetSelection.assets(quarters),
                description=f"{plan.contract_id}'s published outcomes per measurement quarter, "
                "one partition (quarter) per run; backfill all quarters after a new publication.",
                tags={"utfall/contract": plan.contract_id},
            )
        )
    return Definitions(
        assets=[*assets, *extra_assets],
        asset_checks=checks,
        jobs=[job, *extra_jobs],
        sensors=[
            delivery_sensor(plan, job.name, resource_key(plan)),
            cli_runs_sensor(plan, job.name, keys),
        ],
        schedules=[measure_schedule(plan, job.name)],
    )


def build_definitions() -> Definitions:
    plans = [load_plan(p) for p in plan_paths()]
    seen: dict[str, str] = {}
    for p in plans:
        if p.contract_id in seen:
            raise ValueError(
                f"{p.path} and {seen[p.contract_id]} both define contract {p.contract_id!r}"
            )
        seen[p.contract_id] = str(p.path)
    return Definitions.merge(
        *(contract_definitions(plan) for plan in plans),
        Definitions(resources=default_resources(plans), executor=in_process_executor),
    )


defs = build_definitions()
