"""Marts: the payment proposed under the plan's terms (due only after approval)."""

from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.pipeline import propose_payment


@asset(
    key=AssetKey(["marts", "payments_proposed"]),
    deps=[AssetKey(["marts", "effects"])],
    group_name="pay",
    kinds={"duckdb"},
    description="Payment lines under the plan's terms, exact decimals.",
)
def payment_proposal(
    context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
) -> None:
    plan = contract.plan()
    with duckdb.get_connection() as con:
        proposal = propose_payment(warehouse.prepare(con), plan)
    context.add_output_metadata(
        {
            "total": f"{proposal['total']} {proposal['currency']}",
            "lines": MetadataValue.json(proposal["lines"]),
        }
    )
