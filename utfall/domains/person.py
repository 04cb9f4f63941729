"""The estimators' ``person`` frame from a per-person outcome frame and participant rows."""

from __future__ import annotations

import polars as pl


def person_frame(
    outcomes: pl.DataFrame,
    participants: pl.DataFrame,
    outcome: str,
    numeric: tuple[str, ...] = (),
    categorical: tuple[str, ...] = (),
) -> tuple[pl.DataFrame, int]:
    """(frame, dropped): person_id (Utf8), treated (Int8), y (Float64, the column `outcome`),
    the `numeric` covariates as Float64 and the `categorical` ones as Utf8 (the shape of
    utfall.estimators.base); persons whose outcome or a covariate is missing (e.g. no
    follow-up sample) are dropped and counted, never imputed. `participants` holds person_id,
    treated and the covariates; `outcomes` person_id and `outcome`. A covariate present in
    both is taken from `outcomes` (the derived value, e.g. a baseline found in the lab rows).
    """
    covariates = (*numeric, *categorical)
    derived = [c for c in covariates if c in outcomes.columns]
    joined = participants.select(
        "person_id", "treated", *[c for c in covariates if c not in derived]
    ).join(
        outcomes.select("person_id", outcome, *derived),
        on="person_id",
        how="inner",
        validate="1:1",
    )
    complete = pl.all_horizontal(pl.col(outcome, *covariates).is_not_null())
    frame = joined.filter(complete).select(
        pl.col("person_id").cast(pl.Utf8),
        pl.col("treated").cast(pl.Int8),
        pl.col(outcome).cast(pl.Float64).alias("y"),
        *[pl.col(c).cast(pl.Float64) for c in numeric],
        *[pl.col(c).cast(pl.Utf8) for c in categorical],
    )
    return frame.sort("person_id"), joined.height - frame.height
