"""Difference in means for randomised designs (``diff_in_means``), optionally covariate-adjusted.

Estimand: the average treatment effect in the randomised cohort (ATE).

Unadjusted: E = mean(y | treated) - mean(y | comparison), the OLS coefficient of ``treated`` in
y ~ 1 + treated. Its HC2 variance equals Neyman's conservative variance
s1^2 / n1 + s0^2 / n0 exactly (s_g^2 the group's sample variance with n_g - 1).

Adjusted (``covariates`` non-empty; Lin 2013, "Agnostic notes on regression adjustments to
experimental data"): y ~ 1 + treated + Xc + treated:Xc with Xc the covariate terms centred at
their cohort means, so the coefficient of ``treated`` is the ATE and the intercept the
cohort mean of Y(0). HC2 covariance (Lin's recommendation); adjustment cannot make the
asymptotic variance worse, unlike the unadjusted-interaction-free regression (Freedman 2008).

Counterfactual CF = intercept (the cohort mean of Y(0)), observed O = CF + E (the cohort mean of
Y(1)); relative R = E / CF with the delta method on the HC2 covariance of (intercept, E).
Interval: t with n - p degrees of freedom (p coefficients), as statsmodels' ``conf_int``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators.base import Design, Estimator
from utfall.estimators.person_common import (
    COVARIATES,
    covariates,
    formula_check,
    ols_robust,
    one_blas_thread,
    ordered,
    parameters,
    persons,
    relative,
    result,
)
from utfall.estimators.result import EffectResult

METHOD = "diff_in_means"
PARAMS = {"covariates": COVARIATES}


def _fit(data: pl.DataFrame, design: Design) -> EffectResult:
    params = parameters(design, PARAMS)
    data = ordered(data)
    p = persons(data)
    cov = covariates(data, params["covariates"], "covariates")
    xc = cov.matrix - cov.matrix.mean(axis=0)
    n = p.d.size
    x = np.column_stack([np.ones(n), p.d, xc, xc * p.d[:, None]])
    names = ("Intercept", "treated", *cov.names, *(f"treated:{c}" for c in cov.names))
    beta, v, _ = ols_robust(x, p.y, names, "HC2", "diff_in_means")
    est, se = float(beta[1]), math.sqrt(v[1, 1])
    cf, obs = float(beta[0]), float(beta[0] + beta[1])
    # covariance of (O, CF) = (b0 + b1, b0)
    a = np.array([[1.0, 1.0], [1.0, 0.0]])
    s = a @ v[:2, :2] @ a.T
    rel = relative(obs, cf, s)
    warnings = []
    share = p.n_treated / n
    if cov.names and min(p.n_treated, p.n_comparison) < 2 * len(cov.names) + 2:
        warnings.append(
            "few persons per covariate term in the smaller group: the fully interacted "
            "adjustment may be unstable; use fewer covariates"
        )
    return result(
        method=METHOD,
        design=design,
        estimand="ATE",
        estimate=est,
        se=se,
        observed=obs,
        counterfactual=cf,
        rel=rel,
        n_treated=p.n_treated,
        n_comparison=p.n_comparison,
        df=float(n - x.shape[1]),
        diagnostics={
            "se_type": "HC2",
            "adjusted": bool(cov.names),
            "covariate_terms": list(cov.names),
            "treated_share": share,
            "mean_treated": float(p.y[p.d == 1].mean()),
            "mean_comparison": float(p.y[p.d == 0].mean()),
        },
        parameters=params,
        warnings=warnings,
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="person",
    estimand="ATE",
    fit=one_blas_thread(_fit),
    parameters=PARAMS,
    published_diagnostics=frozenset(
        (
            "se_type",
            "adjusted",
            "covariate_terms",
            "treated_share",
            "mean_treated",
            "mean_comparison",
            "relative_se",
            "df",
        )
    ),
    description="difference in means for randomised designs: Neyman (HC2) standard error, "
    "optional covariate adjustment fully interacted with treatment (Lin 2013)",
    check=formula_check((), ("covariates",)),
)
