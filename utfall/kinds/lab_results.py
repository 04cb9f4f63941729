"""Source kind `lab_results`: one row per lab result (person, sample date, analyte, value,
unit): HbA1c (stored in IFCC mmol/mol), fasting glucose (mmol/L), weight (kg) and BMI
(kg/m2), each in `value` and `unit` (utfall.domains.labs). Row checks: unreadable dates
(invalid_date), identity numbers that are not valid (invalid_personnummer), then the rules of
utfall.domains.labs.validate (missing_field, unknown_analyte, value_not_a_number,
unknown_unit, mono_s_not_converted, out_of_range, duplicate_row), which converts NGSP % and
Swedish Mono-S % HbA1c (before September 2010) and glucose in mg/dL and says which in
`conversion`. The source's plan key `mono_s` (convert, the default, or quarantine) says what
becomes of Mono-S values. Values read with a decimal point or comma alike. Staged:
work.staging_lab_results.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.domains import labs
from utfall.kinds import FAILURES_SCHEMA, PersonKind, parse_dates

COLUMNS = {"person_id": True, "sample_date": True, "analyte": True, "value": True, "unit": True}


def validate(raw: pl.DataFrame, source: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, fails = parse_dates(raw, ("sample_date",))
    valid, bad = labs.validate(
        rows.select(*labs.INPUT, "_pos", "_file", "_line"), mono_s=source.get("mono_s", "convert")
    )
    fails = pl.concat(
        [fails, bad.select(pl.col("_pos").cast(pl.UInt32), "rule", "detail").cast(FAILURES_SCHEMA)]
    )
    return valid, fails


KIND = PersonKind(name="lab_results", columns=COLUMNS, validate=validate)
