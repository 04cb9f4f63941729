"""The validator report directory: report.json, report.html, manifest.json."""

from dagster import AssetExecutionContext, AssetKey, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from pipelines.resources import ContractResource
from utfall import report, warehouse
from utfall.pipeline import assemble_report


@asset(
    key=AssetKey(["reports", "validator_report"]),
    deps=[AssetKey(["marts", "payments_proposed"])],
    group_name="report",
    kinds={"html", "json"},
    description="The report an independent validator reviews; approval triggers payment.",
)
def validator_report(
    context: AssetExecutionContext, duckdb: DuckDBResource, contract: ContractResource
) -> None:
    plan = contract.plan()
    with duckdb.get_connection() as con:
        doc = assemble_report(warehouse.prepare(con), plan)
    paths = report.write_report(doc, contract.reports(plan))
    context.add_output_metadata(
        {"report": MetadataValue.path(str(paths["report.html"])), "plan_hash": plan.hash}
    )
