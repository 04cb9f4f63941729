"""The generic source kinds' contracts: a person table and a unit x period panel.

Their outcome and covariate columns are named by the plan, so the Pandera schemas are
built from the source's plan entry (`rows_schema`, `set_schema`) instead of written as
classes; as everywhere, a check's name is the quarantine rule a failing row gets
(`missing_<column>` for an empty required value).

Row rules (each delivered row on its own, values as delivered text):

* person_table: `invalid_personnummer` (an id shaped like an identity number that is not a
  valid one), `unknown_treatment` (a treatment value the plan's treatment_values do not
  list), `non_numeric_outcome`, `non_numeric_covariate` (numbers: optional sign, digits,
  the plan's decimal mark, with "." an exponent; no thousands separators, no inf/nan).
* unit_panel: `invalid_period` (not YYYY-MM-DD), `period_outside_plan` (in neither the
  baseline nor the measurement period), `unknown_treatment`, `invalid_treatment_start`,
  `invalid_weight` (not a number above 0), `non_numeric_outcome`.

Set rules (rows that passed, typed, in delivery order):

* `duplicate_row`: an exact copy of an earlier row; the first copy is kept.
* person_table `duplicate_person`: one person on rows that differ; none can be trusted
  over the other, so all of them are quarantined.
* unit_panel `duplicate_unit_period`: the same for one unit and period;
  `inconsistent_treatment`: a unit whose rows disagree on its treatment (group or start),
  all its rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from utfall.schemas.checks import as_date, is_date, is_repeat

#: Numbers as delivered, by decimal mark: sign, digits, one mark; "." also an exponent;
#: "," (Swedish exports) also thousands grouped by a space, no-break or narrow no-break
#: space ("1 234,5"), as Swedish Excel writes them.
NUMBER = {
    ".": r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$",
    ",": r"^[+-]?(?:\d+,?\d*|,\d+|\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:,\d*)?)$",
}


def as_number(col: str, decimal: str = ".") -> pl.Expr:
    """Delivered text as Float64 (null when not a finite number in the plan's format)."""
    text = pl.col(col)
    if decimal == ",":
        text = text.str.replace_all("[ \u00a0\u202f]", "").str.replace(",", ".", literal=True)
    value = text.cast(pl.Float64, strict=False)
    ok = pl.col(col).str.contains(NUMBER[decimal]) & value.is_finite()
    return pl.when(ok).then(value).otherwise(None)


def _is_number(col: str, decimal: str) -> pl.Expr:
    return pl.col(col).is_null() | as_number(col, decimal).is_not_null()


def variable_columns(source: dict[str, Any]) -> dict[str, str]:
    """The plan-named columns of a generic source: name -> "outcome" / numeric covariate
    "numeric" / categorical covariate "categorical", outcomes first."""
    out = {name: "outcome" for name in source.get("outcome_columns") or {}}
    out.update({k: v["type"] for k, v in (source.get("covariates") or {}).items()})
    return out


def _check(expr: pl.Expr, name: str) -> Any:
    import pandera.polars as pa

    # pandera dispatches registered checks by function name: use a private one.
    def _rule(data):
        return data.lazyframe.select(expr.fill_null(True))

    return pa.Check(_rule, name=name)


def rows_schema(
    source: dict[str, Any],
    groups: dict[str, str],
    periods: tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]] | None = None,
) -> Any:
    """The row rules of a generic source (see the module docstring).

    `groups` maps delivered treatment values to groups (the plan's treatment_values);
    `periods` are the plan's (baseline, measurement) ranges, for unit panels."""
    import pandera.polars as pa

    kind = source["kind"]
    decimal = source.get("csv", {}).get("decimal", ".")
    mapped = source["columns"]
    cols: dict[str, Any] = {}
    known = list(groups)
    if kind == "person_table":
        cols["person_id"] = pa.Column(pl.String, nullable=False)
        cols["pnr_problem"] = pa.Column(
            pl.String,
            nullable=True,
            checks=[_check(pl.col("pnr_problem").is_null(), "invalid_personnummer")],
        )
        cols["treatment"] = pa.Column(
            pl.String,
            nullable=False,
            checks=[_check(pl.col("treatment").is_in(known), "unknown_treatment")],
        )
    else:
        (b0, b1), (m0, m1) = periods  # type: ignore[misc]
        day = as_date("period")
        inside = day.is_between(b0, b1) | day.is_between(m0, m1)
        cols["unit_id"] = pa.Column(pl.String, nullable=False)
        cols["period"] = pa.Column(
            pl.String,
            nullable=False,
            checks=[
                _check(is_date("period"), "invalid_period"),
                _check(~is_date("period") | inside, "period_outside_plan"),
            ],
        )
        if "treated" in mapped:
            cols["treated"] = pa.Column(
                pl.String,
                nullable=False,
                checks=[_check(pl.col("treated").is_in(known), "unknown_treatment")],
            )
        if "treatment_start" in mapped:
            cols["treatment_start"] = pa.Column(
                pl.String,
                nullable=True,
                checks=[
                    _check(
                        pl.col("treatment_start").is_null() | is_date("treatment_start"),
                        "invalid_treatment_start",
                    )
                ],
            )
        if "weight" in mapped:
            cols["weight"] = pa.Column(
                pl.String,
                nullable=False,
                checks=[
                    _check(
                        pl.col("weight").is_null()
                        | (as_number("weight", decimal) > 0).fill_null(False),
                        "invalid_weight",
                    )
                ],
            )
    for name, role in variable_columns(source).items():
        checks = []
        if role != "categorical":
            rule = "non_numeric_outcome" if role == "outcome" else "non_numeric_covariate"
            checks.append(_check(_is_number(name, decimal), rule))
        cols[name] = pa.Column(pl.String, nullable=False, checks=checks)
    return pa.DataFrameSchema(cols, strict=False)


