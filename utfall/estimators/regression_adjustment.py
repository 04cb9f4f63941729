"""Regression adjustment (``regression_adjustment``): y ~ 1 + treated + covariates by OLS.

Estimand: the coefficient of ``treated``, the average treatment effect if the effect is the
same for everyone (a constant-effect outcome model; with heterogeneous effects it is a
variance-weighted average, see Angrist 1998; use ``aipw`` or ``diff_in_means`` with covariates
for the ATE/ATT without that assumption).

Standard error: heteroskedasticity-robust, ``hc`` = HC1 by default (n / (n - p) times the White
sandwich, Stata's ``regress, robust``); HC0, HC2 and HC3 on request (formulas in
:mod:`utfall.estimators.person_common`). Interval: t with n - p degrees of freedom.

Counterfactual CF = the model's cohort mean of Y(0) = b0 + xbar'b_x (xbar the cohort means of
the covariate terms, held fixed); observed O = CF + E; relative R = E / CF, delta method on the
robust covariance of the coefficients (c = (1, 0, xbar) for CF).
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
from utfall.params import ParamSpec

METHOD = "regression_adjustment"
PARAMS = {
    "covariates": COVARIATES,
    "hc": ParamSpec(
        "string",
        default="HC1",
        choices=("HC0", "HC1", "HC2", "HC3"),
        description="heteroskedasticity-robust covariance: HC1 (Stata's robust) by default",
    ),
}


def _fit(data: pl.DataFrame, design: Design) -> EffectResult:
    params = parameters(design, PARAMS)
    data = ordered(data)
    p = persons(data)
    cov = covariates(data, params["covariates"], "covariates")
    n = p.d.size
    x = np.column_stack([np.ones(n), p.d, cov.matrix])
    names = ("Intercept", "treated", *cov.names)
    beta, v, _ = ols_robust(x, p.y, names, params["hc"], "regression_adjustment")
    est, se = float(beta[1]), math.sqrt(v[1, 1])
    c_cf = np.concatenate([[1.0, 0.0], cov.matrix.mean(axis=0)])
    c_obs = c_cf.copy()
    c_obs[1] = 1.0
    cf, obs = float(c_cf @ beta), float(c_obs @ beta)
    a = np.vstack([c_obs, c_cf])
    rel = relative(obs, cf, a @ v @ a.T)
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
            "se_type": params["hc"],
            "coefficients": {k: float(b) for k, b in zip(names, beta, strict=True)},
            "std_errors": {k: float(s) for k, s in zip(names, np.sqrt(np.diag(v)), strict=True)},
            "mean_treated": float(p.y[p.d == 1].mean()),
            "mean_comparison": float(p.y[p.d == 0].mean()),
        },
        parameters=params,
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
            "coefficients",
            "std_errors",
            "mean_treated",
            "mean_comparison",
            "relative_se",
            "df",
        )
    ),
    description="OLS of the outcome on treatment and covariates (constant-effect model) with a "
    "heteroskedasticity-robust standard error (HC1 by default)",
    check=formula_check((), ("covariates",)),
)
