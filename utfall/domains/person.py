"""The estimators' ``person`` frame from a per-person outcome frame and participant rows, and
the flow of persons into it, per arm:

    enrolled (valid participant rows) = eligible + excluded (per eligibility criterion)
    eligible = analysed + dropped (no outcome; a covariate missing)

Eligibility (the participants source's plan key ``eligibility``: column -> inclusive
``min``/``max``) applies to both arms alike, before estimation. A person outside a bound, or
without the value, is excluded and counted under the first criterion they fail, in the
plan's order, so the counts add up. A column the outcome frame derives (e.g. a baseline
found in the lab rows when the participant row has none) is read from the outcome frame.
Dropped: the outcome missing (e.g. no follow-up sample in the window, or a participant the
outcome frame does not hold, such as one whose cost window is not complete) is counted
first, then each covariate in order; nothing is imputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

GROUPS = ((1, "treated"), (0, "comparison"))


def _first_failing(criteria: Mapping[str, Mapping[str, float]]) -> pl.Expr:
    """The name of the first criterion a row fails (null: eligible)."""
    reason = pl.lit(None, dtype=pl.Utf8)
    for column, bounds in reversed(list(criteria.items())):
        value = pl.col(column).cast(pl.Float64)
        ok = value.is_not_null()
        if bounds.get("min") is not None:
            ok = ok & (value >= float(bounds["min"]))
        if bounds.get("max") is not None:
            ok = ok & (value <= float(bounds["max"]))
        reason = pl.when(ok.fill_null(False)).then(reason).otherwise(pl.lit(column))
    return reason


def eligible_expr(criteria: Mapping[str, Mapping[str, float]]) -> pl.Expr:
    """True for a row that meets every criterion (column -> inclusive min/max)."""
    return _first_failing(criteria).is_null()


def _drop_reason(outcome: str, covariates: tuple[str, ...]) -> pl.Expr:
    reason = pl.lit(None, dtype=pl.Utf8)
    for c in reversed(covariates):
        reason = pl.when(pl.col(c).is_null()).then(pl.lit(f"covariate:{c}")).otherwise(reason)
    return pl.when(pl.col(outcome).is_null()).then(pl.lit("outcome")).otherwise(reason)


def person_flow(
    outcomes: pl.DataFrame,
    participants: pl.DataFrame,
    outcome: str,
    numeric: tuple[str, ...] = (),
    categorical: tuple[str, ...] = (),
    eligibility: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(frame, flow): the person frame of :func:`person_frame` of the eligible persons, and
    the flow per arm: {"arms": [{"group", "enrolled", "excluded": [{"criterion", "persons"}]
    (every criterion), "eligible", "dropped": [{"reason": "no_outcome" | "missing_covariate",
    "column", "persons"}] (no_outcome always, a covariate when it dropped anyone in either
    arm),
    "analysed"}]} (treated, then comparison)."""
    covariates = (*numeric, *categorical)
    criteria = dict(eligibility or {})
    needed = list(dict.fromkeys([*covariates, *criteria]))
    derived = [c for c in needed if c in outcomes.columns and c != outcome]
    joined = participants.select(
        "person_id", "treated", *[c for c in needed if c not in derived]
    ).join(
        outcomes.select("person_id", outcome, *derived),
        on="person_id",
        how="left",  # a participant the outcome frame lacks has no outcome: counted
        validate="1:1",
    )
    joined = joined.with_columns(
        _first_failing(criteria).alias("_excluded"),
        _drop_reason(outcome, covariates).alias("_drop"),
    )
    kept = joined.filter(pl.col("_excluded").is_null() & pl.col("_drop").is_null())
    frame = kept.select(
        pl.col("person_id").cast(pl.Utf8),
        pl.col("treated").cast(pl.Int8),
        pl.col(outcome).cast(pl.Float64).alias("y"),
        *[pl.col(c).cast(pl.Float64) for c in numeric],
        *[pl.col(c).cast(pl.Utf8) for c in categorical],
    ).sort("person_id")
    counts = []
    for flag, group in GROUPS:
        arm = joined.filter(pl.col("treated").cast(pl.Int8) == flag)
        eligible = arm.filter(pl.col("_excluded").is_null())
        excluded = dict(arm["_excluded"].drop_nulls().value_counts().iter_rows())
        drops = dict(eligible["_drop"].drop_nulls().value_counts().iter_rows())
        counts.append((group, arm.height, excluded, eligible, drops))
    # a covariate is listed in both arms when it dropped anyone in either
    dropping = [c for c in covariates if any(d.get(f"covariate:{c}") for *_, d in counts)]
    arms = []
    for group, enrolled, excluded, eligible, drops in counts:
        dropped = [{"reason": "no_outcome", "column": None, "persons": drops.get("outcome", 0)}]
        dropped += [
            {"reason": "missing_covariate", "column": c, "persons": drops.get(f"covariate:{c}", 0)}
            for c in dropping
        ]
        arms.append(
            {
                "group": group,
                "enrolled": enrolled,
                "excluded": [
                    {"criterion": c, "persons": int(excluded.get(c, 0))} for c in criteria
                ],
                "eligible": eligible.height,
                "dropped": [{**d, "persons": int(d["persons"])} for d in dropped],
                "analysed": int(eligible["_drop"].null_count()),
            }
        )
    return frame, {"arms": arms}


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
    frame, flow = person_flow(outcomes, participants, outcome, numeric, categorical)
    return frame, sum(a["enrolled"] - a["analysed"] for a in flow["arms"])
