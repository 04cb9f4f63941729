"""Public cost per person and month, in exact decimals, and savings against a counterfactual.

Input (`validate`): one row per person, month and cost type, or more: a correction is a
further row of the same person, month and type, and all of them are summed

    person_id  Utf8    the person's pseudonym
    month      Date    the first day of the calendar month
    cost_type  Utf8    one of COST_TYPES (lower case)
    amount     exact: Decimal, int or text ("9 500,00"); at most two decimals. Negative
                       amounts are corrections (a benefit paid back) and are kept.

Quarantine rules (first that applies): ``missing_field``, ``month_not_first_day``,
``unknown_cost_type``, ``amount_not_a_number``, ``amount_more_than_two_decimals``; floats are
refused outright (TypeError: money is never binary floating point).

`totals` sums each person's amounts over the months of a window (both ends' months
included); a person with no rows costs 0.00. `after_enrolment` is the outcome metric
`public_cost`: per participant with enrolment date E, the cost over the `months` calendar
months after E's month (E in March 2024 and 12 months: April 2024 to March 2025; the
enrolment month itself is before the programme's effect). A person whose window ends after
the follow-up end's month has not been followed up for the whole window and is left out (not
counted as 0), so every person measured has the same window. `savings` is the measured saving the
share_of_savings rule pays a share of:

    savings = -(effect on cost per person) x persons treated

where the effect is observed minus counterfactual cost per person (negative = cheaper); the
effect, when a float from an estimator, is first rounded to 0.0001 (as share_of_savings
reads it), so the product is exact.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import polars as pl

COST_TYPES = ("benefit", "placement", "care", "other")
MONEY = pl.Decimal(18, 2)
COLUMNS = ("person_id", "month", "cost_type", "amount")
VALID_SCHEMA = {"person_id": pl.Utf8, "month": pl.Date, "cost_type": pl.Utf8, "amount": MONEY}


def _amount(value: object) -> tuple[Decimal | None, str | None]:
    if isinstance(value, float):
        raise TypeError("public cost amounts must be exact (Decimal, int or text), not float")
    text = str(value).strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None, "amount_not_a_number"
    if not d.is_finite():
        return None, "amount_not_a_number"
    if d != d.quantize(Decimal("0.01")):
        return None, "amount_more_than_two_decimals"
    return d.quantize(Decimal("0.01")), None


def validate(rows: pl.DataFrame, *, with_index: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, quarantined) in input order; quarantined rows keep their text and get
    `rule` and `detail` (with ``with_index``, both also get `_n`, the 0-based input row, so a
    pipeline can trace each back to its file and line)."""
    for c in COLUMNS:
        if c not in rows.columns:
            raise ValueError(f"public cost rows: column {c!r} missing")
    good, bad = [], []
    for n, row in enumerate(rows.select(COLUMNS).to_dicts()):
        if with_index:
            row["_n"] = n
        rule, detail, amount = None, None, None
        empty = [c for c in COLUMNS if row[c] is None or not str(row[c]).strip()]
        if empty:
            rule, detail = "missing_field", ", ".join(empty)
        elif row["month"].day != 1:
            rule, detail = "month_not_first_day", row["month"].isoformat()
        elif row["cost_type"].strip().lower() not in COST_TYPES:
            rule, detail = "unknown_cost_type", row["cost_type"]
        else:
            amount, rule = _amount(row["amount"])
            detail = None if rule is None else str(row["amount"])
        if rule is None:
            good.append({**row, "cost_type": row["cost_type"].strip().lower(), "amount": amount})
        else:
            text = None if row["amount"] is None else str(row["amount"])
            bad.append({**row, "amount": text, "rule": rule, "detail": detail})
    valid_schema = {**VALID_SCHEMA, **({"_n": pl.Int64} if with_index else {})}
    schema = {**valid_schema, "amount": pl.Utf8, "rule": pl.Utf8, "detail": pl.Utf8}
    return pl.DataFrame(good, schema=valid_schema), pl.DataFrame(bad, schema=schema)


def totals(
    costs: pl.DataFrame, persons: pl.Series | list[str], start: dt.date, end: dt.date
) -> pl.DataFrame:
    """person_id, cost_total (Decimal(18, 2)): each listed person's costs in the months from
    `start`'s month to `end`'s month, 0.00 when none."""
    first, last = start.replace(day=1), end.replace(day=1)
    summed = (
        costs.filter(pl.col("month").is_between(first, last))
        .group_by("person_id")
        .agg(pl.col("amount").sum().cast(MONEY).alias("cost_total"))
    )
    people = pl.DataFrame({"person_id": list(persons)}, schema={"person_id": pl.Utf8})
    return (
        people.join(summed, on="person_id", how="left")
        .with_columns(pl.col("cost_total").fill_null(Decimal("0.00")).cast(MONEY))
        .sort("person_id")
    )


def _add_months(month: dt.date, k: int) -> dt.date:
    total = month.year * 12 + month.month - 1 + k
    return dt.date(total // 12, total % 12 + 1, 1)


def after_enrolment(
    costs: pl.DataFrame, enrolment: pl.DataFrame, months: int, follow_up_end: dt.date
) -> tuple[pl.DataFrame, int]:
    """(person_id, cost_total Decimal(18, 2): each person's cost in the `months` months after
    the enrolment month; the number of persons left out because their window ends after
    `follow_up_end`'s month). `enrolment` holds person_id and enrolled_on; `costs` valid rows
    (`validate`)."""
    if months < 1:
        raise ValueError("months must be at least 1")
    last_month = follow_up_end.replace(day=1)
    parts, left_out = [], 0
    by_month = enrolment.with_columns(pl.col("enrolled_on").dt.truncate("1mo").alias("_month"))
    for (enrolled,), people in by_month.group_by("_month", maintain_order=True):
        first = _add_months(enrolled, 1)
        last = _add_months(first, months - 1)
        if last > last_month:
            left_out += people.height
            continue
        parts.append(totals(costs, people["person_id"], first, last))
    if not parts:
        return pl.DataFrame(schema={"person_id": pl.Utf8, "cost_total": MONEY}), left_out
    return pl.concat(parts).sort("person_id"), left_out


def savings(effect_per_person: Decimal | float | str, persons_treated: int) -> Decimal:
    """-(effect on cost per person) x persons treated, exact (a float effect is first
    rounded to 0.0001, half even). A cost increase gives negative savings."""
    if isinstance(persons_treated, bool) or not isinstance(persons_treated, int):
        raise TypeError("persons_treated must be a whole number")
    if persons_treated < 0:
        raise ValueError("persons_treated must be >= 0")
    if isinstance(effect_per_person, float):
        effect = Decimal(repr(effect_per_person)).quantize(
            Decimal("0.0001"), rounding=ROUND_HALF_EVEN
        )
    else:
        effect = Decimal(effect_per_person)
    return -effect * persons_treated
