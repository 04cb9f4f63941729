"""Marts: the unit x quarter outcome panel, effect estimates, and the proposed payment."""

from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, asset

from utfall import warehouse
from utfall.assets.common import GROUPS, key, open_run
from utfall.assets.metadata import effect_chart, markdown_table, panel_preview
from utfall.metrics import build_outcome_panel
from utfall.pipeline import estimate_effects, has_panel, propose_payment, stage
from utfall.plan import Plan


def measure_assets(plan: Plan, resource: str) -> list[AssetsDefinition]:
    """The panel (only for plans with outcomes per unit and period), effects, payment."""
    panel_key = key(plan, "marts", "outcome_panel")
    effects_deps = [panel_key if has_panel(plan) else key(plan, "staging", "data_quality")]

    @asset(
        key=key(plan, "marts", "outcome_panel"),
        deps=[key(plan, "staging", "data_quality")],
        group_name=GROUPS["measure"],
        kinds={"duckdb"},
        required_resource_keys={"duckdb", resource},
        description="Each outcome per unit and period (cohort units by quarter, or a "
        "delivered unit panel): numerator, denominator, value.",
    )
    def _panel(context: AssetExecutionContext) -> None:
        with open_run(context, resource, measure=True) as (con, plan_, run, _c, _k):
            panel = stage(
                con, plan_, run, "outcome panel", lambda: build_outcome_panel(con, plan_, run)
            )
        context.add_output_metadata(
            {
                "rows": panel.height,
                "dagster/row_count": panel.height,
                "units": panel["unit_id"].n_unique(),
                "preview": panel_preview(panel, plan_.min_cell_size),
            }
        )

    @asset(
        key=key(plan, "marts", "effects"),
        deps=effects_deps,
        group_name=GROUPS["measure"],
        kinds={"duckdb"},
        required_resource_keys={"duckdb", resource},
        description="One effect estimate per outcome, with confidence interval and diagnostics.",
    )
    def _effects(context: AssetExecutionContext) -> None:
        with open_run(context, resource, measure=True) as (con, plan_, run, _c, _k):
            results = stage(con, plan_, run, "effects", lambda: estimate_effects(con, plan_, run))
            panel = warehouse.read_table(
                con,
                "SELECT * FROM work.outcome_panel WHERE contract_id = $contract_id "
                "AND run_id = $run_id ORDER BY outcome, unit_id, period_start",
                run.scope,
            )
        context.add_output_metadata(
            {
                "dagster/row_count": len(results),
                "effect_chart": effect_chart(panel, results, plan_.min_cell_size),
                **{
                    r.outcome: MetadataValue.json(
                        {
                            "estimate": r.estimate,
                            "ci": [r.ci_low, r.ci_high],
                            "relative": r.relative_estimate,
                            "warnings": list(r.warnings),
                        }
                    )
                    for r in results
                },
            }
        )
        for r in results:
            for w in r.warnings:
                context.log.warning(f"{r.outcome} ({r.method}): {w}")

    @asset(
        key=key(plan, "marts", "payments_proposed"),
        deps=[key(plan, "marts", "effects")],
        group_name=GROUPS["pay"],
        kinds={"duckdb"},
        required_resource_keys={"duckdb", resource},
        description="Payment lines under the plan's terms, exact decimals; due only after "
        "the validator approves.",
    )
    def _payment(context: AssetExecutionContext) -> None:
        with open_run(context, resource, measure=True) as (con, plan_, run, _c, _k):
            proposal = stage(con, plan_, run, "payment", lambda: propose_payment(con, plan_, run))
        context.add_output_metadata(
            {
                "dagster/row_count": len(proposal["lines"]),
                "total": f"{proposal['total']} {proposal['currency']}",
                "lines": MetadataValue.json(proposal["lines"]),
                "preview": MetadataValue.md(
                    markdown_table(
                        proposal["lines"], ["rule", "kind", "achievement", "max_amount", "amount"]
                    )
                ),
            }
        )

    return [_panel, _effects, _payment] if has_panel(plan) else [_effects, _payment]
