"""Raw layer: one asset per delivery source of a contract; the first to run starts the run."""

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, asset

from utfall.assets.common import GROUPS, key, open_run
from utfall.assets.metadata import column_schema
from utfall.ingest import ingest_source
from utfall.pipeline import stage
from utfall.pipelines.calendar import calendar
from utfall.plan import Plan


def raw_asset(plan: Plan, source: dict, resource: str) -> AssetsDefinition:
    name = source["name"]

    @asset(
        key=key(plan, "raw", name),
        group_name=GROUPS["ingest"],
        kinds={"duckdb"},
        required_resource_keys={"duckdb", resource},
        freshness_policy=calendar(plan).freshness(),
        metadata={"dagster/column_schema": column_schema(source["kind"], typed=False)},
        description=f"Delivered rows of source '{name}' ({source['kind']}, {source['path']}) "
        "for this run, identity numbers replaced by a keyed hash; ledger in "
        "ledger.deliveries. Published (raw.<kind>) only when the whole run succeeds.",
    )
    def _raw(context: AssetExecutionContext) -> None:
        with open_run(context, resource, start=True) as (con, plan_, run, contract, key_bytes):
            ledger = stage(
                con,
                plan_,
                run,
                f"ingest {name}",
                lambda: ingest_source(con, plan_, run, name, contract.deliveries(plan_), key_bytes),
            )
        context.add_output_metadata(
            {
                "rows": sum(d.rows or 0 for d in ledger),
                "dagster/row_count": sum(d.rows or 0 for d in ledger),
                "files": MetadataValue.json([d.to_dict() for d in ledger]),
                "plan_hash": plan_.hash,
                "utfall_run_id": run.run_id,
            }
        )

    return _raw
