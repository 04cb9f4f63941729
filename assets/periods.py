"""Outcomes by measurement quarter: the one partitioned asset of a contract.

Why only this one: a measurement run is one unit (the effect needs every baseline and
measurement quarter at once, and the run publishes all stages together), so the measure
job stays unpartitioned. The published run's outcomes per quarter and group are what a data
team looks at quarter by quarter, and each quarter can be recomputed on its own: partition
`2025-04-01` deletes and re-inserts exactly the contract's rows with
`period_start = DATE '2025-04-01'` in `marts.quarter_outcomes`, in one transaction.
"""

import datetime as dt

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, asset

from utfall import warehouse
from utfall.assets.common import GROUPS, key
from utfall.assets.metadata import cell, markdown_table
from utfall.errors import WarehouseError
from utfall.pipelines.calendar import measurement_partitions
from utfall.plan import Plan
from utfall.warehouse import runs

TABLE = "marts.quarter_outcomes"
#: period_start is the partition column: DATE, never text.
DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (contract_id VARCHAR NOT NULL, "
    "period_start DATE NOT NULL, period_end DATE NOT NULL, outcome VARCHAR NOT NULL, "
    "unit_group VARCHAR NOT NULL, employees BIGINT, numerator DOUBLE, denominator DOUBLE, "
    "value DOUBLE, suppressed BOOLEAN NOT NULL, run_id VARCHAR NOT NULL, "
    "plan_hash VARCHAR NOT NULL)"
)
TABLE_COMMENT = (
    "Per contract, measurement quarter (period_start, the Dagster partition) and group: the "
    "published run's pooled outcome (sum of numerators / sum of denominators); groups of "
    "fewer employees than the plan's min_cell_size are suppressed (NULL, suppressed = true)."
)
COLUMN_COMMENTS = {
    "contract_id": "The contract (plan contract.id).",
    "period_start": "First day of the measurement quarter; the Dagster partition key.",
    "period_end": "Last day of the quarter.",
    "outcome": "The plan's outcome id.",
    "unit_group": "treated or comparison.",
    "employees": "Employees counted in the group's units this quarter (NULL if suppressed).",
    "numerator": "Sum of the units' numerators (NULL if suppressed).",
    "denominator": "Sum of the units' denominators (NULL if suppressed).",
    "value": "numerator / denominator (NULL if suppressed).",
    "suppressed": "True when the group had fewer employees than the plan's min_cell_size.",
    "run_id": "The published run these rows come from (ledger.runs).",
    "plan_hash": "Hash of the plan the run was made under.",
}


def _describe(con) -> None:
    """COMMENT ON the table and each column (DuckDB keeps them in its catalog)."""

    def quote(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    con.execute(f"COMMENT ON TABLE {TABLE} IS {quote(TABLE_COMMENT)}")
    for column, text in COLUMN_COMMENTS.items():
        con.execute(f"COMMENT ON COLUMN {TABLE}.{column} IS {quote(text)}")


def quarter_rows(con, plan: Plan, quarter: dt.date) -> tuple[pl.DataFrame, dict]:
    """The contract's published outcomes of one quarter by group, small groups suppressed."""
    published = runs.published_run(con, plan.contract_id)
    if not published:
        raise WarehouseError(
            f"{plan.contract_id} has no published run: materialise its measure job first"
        )
    if published["plan_hash"] != plan.hash:
        raise WarehouseError(
            f"{plan.contract_id}'s published run {published['run_id']} was made with plan "
            f"{published['plan_hash']}, not {plan.hash}: run the measure job again"
        )
    rows = warehouse.read_table(
        con,
        'SELECT outcome, "group" AS unit_group, any_value(period_end) AS period_end, '
        "sum(employees) AS employees, sum(numerator) AS numerator, "
        "sum(denominator) AS denominator FROM work.outcome_panel "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND period_start = $quarter "
        "GROUP BY ALL ORDER BY outcome, unit_group",
        {"contract_id": plan.contract_id, "run_id": published["run_id"], "quarter": quarter},
    )
    small = pl.col("employees") < plan.min_cell_size
    frame = rows.with_columns(
        value=pl.when(small).then(None).otherwise(pl.col("numerator") / pl.col("denominator")),
        numerator=pl.when(small).then(None).otherwise(pl.col("numerator")),
        denominator=pl.when(small).then(None).otherwise(pl.col("denominator")),
        employees=pl.when(small).then(None).otherwise(pl.col("employees")),
        suppressed=small,
        run_id=pl.lit(published["run_id"]),
        plan_hash=pl.lit(plan.hash),
    )
    return frame, published


def write_quarter(con, plan: Plan, quarter: dt.date) -> pl.DataFrame:
    """Replace the contract's rows of `quarter` (delete, insert, verify: one transaction)."""
    con.execute(DDL)
    _describe(con)
    frame, _ = quarter_rows(con, plan, quarter)
    with warehouse.transaction(con):
        warehouse.insert_rows(
            con, TABLE, frame, {"contract_id": plan.contract_id, "period_start": quarter}
        )
    return frame


def quarter_asset(plan: Plan, resource: str) -> AssetsDefinition:
    @asset(
        key=key(plan, "marts", "quarter_outcomes"),
        deps=[key(plan, "reports", "validator_report")],
        partitions_def=measurement_partitions(plan),
        group_name=GROUPS["report"],
        kinds={"duckdb"},
        required_resource_keys={"duckdb", resource},
        description="The published run's outcome per measurement quarter and group "
        f"({TABLE}); one partition per quarter, re-materialised on its own.",
    )
    def _quarter(context: AssetExecutionContext) -> None:
        plan_ = getattr(context.resources, resource).plan()
        quarter = dt.date.fromisoformat(context.partition_key)
        with context.resources.duckdb.get_connection() as con:
            frame = write_quarter(con, plan_, quarter)
        shown = [
            {
                "outcome": r["outcome"],
                "unit_group": r["unit_group"],
                "employees": "<" + str(plan_.min_cell_size)
                if r["suppressed"]
                else cell(r["employees"], plan_.min_cell_size),
                "value": r["value"],
            }
            for r in frame.iter_rows(named=True)
        ]
        context.add_output_metadata(
            {
                "dagster/row_count": frame.height,
                "period_start": str(quarter),
                "utfall_run_id": frame["run_id"][0] if frame.height else "",
                "preview": MetadataValue.md(
                    markdown_table(shown, ["outcome", "unit_group", "employees", "value"])
                ),
            }
        )

    return _quarter
