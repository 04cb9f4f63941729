"""Participants: who entered the intervention (or the comparison group), when, when and why
they left, and the characteristics used for matching.

Input: one row per person

    person_id     Utf8          the person's pseudonym
    treated       0/1           1 = participant, 0 = comparison (text "1"/"0" accepted)
    enrolled_on   Date          enrolment (for comparison persons: their index date)
    exit_on       Date, null    the day they left the programme (null: still in, or comparison)
    exit_reason   Utf8, null    one of EXIT_REASONS, required exactly when exit_on is given
    age           integer       years at enrolment
    sex           Utf8          F or M (also K, kvinna, woman, female / man, male)
    any other column (clinic, office, baseline_hba1c, ...) is passed through unchanged.

Quarantine rules (first that applies): ``missing_field`` (person_id, treated, enrolled_on,
age or sex empty), ``treated_not_0_1``, ``exit_before_enrolment``, ``exit_without_reason``,
``reason_without_exit``, ``unknown_exit_reason``, ``unknown_sex``, ``age_out_of_range`` (outside
0-120), ``outside_eligibility`` (outside the plan's ``age_range`` or ``baseline_range`` on
``baseline_column``, both inclusive, when given), then ``duplicate_person`` (every row of a
person delivered more than once: which one is right cannot be told).

(``age_range``/``baseline_range`` quarantine; the pipeline does not use them: a plan's
eligibility is the participants source's ``eligibility`` key, which excludes and counts
persons of both arms in the report's flow, utfall.domains.person.person_flow.)
"""

from __future__ import annotations

import polars as pl

EXIT_REASONS = ("completed", "dropped_out", "moved", "died", "other")
SEX = {"f": "F", "k": "F", "kvinna": "F", "woman": "F", "female": "F"} | {
    "m": "M",
    "man": "M",
    "male": "M",
}
REQUIRED = ("person_id", "treated", "enrolled_on", "age", "sex")


def validate(
    rows: pl.DataFrame,
    *,
    age_range: tuple[int, int] | None = None,
    baseline_range: tuple[float, float] | None = None,
    baseline_column: str = "baseline_hba1c",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, quarantined): valid rows with treated Int8, age Int64, sex "F"/"M" (other
    columns as delivered), and the failing rows (as Utf8) with `rule` and `detail`."""
    frame = rows
    for c in ("exit_on", "exit_reason"):
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(c))
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"participant rows: column(s) {', '.join(missing)} missing")
    counts: dict[str, int] = {}
    for pid in frame["person_id"].to_list():
        counts[pid] = counts.get(pid, 0) + 1
    rules: list[tuple[str | None, str | None]] = []
    for row in frame.to_dicts():
        rules.append(_rule(row, counts, age_range, baseline_range, baseline_column))
    ok = pl.Series([r is None for r, _ in rules])
    valid = frame.filter(ok).with_columns(
        pl.col("treated").cast(pl.Utf8).str.strip_chars().cast(pl.Int8),
        pl.col("age").cast(pl.Int64),
        pl.col("sex").cast(pl.Utf8).str.strip_chars().str.to_lowercase().replace_strict(SEX),
        pl.col("exit_reason").cast(pl.Utf8),
    )
    bad = (
        frame.with_columns(
            rule=pl.Series([r for r, _ in rules], dtype=pl.Utf8),
            detail=pl.Series([d for _, d in rules], dtype=pl.Utf8),
        )
        .filter(~ok)
        .with_columns(pl.all().cast(pl.Utf8))
    )
    return valid, bad


def _rule(row, counts, age_range, baseline_range, baseline_column):
    empty = [c for c in REQUIRED if row[c] is None or not str(row[c]).strip()]
    if empty:
        return "missing_field", ", ".join(empty)
    if str(row["treated"]).strip() not in ("0", "1"):
        return "treated_not_0_1", str(row["treated"])
    exit_on, reason = row["exit_on"], row["exit_reason"]
    reason = None if reason is None or not str(reason).strip() else str(reason).strip()
    if exit_on is not None and exit_on < row["enrolled_on"]:
        return "exit_before_enrolment", f"{exit_on} < {row['enrolled_on']}"
    if exit_on is not None and reason is None:
        return "exit_without_reason", None
    if exit_on is None and reason is not None:
        return "reason_without_exit", reason
    if reason is not None and reason not in EXIT_REASONS:
        return "unknown_exit_reason", reason
    if str(row["sex"]).strip().lower() not in SEX:
        return "unknown_sex", str(row["sex"])
    try:
        age = int(str(row["age"]).strip())
    except ValueError:
        return "age_out_of_range", str(row["age"])
    if not 0 <= age <= 120:
        return "age_out_of_range", str(age)
    if age_range is not None and not age_range[0] <= age <= age_range[1]:
        return "outside_eligibility", f"age {age} outside {age_range[0]}-{age_range[1]}"
    if baseline_range is not None:
        value = row.get(baseline_column)
        if value is None or not baseline_range[0] <= float(value) <= baseline_range[1]:
            return (
                "outside_eligibility",
                f"{baseline_column} {value} outside {baseline_range[0]}-{baseline_range[1]}",
            )
    if counts[row["person_id"]] > 1:
        return "duplicate_person", f"{counts[row['person_id']]} rows"
    return None, None
