"""Marts: the unit x quarter outcome panel."""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, asset
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.metrics import build_outcome_panel


def outcome_panel_asset(staging_keys: list[AssetKey]) -> AssetsDefinition:
    @asset(
        key=AssetKey(["marts", "outcome_panel"]),
        deps=staging_keys,
        group_name="measure",
        kinds={"duckdb"},
        description="Each outcome per cohort unit and quarter: numerator, denominator, value.",
    )
    def _panel(
        context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
    ) -> None:
        plan = contract.plan()
        with duckdb.get_connection() as con:
            panel = build_outcome_panel(warehouse.prepare(con), plan)
        context.add_output_metadata({"rows": panel.height, "units": panel["unit_id"].n_unique()})

    return _panel
