"""Interrupted time series for one treated series without a comparison group (``its``).

Method, so that a validator can recompute it
============================================

Series: the treated units' rate per period, y_t = sum numerator / sum denominator over the
treated units (one treated unit: its rate). Comparison units are not used (a warning says
so). Time index t = periods since the first, in steps of the panel's period length (months
between period starts / the smallest gap); t_0 = the first period at or after the treatment
start (all treated units must share it). P_t = 1[t >= t_0].

Segmented regression (OLS, or GLS with AR(1) errors: see Variance below):

    y_t = b0 + b1 t + b2 P_t + b3 (t - t_0) P_t  [+ season dummies] + e_t

(``model="level"`` drops b3). ``seasonality``: "quarter" adds dummies for quarters 2-4 of
period_start, "month" for months 2-12, "none" none.

Effect: the mean over measurement periods at or after t_0 of b2 + b3 (t - t_0) = c'b.
Observed O = mean y_t over those periods; counterfactual CF = O - E. The relative effect
R = c'b / (d'b) with d the mean counterfactual regressors (b2 = b3 = 0) over the same
periods, SE by the delta method.

Variance, ``variance`` parameter:

``"ar1_reml"`` (the default): regression with AR(1) errors e_t = rho e_{t-1} + u_t, fitted by
feasible GLS. rho is the restricted (REML) maximum-likelihood estimate: it minimises

    l(rho) = (T - k)/2 log(RSS*(rho) / (T - k)) - 1/2 log(1 - rho^2) + 1/2 log det(X*'X*)

over rho in [-0.99, 0.99] (bounded Brent search), where X*, y* are the Prais-Winsten
transform (first row times sqrt(1 - rho^2), then x_t - rho x_{t-1}) and RSS* the GLS residual
sum of squares. REML removes most of the downward bias of the OLS-residual or ML estimate of
rho in short series with trend regressors (Cheang and Reinsel 2000, JASA 95:1173-1184).
Coefficients b = (X*'X*)^-1 X*'y*, Var(b) = s^2 (X*'X*)^-1 with s^2 = RSS*/(T - k). Because
rho is estimated, c'Var(b)c is itself noisy (in 48 quarters its coefficient of variation is
about 0.25, far above what T - k df imply), so the interval uses a t with Satterthwaite df
(Satterthwaite 1946; Giesbrecht and Burns 1985, as in lmerTest): df = 2 v^2 / (g' A g), with
v = c'Var(b)c, g its gradient in (s^2, rho) and A the inverse Hessian of the full restricted
negative log-likelihood in (s^2, rho), both by central differences. Measured
(scripts/study_panel.py, 48 quarters, 500 replicates): 95 % coverage 95.6 % with AR(1)
errors and 95.4 % with independent errors, bias under 0.3 % of the effect.

``"newey_west"``: OLS with Newey-West HAC, Bartlett kernel, weights 1 - j/(L+1), no
small-sample factor (statsmodels' ``cov_type="HAC"`` default, agreed to 1e-6 in the tests).
Lag rule: ``hac_lags`` if >= 0, else L = floor(4 (T/100)^(2/9)) (Newey and West 1994).
Interval: c'b +- t_{T-k} SE. Measured in the same study: the 95 % interval covered only about
80 % with AR(1) errors and 87 % with independent errors at the rule's 3 lags; the Bartlett HAC
of trend and post-period terms is biased down in short series. Fixed-b critical values
(Kiefer and Vogelsang 2005, Bartlett kernel, b = (L + 1)/T, their cubic approximation) did
not repair it in an off-line check of 2000 replicates (85 % and 90 %; their limit theory does
not cover a post-period indicator that is nonzero on the last quarter of the series only), so
they are not offered. Below 100 periods the result carries a warning.

Refused: fewer than 3 pre-periods, no post-period, a singular design (e.g. one post-period
with a slope change: use ``model="level"``), treated units starting at different times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from utfall.estimators import _panel
from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "its"


@dataclass(frozen=True)
class Series:
    labels: list[str]
    t: np.ndarray  # time index in periods
    y: np.ndarray
    t0: int  # index of the first treated period
    measurement: np.ndarray
    month: np.ndarray  # calendar month of each period_start
    n_treated: int
    warnings: list[str]


def treated_series(panel: pl.DataFrame, method: str) -> Series:
    """The treated units' aggregate rate per period (ratio of sums) and its time index."""
    p = _panel.load(panel, method)
    tr = p.treated[p.unit]
    if not tr.any():
        raise EstimationError(f"{method}: the panel has no treated unit")
    starts = {int(c) for c in p.cohort[p.treated]}
    if len(starts) > 1:
        raise EstimationError(
            f"{method}: treated units start at {len(starts)} different times; one series "
            "needs one start (use staggered)"
        )
    warnings = []
    n_comp = int(np.sum(~p.treated))
    if n_comp:
        warnings.append(f"{n_comp} comparison unit(s) are not used by {method}")
    per = np.unique(p.period[tr])
    num = np.bincount(p.period[tr], weights=(p.y * p.den)[tr], minlength=p.n_periods)
    den = np.bincount(p.period[tr], weights=p.den[tr], minlength=p.n_periods)
    counts = np.bincount(p.period[tr], minlength=p.n_periods)
    n_tr = int(p.treated.sum())
    if np.any(counts[per] != n_tr):
        warnings.append("some treated units lack rows in some periods: the series mixes units")
    months = np.array([d.year * 12 + d.month - 1 for d in p.periods])[per]
    gaps = np.diff(months)
    step = int(gaps.min()) if gaps.size else 1
    if step <= 0 or np.any(gaps % step):
        raise EstimationError(f"{method}: period starts are not evenly spaced")
    t = (months - months[0]) / step
    g = int(next(iter(starts)))
    t0 = int(np.searchsorted(per, g))
    return Series(
        labels=[str(p.periods[k]) for k in per],
        t=t.astype(float),
        y=num[per] / den[per],
        t0=t0,
        measurement=p.measurement[per],
        month=np.array([p.periods[k].month for k in per]),
        n_treated=n_tr,
        warnings=warnings,
    )


