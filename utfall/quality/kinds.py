"""What the quality checks need to know about a source kind; one module per kind registers it.

A kind says which columns it has (and where a null is meaningful rather than missing),
what its monthly profile counts, which expectations apply to it, and its value rules.
Adding a source kind is one module here plus its entry in `KINDS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from utfall.plan import Plan

#: A value rule: (column, what a failing row is, the GX expectation that finds them).
ValueRule = tuple[str, str, Any]


@dataclass(frozen=True)
class KindSpec:
    kind: str
    #: The data columns of the staged table (lineage columns such as _file are ignored).
    columns: tuple[str, ...]
    #: What the monthly profile counts, for messages: "rows", "employees".
    counted: str
    #: Expectations (by config name) that apply to this kind, in addition to the common ones.
    extra_checks: tuple[str, ...]
    #: rows per month: (staged frame, first days of the months) -> counts, same order.
    profile: Callable[[pl.DataFrame, list[dt.date]], list[int]]
    #: The value rules of a plan (GX expectations are built when called).
    value_rules: Callable[[Plan], list[ValueRule]]
    #: Columns where null is a value with a meaning, with that meaning (not a missing value).
    meaningful_nulls: dict[str, str] = field(default_factory=dict)
    #: Which of COMMON_CHECKS apply (a person table has no months to judge).
    common_checks: tuple[str, ...] = (
        "volume_vs_history",
        "periods_present",
        "null_share",
        "value_ranges",
    )


#: Expectations every dated kind runs, in config order where they appear.
COMMON_CHECKS = ("volume_vs_history", "periods_present", "null_share", "value_ranges")


def month_starts(plan: Plan) -> list[dt.date]:
    """First day of every month from the baseline start to the measurement end."""
    start, _ = plan.period("baseline")
    _, end = plan.period("measurement")
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(dt.date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def shift_years(day: dt.date, years: int) -> dt.date:
    """The same day `years` later (28 February for 29 February in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def as_datetime(day: dt.date) -> dt.datetime:
    """A bound for a GX range on a date column: GX compares pandas datetimes, and a
    `datetime.date` bound makes the expectation error (reported as a bare failure)."""
    return dt.datetime(day.year, day.month, day.day)
