"""Source kind `public_costs`: public costs per person and month where a contract pays on
savings (benefit payments, placements, care), amounts in exact decimals (a decimal point or
comma, spaces as thousands separators; never binary floating point). Row checks: unreadable
months (invalid_date), identity numbers that are not valid (invalid_personnummer), then the
rules of utfall.domains.public_costs.validate (missing_field, month_not_first_day,
unknown_cost_type, amount_not_a_number, amount_more_than_two_decimals). Negative amounts are
corrections (a benefit paid back) and are kept; several rows of one person, month and type are
summed. Staged: work.staging_public_costs (amount DECIMAL(18,2)).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.domains import public_costs
from utfall.kinds import FAILURES_SCHEMA, PersonKind, parse_dates

COLUMNS = {"person_id": True, "month": True, "cost_type": True, "amount": True}


def validate(raw: pl.DataFrame, source: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, fails = parse_dates(raw, ("month",))
    rows = rows.with_row_index("_n")
    valid, bad = public_costs.validate(rows.select(*public_costs.COLUMNS), with_index=True)
    positions = rows.select(pl.col("_n").cast(pl.Int64), "_pos", "_file", "_line")
    failed = bad.join(positions, on="_n", how="left").select("_pos", "rule", "detail")
    typed = valid.join(positions, on="_n", how="left").select(
        "_pos", "_file", "_line", *public_costs.COLUMNS
    )
    return typed, pl.concat([fails, failed.cast(FAILURES_SCHEMA)])


KIND = PersonKind(name="public_costs", columns=COLUMNS, validate=validate)
