"""Source kind `lab_results`: one row per lab result (person, sample date, analyte, value,
unit), HbA1c stored in IFCC mmol/mol. Row checks: unreadable dates (invalid_date), identity
numbers that are not valid (invalid_personnummer), then the rules of
utfall.domains.hba1c.validate (missing_field, not_hba1c, value_not_a_number, unknown_unit,
out_of_range, duplicate_row), which also converts NGSP % and Swedish Mono-S % (before
September 2010) by their master equations and says which in `conversion`. Values read with
a decimal point or comma alike. Staged: work.staging_lab_results.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.domains import hba1c
from utfall.kinds import FAILURES_SCHEMA, PersonKind, parse_dates

COLUMNS = {"person_id": True, "sample_date": True, "analyte": True, "value": True, "unit": True}


def validate(raw: pl.DataFrame, source: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, fails = parse_dates(raw, ("sample_date",))
    valid, bad = hba1c.validate(rows.select(*hba1c.INPUT, "_pos", "_file", "_line"))
    fails = pl.concat(
        [fails, bad.select(pl.col("_pos").cast(pl.UInt32), "rule", "detail").cast(FAILURES_SCHEMA)]
    )
    return valid, fails


KIND = PersonKind(name="lab_results", columns=COLUMNS, validate=validate)
