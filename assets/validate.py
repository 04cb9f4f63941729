"""Staging layer: validated rows per source, quarantine of the rest, and blocking checks."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
    asset,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.validate import failures, validate_source


def staging_asset(source: dict, roster: str) -> AssetsDefinition:
    name = source["name"]
    deps = [AssetKey(["raw", name])]
    if name != roster:
        deps.append(AssetKey(["staging", roster]))

    @asset(
        key=AssetKey(["staging", name]),
        deps=deps,
        group_name="validate",
        kinds={"duckdb", "pandera"},
        description=f"Validated, typed rows of '{name}'; failing rows go to quarantine.rows "
        "with the rule they broke.",
    )
    def _staging(
        context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
    ) -> None:
        plan = contract.plan()
        with duckdb.get_connection() as con:
            summary = validate_source(warehouse.prepare(con), plan, name)
        context.add_output_metadata(
            {
                "delivered": summary.delivered,
                "loaded": summary.loaded,
                "quarantined": summary.quarantined,
                "quarantined_by_rule": MetadataValue.json(summary.by_rule),
            }
        )

    return _staging


def staging_checks(source: dict) -> list[AssetChecksDefinition]:
    name = source["name"]
    key = AssetKey(["staging", name])

    @asset_check(
        asset=key,
        name="reconciles",
        blocking=True,
        description="Rows delivered = rows loaded + rows quarantined.",
    )
    def _reconciles(
        context: AssetCheckExecutionContext, duckdb: DuckDBResource
    ) -> AssetCheckResult:
        with duckdb.get_connection() as con:
            delivered = warehouse.scalar(con, f"SELECT count(*) FROM raw.{name}")
            loaded = warehouse.scalar(con, f"SELECT count(*) FROM staging.{name}")
            quarantined = warehouse.scalar(
                con, "SELECT count(*) FROM quarantine.rows WHERE source = ?", [name]
            )
        return AssetCheckResult(
            passed=delivered == loaded + quarantined,
            severity=AssetCheckSeverity.ERROR,
            metadata={"delivered": delivered, "loaded": loaded, "quarantined": quarantined},
        )

    @asset_check(
        asset=key,
        name="pandera_contract",
        blocking=True,
        description="The staged rows satisfy the source's Pandera set model.",
    )
    def _contract(
        context: AssetCheckExecutionContext, duckdb: DuckDBResource, contract: ContractResource
    ) -> AssetCheckResult:
        from schemas import MODELS

        plan = contract.plan()
        _, set_model = MODELS[plan.source(name)["kind"]]
        with duckdb.get_connection() as con:
            rows = warehouse.read_table(con, f"SELECT * FROM staging.{name} ORDER BY _file, _line")
        failed = failures(set_model, rows)
        return AssetCheckResult(
            passed=failed.height == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"rows": rows.height, "failures": failed.height},
        )

    return [_reconciles, _contract]