def season_dummies(month: np.ndarray, seasonality: str) -> np.ndarray:
    if seasonality == "none":
        return np.zeros((month.size, 0))
    key = (month - 1) // 3 if seasonality == "quarter" else month - 1
    levels = np.unique(key)
    return (
        np.column_stack([(key == v).astype(float) for v in levels[1:]])
        if levels.size > 1
        else (np.zeros((month.size, 0)))
    )


def newey_west_lags(n: int) -> int:
    return int(math.floor(4 * (n / 100) ** (2 / 9)))


def hac_cov(x: np.ndarray, resid: np.ndarray, lags: int) -> np.ndarray:
    """Newey-West (Bartlett) covariance of OLS coefficients, no small-sample factor."""
    xtx_inv = np.linalg.inv(x.T @ x)
    u = x * resid[:, None]
    s = u.T @ u
    for j in range(1, lags + 1):
        gam = u[j:].T @ u[:-j]
        s += (1 - j / (lags + 1)) * (gam + gam.T)
    return xtx_inv @ s @ xtx_inv


RHO_BOUND = 0.99


def prais_winsten(a: np.ndarray, rho: float) -> np.ndarray:
    """The AR(1) whitening transform of the rows of ``a`` (a vector or a matrix)."""
    return np.concatenate([math.sqrt(1 - rho * rho) * a[:1], a[1:] - rho * a[:-1]])


@dataclass(frozen=True)
class Ar1Fit:
    beta: np.ndarray
    vcov: np.ndarray
    rho: float
    df: float  # Satterthwaite df of c'b
    resid: np.ndarray  # untransformed residuals y - X b
    satterthwaite: bool  # False: the df could not be computed and are T - k - 1


def _gls(x, y, rho):
    xs, ys = prais_winsten(x, rho), prais_winsten(y, rho)
    beta = np.linalg.lstsq(xs, ys, rcond=None)[0]
    r = ys - xs @ beta
    return xs, beta, float(r @ r)


