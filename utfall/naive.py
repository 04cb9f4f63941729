"""The naive comparison beside every estimate: what a reader would get by comparing the
treated with the comparison group without the plan's method.

Why: participants of an outcome contract differ from those who did not take part (they
chose to, or were chosen), so a plain difference of means is biased; the report shows it
next to the method's estimate so a validator sees how much the adjustment moves the number
(and a demo on simulated data shows the naive figure missing the known truth).

Definitions, on the estimator's own input frame (the same persons or unit-periods):

* person data: mean y of the treated minus mean y of the comparison persons; standard
  error by Welch, sqrt(s1^2/n1 + s0^2/n0);
* unit-period panels with a comparison group: each unit's mean value over the measurement
  phase, then the treated units' mean minus the comparison units' mean (units are the
  clusters); Welch over units;
* otherwise (one group only, e.g. a historical baseline): None, since there is nothing to
  compare with.

The interval is normal-approximate at the plan's confidence. It is a description, not an
estimate the contract pays on.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl


def _welch(treated: pl.Series, comparison: pl.Series, confidence: float) -> dict[str, Any] | None:
    from scipy import stats

    n1, n0 = treated.len(), comparison.len()
    if n1 < 2 or n0 < 2:
        return None
    m1, m0 = float(treated.mean()), float(comparison.mean())
    se = math.sqrt(float(treated.var()) / n1 + float(comparison.var()) / n0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    estimate = m1 - m0
    return {
        "estimate": estimate,
        "std_error": se,
        "ci_low": estimate - z * se,
        "ci_high": estimate + z * se,
        "treated_mean": m1,
        "comparison_mean": m0,
        "n_treated": n1,
        "n_comparison": n0,
    }


def naive_comparison(frame: pl.DataFrame, shape: str, confidence: float) -> dict[str, Any] | None:
    """The naive difference for an estimator's input `frame` of data shape `shape`
    ("person" or a unit panel), or None when it has no comparison group."""
    if shape == "person":
        if not {"treated", "y"} <= set(frame.columns):
            return None
        out = _welch(
            frame.filter(pl.col("treated") == 1)["y"],
            frame.filter(pl.col("treated") == 0)["y"],
            confidence,
        )
        if out is not None:
            out["basis"] = "difference of the treated and comparison persons' mean outcome"
        return out
    if not {"group", "phase", "unit_id", "value"} <= set(frame.columns):
        return None
    units = (
        frame.filter(pl.col("phase") == "measurement", pl.col("value").is_not_nan())
        .group_by("unit_id", "group")
        .agg(pl.col("value").mean())
        .sort("unit_id")
    )
    out = _welch(
        units.filter(pl.col("group") == "treated")["value"],
        units.filter(pl.col("group") == "comparison")["value"],
        confidence,
    )
    if out is not None:
        out["basis"] = (
            "difference of the treated and comparison units' mean outcome in the measurement "
            "period (no baseline adjustment)"
        )
    return out
