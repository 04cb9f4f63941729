"""Source kind `participants`: who entered the intervention (treated 1) or the comparison
group (0), when, when and why they left, age and sex, and the plan's `covariates` (e.g.
clinic, baseline_hba1c; numbers with the CSV's decimal mark). Row checks: unreadable dates
(invalid_date), identity numbers that are not valid (invalid_personnummer), a numeric
covariate that is not a number (covariate_not_a_number), then the rules of
utfall.domains.participants.validate (missing_field, treated_not_0_1, exit_before_enrolment,
exit_without_reason, reason_without_exit, unknown_exit_reason, unknown_sex, age_out_of_range,
duplicate_person). Staged: work.staging_participants, covariates in work.staging_values.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.domains import participants as domain
from utfall.kinds import FAILURES_SCHEMA, PersonKind, parse_dates

COLUMNS = {
    "person_id": True,
    "treated": True,
    "enrolled_on": True,
    "exit_on": False,
    "exit_reason": False,
    "age": True,
    "sex": True,
}


def covariate_types(source: dict[str, Any]) -> dict[str, str]:
    return {k: v["type"] for k, v in (source.get("covariates") or {}).items()}


def validate(raw: pl.DataFrame, source: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, fails = parse_dates(raw, ("enrolled_on", "exit_on"))
    comma = (source.get("csv") or {}).get("decimal") == ","
    numeric = [c for c, t in covariate_types(source).items() if t == "numeric"]
    casts = []
    for c in numeric:
        text = pl.col(c).str.strip_chars()
        if comma:
            text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
        casts.append(text.cast(pl.Float64, strict=False).alias(c))
    cast = rows.with_columns(casts)
    bad_num = pl.any_horizontal(
        [pl.col(c).is_not_null() & cast[c].is_null() for c in numeric] or [pl.lit(False)]
    )
    not_numbers = rows.filter(bad_num)
    fails = pl.concat(
        [
            fails,
            not_numbers.select(
                "_pos", rule=pl.lit("covariate_not_a_number"), detail=pl.lit(", ".join(numeric))
            ).cast(FAILURES_SCHEMA),
        ]
    )
    kept = cast.filter(~rows.select(bad_num).to_series())
    valid, bad = domain.validate(kept.drop("pnr_problem"))
    fails = pl.concat(
        [
            fails,
            bad.select(pl.col("_pos").cast(pl.UInt32), "rule", "detail").cast(FAILURES_SCHEMA),
        ]
    )
    return valid, fails


KIND = PersonKind(
    name="participants",
    columns=COLUMNS,
    validate=validate,
    takes_covariates=True,
)