def ar1_reml(x: np.ndarray, y: np.ndarray, c: np.ndarray) -> Ar1Fit:
    """Feasible GLS with REML AR(1) errors and the Satterthwaite df of c'b (module docstring)."""
    from scipy import optimize

    n, k = x.shape
    tiny = 1e-300

    def profile(rho):
        xs, _, rss = _gls(x, y, rho)
        return 0.5 * (
            (n - k) * math.log(max(rss, tiny) / (n - k))
            - math.log(1 - rho * rho)
            + np.linalg.slogdet(xs.T @ xs)[1]
        )

    rho = float(
        optimize.minimize_scalar(
            profile, bounds=(-RHO_BOUND, RHO_BOUND), method="bounded", options={"xatol": 1e-10}
        ).x
    )
    xs, beta, rss = _gls(x, y, rho)
    s2 = rss / (n - k)
    vcov = s2 * np.linalg.inv(xs.T @ xs)
    v = float(c @ vcov @ c)
    df, satterthwaite = float(n - k - 1), False
    if s2 > 0 and v > 0:

        def full(th):  # restricted negative log-likelihood in (s^2, rho)
            xs_, _, rss_ = _gls(x, y, th[1])
            return 0.5 * (
                (n - k) * math.log(th[0])
                + rss_ / th[0]
                - math.log(1 - th[1] ** 2)
                + np.linalg.slogdet(xs_.T @ xs_)[1]
            )

        def quad(th):  # c'Var(b)c as a function of (s^2, rho)
            xs_ = prais_winsten(x, th[1])
            return th[0] * float(c @ np.linalg.solve(xs_.T @ xs_, c))

        th = np.array([s2, rho])
        h = np.array([1e-4 * s2, 1e-4])
        hess, grad = np.zeros((2, 2)), np.zeros(2)
        for i in range(2):
            ei = np.eye(2)[i] * h[i]
            grad[i] = (quad(th + ei) - quad(th - ei)) / (2 * h[i])
            for j in range(2):
                ej = np.eye(2)[j] * h[j]
                hess[i, j] = (
                    full(th + ei + ej)
                    - full(th + ei - ej)
                    - full(th - ei + ej)
                    + full(th - ei - ej)
                ) / (4 * h[i] * h[j])
        gag = (
            float(grad @ np.linalg.solve(hess, grad)) if np.all(np.linalg.eigvalsh(hess) > 0) else 0
        )
        if gag > 0:
            df, satterthwaite = min(max(2 * v * v / gag, 1.0), float(n - k - 1)), True
    return Ar1Fit(beta, vcov, rho, df, y - x @ beta, satterthwaite)