def data_columns(source: dict[str, Any]) -> list[str]:
    """The typed columns that make a row what it is (for duplicates), lineage excluded."""
    if source["kind"] == "person_table":
        fixed = ["person_id", "treatment"]
    else:
        fixed = ["unit_id", "period", "treatment", "treatment_start", "weight"]
    return fixed + list(variable_columns(source))


def set_schema(source: dict[str, Any]) -> Any:
    """The rules across rows of a generic source, on its typed rows in delivery order."""
    import pandera.polars as pa

    columns = data_columns(source)
    first = (~is_repeat(columns)).cast(pl.Int64)
    checks = [_check(~is_repeat(columns), "duplicate_row")]
    if source["kind"] == "person_table":
        checks.append(_check(first.sum().over("person_id") <= 1, "duplicate_person"))
    else:
        checks.append(_check(first.sum().over("unit_id", "period") <= 1, "duplicate_unit_period"))
        treatment = pl.struct("group", "treatment_start")
        checks.append(_check(treatment.n_unique().over("unit_id") <= 1, "inconsistent_treatment"))
    return pa.DataFrameSchema(checks=checks, strict=False)


def typed(source: dict[str, Any], groups: dict[str, str], frame: pl.DataFrame, plan_periods):
    """Rows that passed `rows_schema`, typed: numbers Float64 (narrow types included),
    dates Date, the group from the plan's treatment values or the treatment start, and for
    unit panels the phase of the period."""
    decimal = source.get("csv", {}).get("decimal", ".")
    mapping = pl.col("treatment").replace_strict(groups, default=None, return_dtype=pl.String)
    exprs = []
    if source["kind"] == "person_table":
        exprs.append(mapping.alias("group"))
    else:
        (b0, b1), _ = plan_periods
        frame = frame.rename({"treated": "treatment"}) if "treated" in frame.columns else frame
        if "treatment" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("treatment"))
        start = (
            as_date("treatment_start")
            if "treatment_start" in frame.columns
            else pl.lit(None, dtype=pl.Date)
        )
        group = (
            mapping
            if "treated" in source["columns"]
            else pl.when(start.is_not_null())
            .then(pl.lit("treated"))
            .otherwise(pl.lit("comparison"))
        )
        exprs += [
            as_date("period").alias("period"),
            pl.when(as_date("period").is_between(b0, b1))
            .then(pl.lit("baseline"))
            .otherwise(pl.lit("measurement"))
            .alias("phase"),
            group.alias("group"),
            start.alias("treatment_start"),
            (
                as_number("weight", decimal)
                if "weight" in frame.columns
                else pl.lit(None, dtype=pl.Float64)
            ).alias("weight"),
        ]
    for name, role in variable_columns(source).items():
        if role != "categorical":
            exprs.append(as_number(name, decimal).alias(name))
    out = frame.with_columns(exprs)
    return out.drop("pnr_problem", strict=False)
