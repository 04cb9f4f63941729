"""HbA1c outcomes of a diabetes-prevention cohort at 12 and 24 months, per participant.

Inputs: ``participants`` (person_id, enrolled_on, baseline_hba1c in mmol/mol, and whatever
covariates the plan uses) and the valid HbA1c rows of :func:`utfall.domains.hba1c.validate`
(person_id, sample_date, hba1c_mmol_mol).

Definitions:

* Baseline: the participant row's ``baseline_hba1c`` (the value eligibility was decided on).
  When it is empty, the latest sample on or before the enrolment day and at most
  ``window_days`` before it; none: the person has no baseline and no outcome.
* Follow-up at m months (m = 12, 24): the anniversary is the enrolment day plus m calendar
  months (29 February -> 28 February). The follow-up value is the sample nearest to the
  anniversary within +-``window_days`` (default 90) days; of two equally near, the earlier;
  several samples on that day: their mean. No sample in the window: the outcome is missing
  (null), never imputed; the estimators' person frame drops and counts such persons.
* Observed by a date (an interim payment period's ``through``): samples taken after it do
  not exist yet, and a follow-up whose window (anniversary + ``window_days``) ends after it
  is missing, not yet observed, rather than read from the part of its window that has passed.
* ``below_42_{m}m`` = 1 if the follow-up value < 42 mmol/mol (back below the 42-47 risk zone);
  ``progressed_48_{m}m`` = 1 if it is >= 48 mmol/mol (the type-2 diabetes threshold);
  ``change_{m}m`` = follow-up value - baseline (negative = improvement).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

MONTHS = (12, 24)
BELOW = 42.0
DIABETES = 48.0
OUTCOMES = tuple(f"{kind}_{m}m" for m in MONTHS for kind in ("below_42", "progressed_48", "change"))


def anniversary(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def outcomes(
    participants: pl.DataFrame,
    labs: pl.DataFrame,
    window_days: int = 90,
    observed_by: dt.date | None = None,
) -> pl.DataFrame:
    """One row per participant: person_id, baseline_hba1c and, for m in 12 and 24,
    hba1c_{m}m, sample_date_{m}m, below_42_{m}m, progressed_48_{m}m (Int8), change_{m}m
    (see the module docstring; nulls where no sample falls in the window, or, with
    `observed_by`, where the window ends after it)."""
    people = participants.select(
        "person_id", "enrolled_on", pl.col("baseline_hba1c").cast(pl.Float64)
    )
    if observed_by is not None:
        labs = labs.filter(pl.col("sample_date") <= observed_by)
    samples = (
        labs.group_by("person_id", "sample_date")
        .agg(pl.col("hba1c_mmol_mol").cast(pl.Float64).mean())
        .join(people.select("person_id", "enrolled_on"), on="person_id", how="inner")
    )
    latest = (
        samples.filter(
            (pl.col("sample_date") <= pl.col("enrolled_on"))
            & (pl.col("sample_date") >= pl.col("enrolled_on") - pl.duration(days=window_days))
        )
        .sort("person_id", "sample_date")
        .group_by("person_id")
        .agg(pl.col("hba1c_mmol_mol").last().alias("_lab_baseline"))
    )
    out = people.join(latest, on="person_id", how="left").with_columns(
        pl.coalesce("baseline_hba1c", "_lab_baseline").alias("baseline_hba1c")
    )
    for m in MONTHS:
        target = samples.with_columns(
            pl.col("enrolled_on")
            .map_elements(lambda d, m=m: anniversary(d, m), return_dtype=pl.Date)
            .alias("_target")
        ).with_columns(
            ((pl.col("sample_date") - pl.col("_target")).dt.total_days().abs()).alias("_dist")
        )
        nearest = (
            target.filter(pl.col("_dist") <= window_days)
            .sort("person_id", "_dist", "sample_date")
            .group_by("person_id", maintain_order=True)
            .first()
            .select(
                "person_id",
                pl.col("hba1c_mmol_mol").alias(f"hba1c_{m}m"),
                pl.col("sample_date").alias(f"sample_date_{m}m"),
            )
        )
        out = out.join(nearest, on="person_id", how="left")
        if observed_by is not None:
            window_end = {
                d: anniversary(d, m) + dt.timedelta(days=window_days)
                for d in out["enrolled_on"].unique().to_list()
                if d is not None
            }
            complete = pl.col("enrolled_on").replace_strict(
                window_end, default=None, return_dtype=pl.Date
            ) <= pl.lit(observed_by)
            out = out.with_columns(
                pl.when(complete).then(pl.col(c)).otherwise(None).alias(c)
                for c in (f"hba1c_{m}m", f"sample_date_{m}m")
            )
        value = pl.col(f"hba1c_{m}m")
        missing = value.is_null() | pl.col("baseline_hba1c").is_null()
        out = out.with_columns(
            pl.when(missing)
            .then(None)
            .otherwise(value < BELOW)
            .cast(pl.Int8)
            .alias(f"below_42_{m}m"),
            pl.when(missing)
            .then(None)
            .otherwise(value >= DIABETES)
            .cast(pl.Int8)
            .alias(f"progressed_48_{m}m"),
            pl.when(missing)
            .then(None)
            .otherwise(value - pl.col("baseline_hba1c"))
            .alias(f"change_{m}m"),
        )
    return out.drop("_lab_baseline", "enrolled_on").sort("person_id")


def summary(per_person: pl.DataFrame, by: str = "treated") -> pl.DataFrame:
    """Per group of `by`: persons, and for each outcome the number measured and the mean
    (a share for the 0/1 outcomes, the mean change in mmol/mol for change_*)."""
    aggs = [pl.len().alias("persons")]
    for o in OUTCOMES:
        aggs += [pl.col(o).count().alias(f"n_{o}"), pl.col(o).cast(pl.Float64).mean().alias(o)]
    return per_person.group_by(by).agg(aggs).sort(by)
