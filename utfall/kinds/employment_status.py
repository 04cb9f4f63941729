"""Source kind `employment_status`: one row per person and month (the first day of the
month), the status from a closed set (employed, unemployed, in education or training, other;
Swedish and English labels mapped by utfall.domains.employment.LABELS), earnings in exact
decimals where present. Row checks: unreadable dates (invalid_date), identity numbers that
are not valid (invalid_personnummer), then the rules of utfall.domains.employment.validate
(missing_field, month_not_first_day, unknown_status, earnings_not_a_number,
negative_earnings, earnings_more_than_two_decimals, conflicting_person_month,
duplicate_row). Staged: work.staging_employment_status.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.domains import employment
from utfall.kinds import FAILURES_SCHEMA, PersonKind, parse_dates

COLUMNS = {"person_id": True, "month": True, "status": True, "earnings": False}


def validate(raw: pl.DataFrame, source: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, fails = parse_dates(raw, ("month",))
    rows = rows.with_row_index("_n")
    valid, bad = employment.validate(
        rows.select("person_id", "month", "status", "earnings"), with_index=True
    )
    positions = rows.select(pl.col("_n").cast(pl.Int64), "_pos")
    failed = bad.join(positions, on="_n", how="left").select("_pos", "rule", "detail")
    kept = rows.filter(~pl.col("_n").cast(pl.Int64).is_in(bad["_n"].implode()))
    typed = kept.select("_pos", "_file", "_line", "person_id", "month").join(
        valid, on=["person_id", "month"], how="left", validate="1:1"
    )
    return typed, pl.concat([fails, failed.cast(FAILURES_SCHEMA)])


KIND = PersonKind(name="employment_status", columns=COLUMNS, validate=validate)
