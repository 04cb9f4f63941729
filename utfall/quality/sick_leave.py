"""Quality rules of the `sick_leave_spells` kind: one row per spell."""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.plan import Plan
from utfall.quality.kinds import KindSpec, ValueRule, as_datetime, shift_years

EXTENTS = (25, 50, 75, 100)


def profile(staged: pl.DataFrame, months: list[dt.date]) -> list[int]:
    """Spells by the month they start in; spells starting outside the months are not counted."""
    counts = (
        staged.select(pl.col("spell_start").dt.truncate("1mo").alias("month"))
        .group_by("month")
        .len()
    )
    by_month = dict(counts.iter_rows())
    return [int(by_month.get(m, 0)) for m in months]


def value_rules(plan: Plan) -> list[ValueRule]:
    import great_expectations.expectations as gxe

    baseline_start, _ = plan.period("baseline")
    _, measurement_end = plan.period("measurement")
    low, high = shift_years(baseline_start, -1), shift_years(measurement_end, 1)
    window = f"outside {low}..{high}"
    return [
        (
            "extent",
            f"not one of {', '.join(map(str, EXTENTS))}",
            gxe.ExpectColumnValuesToBeInSet(column="extent", value_set=list(EXTENTS)),
        ),
        *[
            (
                column,
                window,
                gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=as_datetime(low), max_value=as_datetime(high)
                ),
            )
            for column in ("spell_start", "spell_end")
        ],
        (
            "spell_end",
            "before spell_start",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="spell_end",
                column_B="spell_start",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ),
    ]


SPEC = KindSpec(
    kind="sick_leave_spells",
    columns=("person_id", "spell_start", "spell_end", "extent"),
    counted="rows",
    extra_checks=("volume_vs_baseline",),
    profile=profile,
    value_rules=value_rules,
)
