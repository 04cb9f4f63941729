"""Synthetic control for one treated aggregate unit (``synthetic_control``; Abadie, Diamond and
Hainmueller 2010).

Method, so that a validator can recompute it
============================================

Treated unit 1 (exactly one; aggregate several into one before), donors j = 1..J (the
comparison units observed in every period), rates Y_jt = numerator / denominator. Pre-periods:
before the treated unit's first treated period g; post-periods: measurement periods at or
after g.

1. Weights: w >= 0, sum w = 1, minimising the pre-period fit

       L(w) = (1/T0) sum_{t < g} (Y_1t - sum_j w_j Y_jt)^2
              + lambda sum_k ((X_1k - sum_j w_j X_jk) / s_k)^2

   where the optional predictors X_k (``predictors``: panel columns, averaged over the
   pre-periods) are scaled by their SD s_k across donors and weighted by lambda
   (``predictor_weight``). The predictor weights are fixed, not optimised (no nested V).
   Solver, exact: with M = [rows of donors] - [rows of treated] 1' (so M w is the residual
   for every w on the simplex), min ||M w||^2 on the simplex equals min_{u >= 0}
   ||M u||^2 + (1'u - 1)^2 (for u = s w the second term only scales), solved by Lawson and
   Hanson's active-set NNLS (finite termination at the optimum); w = u / 1'u. The KKT
   conditions (equal gradient on the support, not smaller off it) are checked in the tests
   and the result is compared with a second solver.
2. Gaps G_t = Y_1t - sum_j w_j Y_jt. Estimate E = mean of G_t over post-periods; observed
   O = mean Y_1t, counterfactual CF = O - E (the synthetic unit's mean), relative E / CF.
   Pre-RMSPE = sqrt(mean_{pre} G_t^2), post-RMSPE over post-periods; ratio = post/pre.
3. Placebo-in-space inference: every donor in turn is "treated", with the other donors as
   its pool (the real treated unit excluded); its post/pre RMSPE ratio rho_j. p-value =
   (1 + #{j: rho_j >= rho_1}) / (J + 1) (rank test; the smallest attainable is 1/(J+1)).
4. Interval (Firpo and Possebom 2018, test inversion with a constant effect tau and uniform
   weights on the permutations): under H0: effect = tau in every post-period the treated
   ratio is r(tau) = sqrt((Gbar - tau)^2 + v) / pre-RMSPE (v = the post gaps' population
   variance) and the placebo ratios do not change. tau is kept when p(tau) > 1 - confidence,
   i.e. when r(tau) <= rho_(m), the m-th largest placebo ratio with m the least integer
   with (1 + m) / (J + 1) > 1 - confidence. Closed form: Gbar +- sqrt(rho_(m)^2 pre^2 - v).
   With J + 1 < 1 / (1 - confidence) donors every tau is kept: the interval is infinite
   (stored as null, with a warning). If rho_(m)^2 pre^2 < v no constant effect is kept: the
   interval is empty (NaN, warning). The relative interval divides by CF (held fixed).
   ``std_error`` is the SD of the placebos' mean post gaps (a scale, not used for the CI).
5. Pre-fit: relative pre-RMSPE = pre-RMSPE / mean |Y_1t| over pre-periods. Above
   ``max_pre_rmspe`` the fit is too poor to trust: ``pre_fit="error"`` raises, ``"warn"``
   warns.

Deterministic: no random step. Donor weights and placebo ratios are per-unit detail and stay
in ``restricted``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators import _panel
from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "synthetic_control"


def simplex_weights(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a w - b|| over w >= 0, sum w = 1 (exact, module docstring step 1)."""
    from scipy import optimize

    m = a - b[:, None]
    scale = float(np.sqrt(np.mean(m**2))) or 1.0
    m = m / scale
    lhs = np.vstack([m, np.ones((1, m.shape[1]))])
    rhs = np.zeros(lhs.shape[0])
    rhs[-1] = 1.0
    try:
        u, _ = optimize.nnls(lhs, rhs, maxiter=50 * lhs.shape[1])
    except RuntimeError as exc:  # iteration limit
        raise EstimationError(f"{METHOD}: the weight solver did not converge ({exc})") from None
    s = u.sum()
    if not s > 0:
        raise EstimationError(f"{METHOD}: the weight solver returned no weight")
    return u / s


