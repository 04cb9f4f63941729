"""Marts: effect estimates against the plan's counterfactual."""

from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.pipeline import estimate_effects


@asset(
    key=AssetKey(["marts", "effects"]),
    deps=[AssetKey(["marts", "outcome_panel"])],
    group_name="measure",
    kinds={"duckdb"},
    description="One effect estimate per outcome, with confidence interval and diagnostics.",
)
def effect_estimates(
    context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
) -> None:
    plan = contract.plan()
    with duckdb.get_connection() as con:
        results = estimate_effects(warehouse.prepare(con), plan)
    context.add_output_metadata(
        {
            r.outcome: MetadataValue.json(
                {
                    "estimate": r.estimate,
                    "ci": [r.ci_low, r.ci_high],
                    "relative": r.relative_estimate,
                }
            )
            for r in results
        }
    )
