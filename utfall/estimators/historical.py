"""Historical baseline: the treated series' baseline level or trend projected into the
measurement period (``historical``; the Rikers Island social impact bond's design).

Method, so that a validator can recompute it
============================================

Series y_t and time index t as in :mod:`utfall.estimators.its` (treated units' ratio of sums;
comparison units not used). Baseline periods B = periods before the treatment start;
measurement periods M = measurement-phase periods at or after it (n_B, n_M of them).

``baseline="level"``: y_t = b0 + e_t on B; ``"trend"``: y_t = b0 + b1 t + e_t on B (OLS).
Counterfactual CF = d'b with d = the mean of the regressors over M (the projection averaged
over the measurement periods); observed O = mean of y_t over M; estimate E = O - CF.

Uncertainty of the projection and of the measured mean (errors independent, variance
sigma^2 estimated from the baseline residuals with n_B - p df):

    Var(E) = sigma^2 (1 / n_M + d' (X_B' X_B)^-1 d)

i.e. the prediction variance of the mean of n_M new observations: with a trend it grows with
the distance from the baseline. Interval E +- t_{n_B - p} SE. Relative R = O / CF - 1, SE by
the delta method: Var(R) = sigma^2 [1 / (n_M CF^2) + O^2 d'(X'X)^-1 d / CF^4].
Serial correlation is not modelled (use ``its`` with HAC when the series is autocorrelated).

Refused: fewer than p + 2 baseline periods, no measurement period.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators import _panel
from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.its import treated_series
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "historical"


def historical(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Project the baseline into the measurement period (module docstring)."""
    from scipy import stats

    kind = design.parameters.get("baseline", "trend")
    s = treated_series(panel, METHOD)
    n = s.y.size
    base = np.arange(n) < s.t0
    meas = ~base & s.measurement
    x = np.column_stack([np.ones(n), s.t]) if kind == "trend" else np.ones((n, 1))
    k = x.shape[1]
    if base.sum() < k + 2:
        raise EstimationError(
            f"{METHOD}: {int(base.sum())} baseline period(s); a {kind} baseline needs at least "
            f"{k + 2}"
        )
    if not meas.any():
        raise EstimationError(f"{METHOD}: no measurement period at or after the treatment start")
    xb, yb = x[base], s.y[base]
    xtx_inv = np.linalg.inv(xb.T @ xb)
    b = xtx_inv @ xb.T @ yb
    resid = yb - xb @ b
    dfree = int(base.sum()) - k
    sigma2 = float(resid @ resid / dfree)
    d = x[meas].mean(axis=0)
    cf = float(d @ b)
    obs = float(np.mean(s.y[meas]))
    est = obs - cf
    n_m = int(meas.sum())
    lev = float(d @ xtx_inv @ d)
    se = math.sqrt(sigma2 * (1.0 / n_m + lev))
    q = _panel.t_quantile(design.confidence, dfree)
    rel_se = math.sqrt(sigma2 * (1.0 / (n_m * cf**2) + obs**2 * lev / cf**4)) if cf > 0 else None
    diagnostics = {
        "baseline": kind,
        "variance": "prediction variance of the measured mean (independent errors), t with "
        "n_B - p df",
        "df": dfree,
        "p_value": float(2 * stats.t.sf(abs(est / se), dfree)) if se > 0 else None,
        "coefficients": {"intercept": float(b[0]), "slope": float(b[1]) if k == 2 else None},
        "residual_sd": math.sqrt(sigma2),
        "n_baseline_periods": int(base.sum()),
        "n_measurement_periods": n_m,
        "series": [
            {"period_start": lab, "rate": float(v), "projection": float(f)}
            for lab, v, f in zip(s.labels, s.y, x @ b, strict=True)
        ],
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand="change against the projected baseline (mean over measurement periods)",
        estimate=est,
        std_error=se,
        ci=(est - q * se, est + q * se),
        observed=obs,
        n_treated=s.n_treated,
        n_comparison=0,
        diagnostics=diagnostics,
        rel_se=rel_se,
        df=dfree,
        warnings=s.warnings,
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    needs_comparison=False,
    estimand="ATT",
    fit=historical,
    parameters={
        "baseline": ParamSpec(
            "string",
            default="trend",
            choices=("level", "trend"),
            description="project the baseline's mean level or its linear trend",
        ),
    },
    published_diagnostics=frozenset(
        (
            "baseline",
            "variance",
            "df",
            "p_value",
            "coefficients",
            "residual_sd",
            "n_baseline_periods",
            "n_measurement_periods",
            "series",
            "warnings",
        )
    ),
    description="historical baseline (level or trend) projected into the measurement period",
)
