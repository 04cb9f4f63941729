"""Raw layer: one asset per delivery source of the plan."""

from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.ingest import ingest_source
from utfall.pipeline import key_for


def raw_asset(source: dict) -> AssetsDefinition:
    name = source["name"]

    @asset(
        key=AssetKey(["raw", name]),
        group_name="ingest",
        kinds={"duckdb"},
        description=f"Delivered rows of source '{name}' ({source['kind']}, {source['path']}), "
        "identity numbers replaced by a keyed hash; ledger in raw.deliveries.",
    )
    def _raw(
        context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
    ) -> None:
        plan = contract.plan()
        with duckdb.get_connection() as con:
            warehouse.prepare(con)
            ledger = ingest_source(
                con, plan, name, contract.deliveries(plan), key_for(Path(duckdb.database))
            )
        context.add_output_metadata(
            {
                "rows": sum(d.rows for d in ledger),
                "files": MetadataValue.json([d.to_dict() for d in ledger]),
                "plan_hash": plan.hash,
            }
        )

    return _raw