def its(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Segmented regression of the module docstring."""
    from scipy import stats

    prm = design.parameters
    model = prm.get("model", "level_and_slope")
    seasonality = prm.get("seasonality", "none")
    s = treated_series(panel, METHOD)
    n = s.y.size
    pre = np.arange(n) < s.t0
    post_any = ~pre
    if pre.sum() < 3:
        raise EstimationError(f"{METHOD}: {int(pre.sum())} pre-period(s); at least 3 are needed")
    if post_any.sum() == 0:
        raise EstimationError(f"{METHOD}: no period at or after the treatment start")
    tt0 = s.t[s.t0]
    pvec = post_any.astype(float)
    cols = [np.ones(n), s.t, pvec]
    names = ["intercept", "time", "level_change"]
    if model == "level_and_slope":
        cols.append((s.t - tt0) * pvec)
        names.append("slope_change")
    season = season_dummies(s.month, seasonality)
    x = np.column_stack([*cols, season])
    names += [f"season_{j + 2}" for j in range(season.shape[1])]
    k = x.shape[1]
    if np.linalg.matrix_rank(x) < k or n <= k:
        raise EstimationError(
            f"{METHOD}: singular design ({n} periods, {k} coefficients); with one post-period "
            "use model: level, or drop seasonality"
        )
    avg = post_any & s.measurement
    if not avg.any():
        raise EstimationError(f"{METHOD}: no measurement period at or after the treatment start")
    c = np.zeros(k)
    c[2] = 1.0
    if model == "level_and_slope":
        c[3] = float(np.mean(s.t[avg] - tt0))
    variance = prm.get("variance", "ar1_reml")
    lags = rho = None
    if variance == "ar1_reml":
        if n <= k + 1:
            raise EstimationError(
                f"{METHOD}: {n} periods leave no degree of freedom for the AR(1) error model "
                f"({k} coefficients and rho); use variance: newey_west or a simpler model"
            )
        fit = ar1_reml(x, s.y, c)
        beta, vcov, resid, dfree, rho = fit.beta, fit.vcov, fit.resid, fit.df, fit.rho
        variance_text = "AR(1) errors, REML rho, feasible GLS, t with Satterthwaite df"
    else:
        beta = np.linalg.lstsq(x, s.y, rcond=None)[0]
        resid = s.y - x @ beta
        lags = int(prm.get("hac_lags", -1))
        if lags < 0:
            lags = newey_west_lags(n)
        lags = min(lags, n - 1)
        vcov = hac_cov(x, resid, lags)
        dfree = n - k
        variance_text = "Newey-West HAC (Bartlett), t with T - k df"
    est = float(c @ beta)
    se = float(math.sqrt(max(c @ vcov @ c, 0.0)))
    q = _panel.t_quantile(design.confidence, dfree)
    obs = float(np.mean(s.y[avg]))
    d = x[avg].mean(axis=0)
    d[2 : 4 if model == "level_and_slope" else 3] = 0.0  # the counterfactual: no change terms
    cf_fit = float(d @ beta)
    rel_se = math.nan
    if cf_fit > 0:
        grad = c / cf_fit - est * d / cf_fit**2
        rel_se = float(math.sqrt(max(grad @ vcov @ grad, 0.0)))
    warnings = list(s.warnings)
    if variance == "ar1_reml" and fit.vcov.any():
        if not fit.satterthwaite:
            warnings.append(
                f"the Satterthwaite df could not be computed (rho {rho:.3f}: the restricted "
                f"likelihood is flat or at its bound); the interval uses {dfree:.0f} df and "
                "may be too narrow"
            )
        if abs(rho) > 0.9:
            warnings.append(
                f"AR(1) coefficient {rho:.3f}: the errors are close to a random walk, so the "
                "pre-period trend is a weak guide to the counterfactual"
            )
    if variance == "newey_west" and n < 100:
        warnings.append(
            f"{n} periods: Newey-West intervals are too narrow in series this short (95 % "
            "intervals covered about 80-85 % in simulation); read the interval as optimistic"
        )
    diagnostics = {
        "model": model,
        "seasonality": seasonality,
        "hac_lags": lags,
        "ar1_rho": rho,
        "variance": variance_text,
        "df": dfree,
        "p_value": float(2 * stats.t.sf(abs(est / se), dfree)) if se > 0 else None,
        "coefficients": [
            {"term": nm, "estimate": float(b), "std_error": float(math.sqrt(max(v, 0.0)))}
            for nm, b, v in zip(names, beta, np.diag(vcov), strict=True)
        ],
        "n_periods": n,
        "n_pre_periods": int(pre.sum()),
        "n_post_periods": int(post_any.sum()),
        "residual_sd": float(np.sqrt(resid @ resid / (n - k))),
        "series": [
            {"period_start": lab, "rate": float(v), "fitted": float(f)}
            for lab, v, f in zip(s.labels, s.y, x @ beta, strict=True)
        ],
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand="effect on the treated series (mean over measurement periods)",
        estimate=est,
        std_error=se,
        ci=(est - q * se, est + q * se),
        observed=obs,
        n_treated=s.n_treated,
        n_comparison=0,
        diagnostics=diagnostics,
        rel_se=rel_se,
        df=dfree,
        warnings=warnings,
    )


SEASONALITY = ParamSpec(
    "string",
    default="none",
    choices=("none", "quarter", "month"),
    description="calendar dummies for the season of period_start",
)

ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    needs_comparison=False,
    estimand="ATT",
    fit=its,
    parameters={
        "model": ParamSpec(
            "string",
            default="level_and_slope",
            choices=("level_and_slope", "level"),
            description="segmented regression with a level and a slope change, or a level "
            "change only",
        ),
        "seasonality": SEASONALITY,
        "variance": ParamSpec(
            "string",
            default="ar1_reml",
            choices=("ar1_reml", "newey_west"),
            description="AR(1) errors by REML with feasible GLS and Satterthwaite df (covers "
            "in short series), or OLS with Newey-West HAC (under-covers below ~100 periods)",
        ),
        "hac_lags": ParamSpec(
            "integer",
            default=-1,
            minimum=-1,
            description="Newey-West lags (variance = newey_west); -1 = floor(4 (T/100)^(2/9))",
        ),
    },
    published_diagnostics=frozenset(
        (
            "model",
            "seasonality",
            "hac_lags",
            "ar1_rho",
            "variance",
            "df",
            "p_value",
            "coefficients",
            "n_periods",
            "n_pre_periods",
            "n_post_periods",
            "residual_sd",
            "series",
            "warnings",
        )
    ),
    description="interrupted time series (segmented regression; AR(1) errors by REML, or "
    "Newey-West HAC)",
)
