"""Inverse-probability weighting with normalised (Hajek) weights (``ipw``): ATT or ATE.

Propensity e(x) from the logit of ``treated`` on the plan's ``propensity`` formula
(:mod:`utfall.estimators.logit`). Weights and means::

    ATT:  treated w = 1,      comparison w = e / (1 - e)
    ATE:  treated w = 1 / e,  comparison w = 1 / (1 - e)
    mu1 = sum_T w y / sum_T w,   mu0 = sum_C w y / sum_C w,   E = mu1 - mu0

Observed O = mu1 (the treated mean for the ATT), counterfactual CF = mu0, relative R = E / CF.

Standard error (``inference="sandwich"``, the default): M-estimation with the logit's score
stacked on the two weighted-mean equations, theta = (b, mu1, mu0)::

    psi_i = [ x_i (d_i - e_i) ;  a_i (y_i - mu1) ;  b_i (y_i - mu0) ]
    ATT: a = d, b = (1 - d) e/(1 - e);   ATE: a = d/e, b = (1 - d)/(1 - e)

with the Jacobian J = mean dpsi/dtheta (derivatives of e/(1-e) and 1/e in b written out in
:func:`_influence`); the influence of person i is phi_i = -J^-1 psi_i and
Var(theta) = sum phi_i phi_i' / n^2. This accounts for the estimated propensity (ignoring it
would over-state the ATE's variance and can err either way for the ATT; Lunceford and
Davidian 2004). Interval: normal. The relative interval uses the joint influence of (mu1, mu0).

``inference="bootstrap"``: ``replications`` resamples of persons (seeded by
counterfactual.seed), each refitting the logit (two Newton steps from the full-sample fit,
see :mod:`utfall.estimators.bootstrap`)
and both means; SE = standard deviation of the replicate effects, interval = percentile
interval of the replicate effects (and of the replicate relative effects).

Effective sample size of each weighted group and its largest weight share are published.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators.base import Design, Estimator
from utfall.estimators.bootstrap import newton, pair_products, percentile_summary, replicates
from utfall.estimators.person_common import (
    PROPENSITY,
    formula_check,
    one_blas_thread,
    ordered,
    parameters,
    persons,
    relative,
    result,
)
from utfall.estimators.propensity import TRIM, fit_propensity, overlap, trimming_warnings
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "ipw"
ESTIMAND = ParamSpec(
    "string",
    default="ATT",
    choices=("ATT", "ATE"),
    description="effect on the treated (ATT) or on the whole cohort (ATE)",
)
INFERENCE = ParamSpec(
    "string",
    default="sandwich",
    choices=("sandwich", "bootstrap"),
    description="standard error: stacked M-estimation sandwich (accounts for the estimated "
    "propensity) or a person bootstrap refitting the propensity (seeded by counterfactual.seed)",
)
REPLICATIONS = ParamSpec(
    "integer",
    default=1000,
    minimum=100,
    maximum=100000,
    description="bootstrap replications (inference = bootstrap)",
)
PARAMS = {
    "propensity": PROPENSITY,
    "estimand": ESTIMAND,
    "trim": TRIM,
    "inference": INFERENCE,
    "replications": REPLICATIONS,
}


def weights(e: np.ndarray, d: np.ndarray, estimand: str) -> np.ndarray:
    """Unnormalised IPW weights (see the module docstring)."""
    if estimand == "ATT":
        return np.where(d == 1, 1.0, e / (1 - e))
    return np.where(d == 1, 1 / e, 1 / (1 - e))


def _means(e, d, y, estimand, f=None) -> tuple[float, float]:
    """Hajek means (mu1, mu0); ``f`` are frequency weights (bootstrap counts)."""
    w = weights(e, d, estimand) if f is None else weights(e, d, estimand) * f
    wt, wc = w * d, w * (1 - d)
    return float(wt @ y / wt.sum()), float(wc @ y / wc.sum())


def _influence(x, e, d, y, mu1, mu0, estimand) -> tuple[np.ndarray, np.ndarray]:
    """Influence of each person on (mu1, mu0) under the stacked estimating equations, / n."""
    n = d.size
    odds = e / (1 - e)
    if estimand == "ATT":
        a, b = d, (1 - d) * odds
        da = np.zeros_like(x)  # d a / d beta
    else:
        a, b = d / e, (1 - d) / (1 - e)
        da = (-d * (1 - e) / e)[:, None] * x
    # d b / d beta: d odds/d beta = odds x (ATT), d (1/(1-e))/d beta = e/(1-e) x (ATE): equal
    db = ((1 - d) * odds)[:, None] * x
    r1, r0 = y - mu1, y - mu0
    j_bb = -(x * (e * (1 - e))[:, None]).T @ x / n
    j_1b = (r1[:, None] * da).sum(axis=0) / n
    j_0b = (r0[:, None] * db).sum(axis=0) / n
    j_11, j_00 = -a.mean(), -b.mean()
    psi_b = x * (d - e)[:, None]
    phi_b = -np.linalg.solve(j_bb, psi_b.T).T
    phi1 = -(a * r1 + phi_b @ j_1b) / j_11
    phi0 = -(b * r0 + phi_b @ j_0b) / j_00
    return phi1 / n, phi0 / n


def _ids(data: pl.DataFrame, keep: np.ndarray):
    return data["person_id"].to_numpy()[keep] if "person_id" in data.columns else None


def _fit(data: pl.DataFrame, design: Design) -> EffectResult:
    params = parameters(design, PARAMS)
    data = ordered(data)
    p = persons(data)
    estimand = params["estimand"]
    ps = fit_propensity(data, p.d, params["propensity"], params["trim"])
    d, y, e, x = p.d[ps.keep], p.y[ps.keep], ps.fit.prob, ps.x
    w = weights(e, d, estimand)
    groups = {"comparison": w[d == 0]} | ({"treated": w[d == 1]} if estimand == "ATE" else {})
    diag, warnings = overlap(e, d, estimand, groups)
    mu1, mu0 = _means(e, d, y, estimand)
    est = mu1 - mu0
    phi1, phi0 = _influence(x, e, d, y, mu1, mu0, estimand)
    s = np.array([[phi1 @ phi1, phi1 @ phi0], [phi1 @ phi0, phi0 @ phi0]])
    se = math.sqrt(max(s[0, 0] + s[1, 1] - 2 * s[0, 1], 0.0))
    rel = relative(mu1, mu0, s)
    ci = rel_ci = None
    if params["inference"] == "bootstrap":
        products, start = pair_products(x), ps.fit.coef

        def stat(f):
            prob = newton(x, products, d, f, start)
            if estimand == "ATT":
                w1, w0 = f * d[:, None], f * (1 - d)[:, None] * prob / (1 - prob)
            else:
                w1, w0 = f * d[:, None] / prob, f * (1 - d)[:, None] / (1 - prob)
            with np.errstate(invalid="ignore", divide="ignore"):
                m1, m0 = (y @ w1) / w1.sum(axis=0), (y @ w0) / w0.sum(axis=0)
                return np.column_stack([m1 - m0, np.where(m0 > 0, m1 / m0 - 1, np.nan)])

        reps, failed = replicates(stat, d.size, params["replications"], design.seed)
        se, ci, rel_ci = percentile_summary(reps, design.confidence, mu0 > 0)
        diag["bootstrap_failed"] = failed
    warnings += trimming_warnings(ps.n_trimmed, params["trim"])
    diag |= {"n_trimmed": ps.n_trimmed, "logit_iterations": ps.fit.iterations}
    diag["se_type"] = "bootstrap percentile" if ci is not None else "M-estimation sandwich"
    return result(
        method=METHOD,
        design=design,
        estimand=estimand,
        estimate=est,
        se=se,
        observed=mu1,
        counterfactual=mu0,
        rel=rel,
        ci=ci,
        rel_ci=rel_ci,
        n_treated=int(d.sum()),
        n_comparison=int(d.size - d.sum()),
        diagnostics=diag,
        parameters=params,
        restricted={"person_id": _ids(data, ps.keep), "propensity": e, "weight": w},
        warnings=warnings,
    )


PUBLISHED = frozenset(
    (
        "propensity_treated",
        "propensity_comparison",
        "common_support",
        "outside_common_support",
        "ess_comparison",
        "ess_treated",
        "largest_weight_share_comparison",
        "largest_weight_share_treated",
        "n_trimmed",
        "logit_iterations",
        "se_type",
        "relative_se",
        "bootstrap_failed",
        "df",
    )
)

ESTIMATOR = Estimator(
    name=METHOD,
    data="person",
    estimand="ATT",
    fit=one_blas_thread(_fit),
    parameters=PARAMS,
    published_diagnostics=PUBLISHED,
    description="inverse-probability weighting with normalised (Hajek) weights from a logit "
    "propensity; sandwich SE that accounts for the estimated propensity, or a bootstrap",
    check=formula_check(("propensity",), ()),
)
