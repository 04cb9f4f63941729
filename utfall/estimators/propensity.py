"""Propensity scores for the person-level estimators (``ipw``, ``aipw``, ``psm``): the logit
from the plan's ``propensity`` formula, optional trimming, and the overlap checks.

Overlap is judged on the persons the estimand averages over (the treated for the ATT, everyone
for the ATE) against the common support [max(min e_T, min e_C), min(max e_T, max e_C)] of the
fitted propensities e:

* error (no answer): fewer than half of those persons inside the common support, or an
  effective sample size (sum w)^2 / sum w^2 of the weighted comparison (or, for the ATE, either
  arm) below 2 persons;
* warning (the report shows it): any of them outside the common support; an effective sample
  size below 10 % of the group; one person carrying more than 10 % of a group's weight.

Trimming (``trim`` = a > 0, Crump et al. 2009 style): persons with e outside [a, 1 - a] are
removed and the propensity model is refitted on the rest; the estimand is then the effect in
the trimmed population, which the result's warnings say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from utfall.estimators.base import EstimationError
from utfall.estimators.formula import design_matrix, parse
from utfall.estimators.logit import LogitFit, fit_logit
from utfall.estimators.person_common import MIN_PER_GROUP
from utfall.params import ParamSpec

TRIM = ParamSpec(
    "number",
    default=0.0,
    minimum=0.0,
    maximum=0.2,
    description="drop persons whose propensity is below trim or above 1 - trim and refit "
    "(0 = no trimming); changes the estimand to the trimmed population",
)


@dataclass(frozen=True)
class Propensity:
    """The fitted model, its design matrix (intercept first) and the kept rows' mask."""

    fit: LogitFit
    x: np.ndarray
    names: tuple[str, ...]
    keep: np.ndarray  # bool over the input rows
    n_trimmed: int


def propensity_design(data: pl.DataFrame, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """[1, terms of the propensity formula] as a float64 matrix, and the column names."""
    if not (text or "").strip():
        raise EstimationError(
            "parameter propensity: give the right-hand side of the propensity model, e.g. "
            "'age + I(age**2) + C(educ)'"
        )
    dm = design_matrix(data, parse(text, "propensity"))
    x = np.column_stack([np.ones(data.height), dm.matrix])
    return x, ("Intercept", *dm.names)


def fit_propensity(data: pl.DataFrame, d: np.ndarray, text: str, trim: float) -> Propensity:
    """Fit the logit; with ``trim`` > 0 drop persons outside [trim, 1 - trim] and refit."""
    x, names = propensity_design(data, text)
    fit = fit_logit(x, d, names)
    keep = np.ones(d.size, dtype=bool)
    if trim > 0:
        keep = (fit.prob >= trim) & (fit.prob <= 1 - trim)
        n1, n0 = int(d[keep].sum()), int((1 - d[keep]).sum())
        if min(n1, n0) < MIN_PER_GROUP:
            raise EstimationError(
                f"trimming at {trim} leaves {n1} treated and {n0} comparison persons; the "
                f"groups do not overlap enough: lower trim or change the cohort"
            )
        if not keep.all():
            fit = fit_logit(x[keep], d[keep], names)
    return Propensity(fit, x[keep], names, keep, int((~keep).sum()))


def ess(w: np.ndarray) -> float:
    """Kish's effective sample size of weights."""
    s = w.sum()
    return float(s * s / np.sum(w * w)) if s > 0 else 0.0


def overlap(
    e: np.ndarray, d: np.ndarray, estimand: str, weights: dict[str, np.ndarray]
) -> tuple[dict, list[str]]:
    """Overlap diagnostics and warnings; raises EstimationError if there is none to speak of.

    ``weights`` maps a group label ("comparison", "treated") to its persons' weights.
    """
    t, c = e[d == 1], e[d == 0]
    lo, hi = max(t.min(), c.min()), min(t.max(), c.max())
    target = t if estimand == "ATT" else e
    outside = int(np.sum((target < lo) | (target > hi)))
    share_inside = 1 - outside / target.size
    diag = {
        "propensity_treated": _quantiles(t),
        "propensity_comparison": _quantiles(c),
        "common_support": [float(lo), float(hi)],
        "outside_common_support": outside,
    }
    who = "treated persons" if estimand == "ATT" else "persons"
    if share_inside < 0.5:
        raise EstimationError(
            f"no common support: only {share_inside:.0%} of the {who} have a propensity "
            f"within the range of the other group ({lo:.3f} to {hi:.3f}); the groups are not "
            f"comparable on these covariates, so no comparison-based effect can be estimated"
        )
    warnings = []
    if outside:
        warnings.append(
            f"{outside} {who} lie outside the common support of the propensity "
            f"({lo:.3f} to {hi:.3f}); their counterfactual is extrapolated"
        )
    for label, w in weights.items():
        n_eff, largest = ess(w), float(w.max() / w.sum())
        diag[f"ess_{label}"] = n_eff
        diag[f"largest_weight_share_{label}"] = largest
        if n_eff < MIN_PER_GROUP:
            raise EstimationError(
                f"no usable overlap: the weighted {label} group has an effective sample size "
                f"of {n_eff:.1f} persons; the few {label} persons who resemble the other group "
                f"carry all the weight. Use trimming or a cohort with comparable groups"
            )
        if n_eff < 0.1 * w.size:
            warnings.append(
                f"weak overlap: the weighted {label} group's effective sample size is "
                f"{n_eff:.0f} of {w.size} persons"
            )
        if largest > 0.1:
            warnings.append(
                f"weak overlap: one {label} person carries {largest:.0%} of the group's weight"
            )
    return diag, warnings


def _quantiles(v: np.ndarray) -> dict:
    q = np.quantile(v, [0.0, 0.01, 0.5, 0.99, 1.0])
    return dict(zip(("min", "p01", "median", "p99", "max"), map(float, q), strict=True))


def trimming_warnings(n_trimmed: int, trim: float) -> list[str]:
    """The warning a report shows when trimming changed the population the effect is for."""
    if not n_trimmed:
        return []
    return [
        f"{n_trimmed} persons with a propensity outside [{trim}, {1 - trim}] were trimmed: "
        "the effect is for the remaining population"
    ]
