"""Quality rules of the `employee_roster` kind: one row per employment period of a person
(valid rows of one person never overlap, so rows employed on a day are persons)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.plan import Plan
from utfall.quality.kinds import KindSpec, ValueRule, as_datetime, shift_years

SEXES = ("K", "M")
EARLIEST = dt.date(1900, 1, 1)


def profile(staged: pl.DataFrame, months: list[dt.date]) -> list[int]:
    """Employees employed on the first day of each month.

    Counted as (employed from on or before the day) - (employed to before the day) over
    the rows whose employment is a real interval (a start, and no end before it; rows
    without one are never counted and are value_ranges' or null_share's business): two
    sorts instead of a months x employees cross join.
    """
    day = pl.Series("day", months, dtype=pl.Date)
    valid = staged.filter(
        pl.col("employed_from").is_not_null()
        & (pl.col("employed_to").is_null() | (pl.col("employed_to") >= pl.col("employed_from")))
    )
    started = valid["employed_from"].sort()
    ended = valid["employed_to"].drop_nulls().sort()
    begun = started.search_sorted(day, side="right")
    gone = ended.search_sorted(day, side="left")
    return [int(b - g) for b, g in zip(begun.to_list(), gone.to_list(), strict=True)]


def eligible(staged: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """Roster rows that can enter the measurement: employed at some time from the baseline
    start to the measurement end, at an extent of at least the plan's minimum."""
    start, _ = plan.period("baseline")
    _, end = plan.period("measurement")
    return staged.filter(
        (pl.col("employment_extent") >= plan.min_employment_extent)
        & (pl.col("employed_from") <= end)
        & (pl.col("employed_to").is_null() | (pl.col("employed_to") >= start))
    )


def value_rules(plan: Plan) -> list[ValueRule]:
    import great_expectations.expectations as gxe

    _, measurement_end = plan.period("measurement")
    latest_start = shift_years(measurement_end, 1)
    return [
        (
            "birth_year",
            f"outside 1900..{measurement_end.year}",
            gxe.ExpectColumnValuesToBeBetween(
                column="birth_year", min_value=1900, max_value=measurement_end.year
            ),
        ),
        (
            "sex",
            f"not one of {', '.join(SEXES)}",
            gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(SEXES)),
        ),
        (
            "employment_extent",
            "outside 1..100",
            gxe.ExpectColumnValuesToBeBetween(
                column="employment_extent", min_value=1, max_value=100
            ),
        ),
        (
            "employed_from",
            f"outside {EARLIEST}..{latest_start}",
            gxe.ExpectColumnValuesToBeBetween(
                column="employed_from",
                min_value=as_datetime(EARLIEST),
                max_value=as_datetime(latest_start),
            ),
        ),
        (
            "employed_to",
            "before employed_from",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="employed_to",
                column_B="employed_from",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ),
    ]


SPEC = KindSpec(
    kind="employee_roster",
    columns=(
        "person_id",
        "birth_year",
        "sex",
        "unit_id",
        "employment_extent",
        "employed_from",
        "employed_to",
    ),
    counted="employees",
    extra_checks=("units_present",),
    profile=profile,
    value_rules=value_rules,
    meaningful_nulls={"employed_to": "empty means still employed"},
)
