"""Quality rules of the person-level kinds (participants, lab_results, employment_status,
public_costs):
their row rules are the domain modules' (utfall.kinds); on the delivery as a whole they get
the null-share expectation and are profiled by month (participants by enrolment, lab results
by sample date, status and costs by month) for volume against history. Missing groups are the
estimator's to refuse (it names them)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.plan import Plan
from utfall.quality.kinds import KindSpec, ValueRule


def _by_month(column: str):
    def profile(staged: pl.DataFrame, months: list[dt.date]) -> list[int]:
        counts = staged.select(pl.col(column).dt.truncate("1mo").alias("month")).group_by("month")
        by_month = dict(counts.len().iter_rows())
        return [int(by_month.get(m, 0)) for m in months]

    return profile


def no_rules(plan: Plan) -> list[ValueRule]:
    return []


PARTICIPANTS_SPEC = KindSpec(
    kind="participants",
    columns=("person_id", "treated", "enrolled_on", "exit_on", "exit_reason", "age", "sex"),
    counted="rows",
    extra_checks=(),
    profile=_by_month("enrolled_on"),
    value_rules=no_rules,
    meaningful_nulls={
        "exit_on": "empty: still in the programme, or a comparison person",
        "exit_reason": "empty exactly when exit_on is",
    },
    common_checks=("null_share",),
)

LAB_RESULTS_SPEC = KindSpec(
    kind="lab_results",
    columns=("person_id", "sample_date", "analyte", "value", "unit", "conversion"),
    counted="rows",
    extra_checks=(),
    profile=_by_month("sample_date"),
    value_rules=no_rules,
    meaningful_nulls={"warning": "empty: the value lies within its analyte's warning range"},
    common_checks=("null_share",),
)

EMPLOYMENT_STATUS_SPEC = KindSpec(
    kind="employment_status",
    columns=("person_id", "month", "status"),
    counted="rows",
    extra_checks=(),
    profile=_by_month("month"),
    value_rules=no_rules,
    meaningful_nulls={"earnings": "empty: no earnings delivered for the month"},
    common_checks=("null_share",),
)

PUBLIC_COSTS_SPEC = KindSpec(
    kind="public_costs",
    columns=("person_id", "month", "cost_type", "amount"),
    counted="rows",
    extra_checks=(),
    profile=_by_month("month"),
    value_rules=no_rules,
    meaningful_nulls={},
    common_checks=("null_share",),
)