def _design_rows(y_pre: np.ndarray, x: np.ndarray | None, lam: float) -> np.ndarray:
    """Rows of the fit (units in columns): pre outcomes / sqrt(T0), scaled predictors."""
    rows = [y_pre.T / math.sqrt(y_pre.shape[1])]
    if x is not None and x.shape[1]:
        s = x[1:].std(axis=0)
        s = np.where(s > 0, s, 1.0)
        rows.append(math.sqrt(lam) * (x / s).T)
    return np.vstack(rows)


def _fit_one(rows: np.ndarray, y: np.ndarray, treated: int, donors: np.ndarray, pre, post):
    w = simplex_weights(rows[:, donors], rows[:, treated])
    synth = w @ y[donors]
    gap = y[treated] - synth
    pre_r = float(np.sqrt(np.mean(gap[pre] ** 2)))
    post_r = float(np.sqrt(np.mean(gap[post] ** 2)))
    return w, gap, pre_r, post_r


def synthetic_control(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Fit the synthetic control of the module docstring."""
    prm = design.parameters
    preds = tuple(c.strip() for c in str(prm.get("predictors", "") or "").split(",") if c.strip())
    p = _panel.load(panel, METHOD, extra=preds)
    treated = np.flatnonzero(p.treated)
    if treated.size != 1:
        raise EstimationError(
            f"{METHOD}: needs exactly one treated unit, the panel has {treated.size}; aggregate "
            "the treated units into one, or use twfe or staggered for several"
        )
    t1 = int(treated[0])
    g = int(p.cohort[t1])
    wide = p.wide()
    warnings: list[str] = []
    if np.isnan(wide[t1]).any():
        raise EstimationError(f"{METHOD}: the treated unit lacks rows for some periods")
    complete = ~np.isnan(wide).any(axis=1)
    dropped = int(np.sum(~complete & ~p.treated))
    if dropped:
        warnings.append(f"{dropped} donor(s) lack rows for some periods and are left out")
    donors = np.flatnonzero(complete & ~p.treated)
    pre = np.arange(p.n_periods) < g
    post = (np.arange(p.n_periods) >= g) & p.measurement
    if pre.sum() < 2:
        raise EstimationError(
            f"{METHOD}: {int(pre.sum())} pre-period(s) before treatment; at least 2 are needed"
        )
    if post.sum() == 0:
        raise EstimationError(f"{METHOD}: no measurement period at or after treatment start")
    if donors.size < 2:
        raise EstimationError(f"{METHOD}: {donors.size} donor unit(s); at least 2 are needed")
    x = None
    if preds:
        x = np.column_stack(
            [
                np.array(
                    [np.mean(p.extra[c][(p.unit == u) & pre[p.period]]) for u in range(p.n_units)]
                )
                for c in preds
            ]
        )
    lam = float(prm.get("predictor_weight", 1.0))
    y = np.nan_to_num(wide)
    order = np.concatenate([[t1], donors])
    rows_all = _design_rows(y[order][:, pre], None if x is None else x[order], lam)
    rows = np.zeros((rows_all.shape[0], p.n_units))
    rows[:, order] = rows_all
    w, gap, pre_r, post_r = _fit_one(rows, y, t1, donors, pre, post)
    ratio = post_r / pre_r if pre_r > 0 else math.inf
    est = float(np.mean(gap[post]))
    obs = float(np.mean(y[t1, post]))
    cf = obs - est
    rel_pre = pre_r / float(np.mean(np.abs(y[t1, pre])))
    limit = float(prm.get("max_pre_rmspe", 0.1))
    if rel_pre > limit:
        msg = (
            f"the synthetic unit fits the treated unit's pre-period poorly: pre-RMSPE is "
            f"{rel_pre:.1%} of its level (limit {limit:.1%}); add donors or predictors, or "
            "use another design"
        )
        if prm.get("pre_fit", "warn") == "error":
            raise EstimationError(f"{METHOD}: {msg}")
        warnings.append(msg)

    placebo_ratio, placebo_mean_gap = [], []
    for j in donors:
        pool = donors[donors != j]
        _, gj, pr, po = _fit_one(rows, y, int(j), pool, pre, post)
        placebo_ratio.append(po / pr if pr > 0 else math.inf)
        placebo_mean_gap.append(float(np.mean(gj[post])))
    rho = np.array(placebo_ratio)
    n_perm = donors.size + 1
    p_value = (1 + int(np.sum(rho >= ratio))) / n_perm
    alpha = 1.0 - design.confidence
    m = int(math.floor(alpha * n_perm - 1 + 1e-9)) + 1
    m = max(m, 0)
    gbar = est
    v = float(np.mean((gap[post] - gbar) ** 2))
    if m == 0:
        ci = (-math.inf, math.inf)
        warnings.append(
            f"{donors.size} donors: no placebo p-value can fall to {alpha:g}, so the interval "
            f"is unbounded; at least {math.ceil(1 / alpha) - 1} donors are needed"
        )
    else:
        crit = float(np.sort(rho)[::-1][m - 1])
        half2 = crit**2 * pre_r**2 - v
        if half2 < 0:
            ci = (math.nan, math.nan)
            warnings.append("no constant effect is consistent with the placebos at this level")
        else:
            ci = (gbar - math.sqrt(half2), gbar + math.sqrt(half2))
    rel_ci = (ci[0] / cf, ci[1] / cf) if cf > 0 else (math.nan, math.nan)
    if (
        np.mean(y[t1, pre]) > y[donors][:, pre].mean(axis=1).max()
        or np.mean(y[t1, pre]) < y[donors][:, pre].mean(axis=1).min()
    ):
        warnings.append(
            "the treated unit's pre-period mean lies outside the donors' range: no convex "
            "combination can match its level"
        )
    diagnostics = {
        "pre_rmspe": pre_r,
        "post_rmspe": post_r,
        "rmspe_ratio": ratio,
        "relative_pre_rmspe": rel_pre,
        "p_value": p_value,
        "rank": 1 + int(np.sum(rho > ratio)),
        "n_placebos": int(donors.size),
        "n_donors_with_weight": int(np.sum(w > 1e-6)),
        "max_donor_weight": float(w.max()),
        "n_pre_periods": int(pre.sum()),
        "n_post_periods": int(post.sum()),
        "predictors": list(preds),
        "interval": "Firpo-Possebom test inversion (constant effect, uniform weights)",
        "gaps": [
            {"period_start": p.period_label(k), "gap": float(gap[k]), "post": bool(post[k])}
            for k in range(p.n_periods)
        ],
    }
    restricted = {
        "donor_weights": {p.units[j]: float(wj) for j, wj in zip(donors, w, strict=True)},
        "placebo_ratios": {p.units[j]: float(r) for j, r in zip(donors, rho, strict=True)},
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand="effect on the treated unit (mean over post-periods)",
        estimate=est,
        std_error=float(np.std(placebo_mean_gap, ddof=1)) if donors.size > 1 else math.nan,
        ci=ci,
        rel_ci=rel_ci,
        observed=obs,
        n_treated=1,
        n_comparison=int(donors.size),
        diagnostics=diagnostics,
        restricted=restricted,
        warnings=warnings,
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    estimand="ATT",
    fit=synthetic_control,
    parameters={
        "predictors": ParamSpec(
            "string",
            default="",
            description="comma-separated numeric panel columns matched besides the pre-period "
            "outcomes (their pre-period means, scaled by the donors' SD)",
        ),
        "predictor_weight": ParamSpec(
            "number",
            default=1.0,
            minimum=0.0,
            description="weight of the predictors against the mean squared pre-period gap",
        ),
        "max_pre_rmspe": ParamSpec(
            "number",
            default=0.1,
            minimum=0.0,
            description="largest acceptable pre-period RMSPE as a share of the treated level",
        ),
        "pre_fit": ParamSpec(
            "string",
            default="warn",
            choices=("warn", "error"),
            description="what a pre-period fit above max_pre_rmspe does",
        ),
    },
    published_diagnostics=frozenset(
        (
            "pre_rmspe",
            "post_rmspe",
            "rmspe_ratio",
            "relative_pre_rmspe",
            "p_value",
            "rank",
            "n_placebos",
            "n_donors_with_weight",
            "max_donor_weight",
            "n_pre_periods",
            "n_post_periods",
            "predictors",
            "interval",
            "gaps",
            "warnings",
        )
    ),
    description="synthetic control for one treated aggregate unit, placebo-in-space inference",
)
