"""Two-way fixed effects difference in differences on a unit x period panel (``twfe``).

Method, so that a validator can recompute it
============================================

Rows: unit u, period t, rate y_ut = numerator / denominator, row weight w_ut = denominator
(``weight="exposure"``) or 1 (``"equal"``). Treatment indicator D_ut = 1 when u is a treated
unit and t is at or after its first treated period (the first period_start >= its
treatment_start); comparison units are never treated. The ``phase`` column is not used: every
treated period enters the estimate (``staggered`` restricts it to measurement periods).
Weighted least squares of

    y_ut = alpha_u + lambda_t + beta D_ut + e_ut

Estimate E = beta; variance CR1 clustered by unit (Stata's ``xtreg, fe vce(cluster)``:
c = G/(G-1) (N-1)/(N-K), K = columns after absorbing the unit effects; formulas in
:mod:`utfall.estimators._fe`); interval E +- t_{G-1} SE. Agrees with statsmodels' WLS on the
within-transformed data with ``cov_type="cluster"`` to 1e-6 (tests/test_est_panel_twfe.py).

Observed O = weighted mean of y over treated rows with D = 1 (weights w_ut); counterfactual
CF = O - E; relative R = E / CF, SE by the delta method from the unit influences of E (the
cluster scores) and of O (w_ut (y_ut - O) / sum w over D = 1 rows), with the same CR1 factor.

Diagnostics: the event study by event time on any panel (:func:`event_time_study`), and the
weights TWFE puts on treated cells (de Chaisemartin and D'Haultfoeuille 2020): beta is a
weighted sum of the cell effects with weights proportional to the residual of D after the
fixed effects; with staggered adoption some can be negative, and then beta can have the
wrong sign when effects differ by cohort. A warning says so and points to ``staggered``.

Refused (EstimationError): fewer than 2 treated units (use ``synthetic_control``), fewer than
2 units never treated or treated later (no comparison), D collinear with the fixed effects
(no pre-period or no comparison).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators import _panel
from utfall.estimators._fe import fe_wls
from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.event_study import event_time_study
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "twfe"


def twfe(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Fit the TWFE DiD of the module docstring."""
    weight = design.parameters.get("weight", "exposure")
    p = _panel.load(panel, METHOD)
    treated_units = np.flatnonzero(p.treated & (p.cohort < p.n_periods))
    if treated_units.size < 2:
        raise EstimationError(
            f"{METHOD}: {treated_units.size} treated unit(s) observed after treatment start; "
            "a unit-clustered TWFE needs at least 2 (for one treated unit use synthetic_control "
            "or its)"
        )
    g_row = p.cohort[p.unit]
    d = ((g_row >= 0) & (p.period >= g_row)).astype(float)
    never = int(np.sum(p.cohort < 0))
    if np.all(d[p.treated[p.unit]] == 1.0) and never < 2:
        raise EstimationError(
            f"{METHOD}: no untreated rows to compare with: treated units have no pre-period and "
            f"{never} unit(s) are never treated"
        )
    w = p.row_weights(weight)
    fit = fe_wls(p.y, d[:, None], p.unit, p.period, w, p.n_units, p.n_periods, "treatment")
    est = float(fit.coef[0])
    se = math.sqrt(max(float(fit.vcov[0, 0]), 0.0))
    dfree = fit.n_clusters - 1
    q = _panel.t_quantile(design.confidence, dfree)
    on = d == 1.0
    obs = float(np.sum(w[on] * p.y[on]) / np.sum(w[on]))
    psi_o = np.bincount(p.unit[on], weights=w[on] * (p.y[on] - obs), minlength=p.n_units)
    psi_o = psi_o / np.sum(w[on]) * math.sqrt(fit.factor)
    rel_se = _panel.relative_se(est, obs, fit.scores[:, 0], psi_o)

    warnings: list[str] = []
    cohorts = sorted({int(c) for c in p.cohort[treated_units]})
    dt = fit.x_within[:, 0]
    cell_w = w[on] * dt[on]
    cell_w = cell_w / cell_w.sum()
    n_neg = int(np.sum(cell_w < -1e-12))
    if len(cohorts) > 1:
        warnings.append(
            f"treatment starts at {len(cohorts)} different times: TWFE weights cohorts by "
            "variance, not size, and is biased when effects differ across cohorts; compare "
            "with the staggered method"
        )
    if n_neg:
        warnings.append(
            f"{n_neg} treated unit-period cells get a negative weight in the TWFE estimate"
        )
    es = event_time_study(
        p.unit,
        p.period,
        [p.period_label(k) for k in range(p.n_periods)],
        p.y,
        w,
        p.cohort,
        design.confidence,
    )
    diagnostics = {
        "variance": "CR1 cluster-robust by unit (G/(G-1) (N-1)/(N-K)), t with G-1 df",
        "df": dfree,
        "p_value": float(2 * _t_sf(abs(est / se), dfree)) if se > 0 else None,
        "weight": weight,
        "n_units": p.n_units,
        "n_periods": p.n_periods,
        "n_rows": int(p.y.size),
        "n_treated_rows": int(on.sum()),
        "cohorts": [p.period_label(c) if c < p.n_periods else "after panel" for c in cohorts],
        "n_never_treated": never,
        "negative_weights": {"n_cells": n_neg, "share_of_treated_cells": n_neg / int(on.sum())},
        "event_study": es,
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand="ATT (variance-weighted, TWFE)",
        estimate=est,
        std_error=se,
        ci=(est - q * se, est + q * se),
        observed=obs,
        n_treated=treated_units.size,
        n_comparison=p.n_units - treated_units.size,
        diagnostics=diagnostics,
        rel_se=rel_se,
        df=dfree,
        warnings=warnings,
    )


def _t_sf(t: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.sf(t, df))


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    estimand="ATT",
    fit=twfe,
    parameters={
        "weight": ParamSpec(
            "string",
            default="exposure",
            choices=_panel.WEIGHTS,
            description="rows weighted by exposure (the rate's denominator) or equally",
        ),
    },
    published_diagnostics=frozenset(
        (
            "variance",
            "df",
            "p_value",
            "weight",
            "n_units",
            "n_periods",
            "n_rows",
            "n_treated_rows",
            "cohorts",
            "n_never_treated",
            "negative_weights",
            "event_study",
            "warnings",
        )
    ),
    description="two-way fixed effects DiD on a unit x period panel, CR1 by unit, event study",
)
