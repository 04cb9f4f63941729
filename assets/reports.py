"""The validator report (report.json, report.html, manifest.json); publishing the run."""

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, asset

from utfall.assets.common import GROUPS, key, open_run
from utfall.pipeline import publish_report, stage
from utfall.plan import Plan


def report_asset(plan: Plan, resource: str) -> AssetsDefinition:
    @asset(
        key=key(plan, "reports", "validator_report"),
        deps=[key(plan, "marts", "payments_proposed")],
        group_name=GROUPS["report"],
        kinds={"html", "json"},
        required_resource_keys={"duckdb", resource},
        description="The report an independent validator reviews; approval triggers payment. "
        "Writing it publishes the run: raw, staging, quarantine and marts then show it.",
    )
    def _report(context: AssetExecutionContext) -> None:
        with open_run(context, resource, measure=True) as (con, plan_, run, contract, _k):
            paths = stage(
                con,
                plan_,
                run,
                "report and publish",
                lambda: publish_report(con, plan_, run, contract.reports(plan_)),
            )
        context.add_output_metadata(
            {
                "report": MetadataValue.path(str(paths["report.html"])),
                "plan_hash": plan_.hash,
                "utfall_run_id": run.run_id,
            }
        )

    return _report
