"""Two-group difference-in-differences on a unit-level panel, clustered at the unit.

Method (``did_2x2``), written so that a validator can recompute every number by hand
====================================================================================

Input: one row per unit u and period t (a quarter), with ``numerator`` N_ut (e.g. extent-weighted
short-term sick days), ``denominator`` D_ut > 0 (e.g. average headcount), ``group`` (treated /
comparison) and ``phase`` (baseline / measurement). The rate of a unit-quarter is N_ut / D_ut.

1. Unit levels (ratio estimator). For unit u and phase p (b = baseline, m = measurement)::

       L_up = sum_{t in p} N_ut / sum_{t in p} D_ut

   i.e. the denominator-weighted mean of the unit's quarterly rates: "outcome per employee per
   quarter". Unit change: Delta_u = L_um - L_ub.
   Units with rows in only one phase are excluded (listed in ``diagnostics["excluded_units"]``).

2. Unit weights. ``weight="denominator"``: w_u = mean of D_ut over all the unit's rows (both
   phases); ``weight=None``: w_u = 1. Within group g, a_u = w_u / sum_{v in g} w_v.

3. Group means (same weights everywhere)::

       T_b = sum_T a_u L_ub,  T_m = sum_T a_u L_um,  T_D = T_m - T_b   (treated)
       C_b, C_m, C_D = C_m - C_b                                          (comparison)

   Estimate        E  = T_D - C_D
   Counterfactual  CF = T_b + C_D   (treated baseline level moved by the comparison change)
   Observed        O  = T_m          (so E = O - CF)
   Relative        R  = E / CF

4. Standard error: cluster-robust at unit level, groups independent, CR2 (Bell and McCaffrey's
   bias-reduced linearization). A weighted group mean xbar = sum_g a_u x_u is the WLS fit of x on
   an intercept with weights w_u; unit u's leverage is h_u = a_u, and CR2 inflates its residual
   by 1/sqrt(1 - h_u)::

       V(x; g) = sum_g a_u^2 (x_u - xbar)^2 / (1 - a_u)

   which is exactly unbiased when Var(x_u) is proportional to 1/w_u (the working model), and
   equals s^2/G (the Welch t-test's variance) when weights are equal. V_E = V(Delta; T) +
   V(Delta; C), SE = sqrt(V_E). The CR1 variance (G/(G-1) sum a_u^2 (x_u - xbar)^2), which
   under-states the variance with unequal weights, is kept in ``diagnostics["cr1"]`` for
   comparison.

5. Degrees of freedom: Welch-Satterthwaite over the two groups::

       df = (V_T + V_C)^2 / (V_T^2 / nu_T + V_C^2 / nu_C)

   where nu_g is the Bell-McCaffrey (Satterthwaite) df of the CR2 variance V(.; g) under the
   same working model (Var(x_u) = sigma^2 / w_u). With c_u = a_u^2 / (1 - a_u)::

       nu_g = 1 / ( sum_u c_u^2 [(1/a_u - 1)^2 - 1] + (sum_u c_u)^2 )

   (the closed form of tr(A S)^2 / tr((A S)^2) for this quadratic form). With equal weights
   nu_g = G - 1 exactly (the textbook Welch t-test); with unequal weights nu_g < G - 1 (fewer
   effective clusters). CI: E +- t_{(1+confidence)/2, df} * SE.

   ``inference="randomization"`` replaces the interval of E (not its SE) by randomization
   inference over the assignment of units to treatment, see 8; ``inference="wild_bootstrap"``
   by a restricted wild cluster bootstrap, see 11.

6. Relative effect, delta method with unit-level influence. The gradient of R = E / CF in
   (T_b, T_D, C_D) is  g_Tb = -E/CF^2,  g_TD = 1/CF,  g_CD = -O/CF^2.  Unit influences::

       treated u:     psi_u = a_u * [ g_Tb (L_ub - T_b) + g_TD (Delta_u - T_D) ]
       comparison u:  psi_u = a_u *   g_CD (Delta_u - C_D)

   (treated baseline level and treated change covary through the shared units; the comparison
   group is independent). V_R = sum_T psi_u^2 / (1 - a_u) + sum_C psi_u^2 / (1 - a_u) (CR2), and the
   df use the same Welch-Satterthwaite formula with the relative components (the per-group nu_g
   are the same, because psi is again a weighted-mean residual). CI: R +- t * SE_R.
   If CF <= 0 the relative numbers are NaN.

7. Pre-trend test (baseline rows only, the same units and weights as the estimate). For each
   unit, the slope beta_u of its quarterly rate on a time index in quarters
   (year*4 + (month-1)/3 of ``period_start``), fitted by least squares weighted by D_ut; units
   with fewer than two baseline quarters get no slope. The difference of weighted mean slopes
   (treated - comparison) is tested with the same machinery as in 4-5 (a Welch t-test when
   weights are equal). Reported: slope difference (outcome units per quarter), SE, t, df,
   two-sided p-value. ``diagnostics["period_means"]`` also lists, per quarter, the weighted mean
   rate of each group (unit weights w_u) and their difference, for plotting.

8. Randomization inference (``inference="randomization"``). The statistic is the estimate
   itself, E(d) = sum_u d_u a_u(d) Delta_u - sum_u (1 - d_u) a_u(d) Delta_u for an assignment d
   of G_T of the G units to treatment (a_u(d) the weights normalised within the assigned
   groups). Assignments: all C(G, G_T) when that is at most 20 000 (exact), else the observed
   one plus 9 999 drawn uniformly with ``numpy.random.default_rng(seed)``. Under the sharp null
   "every treated unit's change is shifted by tau", the adjusted changes Delta_u - tau d_u are
   exchangeable across assignments, so

       p(tau) = #{assignments d: |E_d(tau)| >= |E_obs(tau)|} / #assignments

   (the observed one counted; E_d(tau) = E_d(Delta) - tau E_d(d_obs), E_obs(tau) = E - tau).
   ``diagnostics["randomization"]["p_value"]`` is p(0); the interval {tau: p(tau) > 1 -
   confidence} is found by bisection outwards from E (where p = 1), to 1e-9 of the analytic
   SE. It replaces ci_low/ci_high; the analytic ones stay in ``diagnostics["analytic"]``. The
   relative interval stays the delta method's. With few units the smallest attainable p-value
   is 1/#assignments: at 2 + 2 units (6 assignments) no 95 % interval is finite (reported as
   infinite, stored as null).

9. Event study (``diagnostics["event_study"]``): one coefficient per quarter relative to the
   last baseline quarter, unit and quarter fixed effects, CR2 by unit, and a joint test of the
   baseline coefficients; formulas in :mod:`utfall.estimators.event_study`.

10. Scale (``scale="relative"``): parallel trends in ratios instead of levels. With the group
   means of step 3, theta = log(T_m / T_b) - log(C_m / C_b) (ratio of weighted means, unit
   levels as in 1). Relative effect R = exp(theta) - 1; counterfactual CF = T_b C_m / C_b;
   estimate E = T_m - CF. SE of theta by the delta method with unit influences
   a_u [(L_um - T_m)/T_m - (L_ub - T_b)/T_b] (treated; the same for comparison), CR2 and the
   df of step 5; relative CI = exp(theta +- t SE) - 1 (asymmetric). The CI of E: delta method,
   influences a_u [(L_um - T_m) - rho (L_ub - T_b)] (treated) and
   -(T_b / C_b) a_u [(L_um - C_m) - rho (L_ub - C_b)] (comparison), rho = C_m / C_b. NaN when
   a group mean level is <= 0. The scale not chosen is reported in
   ``diagnostics["scale_sensitivity"]``; with randomization inference on the relative scale
   the statistic is theta and the null multiplies treated measurement levels by exp(tau).

11. Wild cluster bootstrap (``inference="wild_bootstrap"``, absolute scale only): the restricted
   wild cluster bootstrap (WCR; Cameron, Gelbach and Miller 2008) at the unit level. The estimate
   is the WLS fit of Delta_u = alpha + E d_u + e_u (weights w_u; d_u = 1 for treated units). For a
   null value tau the restricted fit imposes E = tau: alpha_r = sum_u w_u (Delta_u - tau d_u) /
   sum_u w_u, restricted residuals e_u(tau) = Delta_u - tau d_u - alpha_r. Each bootstrap draw
   multiplies every unit's residual by one weight v_u: Delta*_u = alpha_r + tau d_u + v_u e_u(tau),
   and recomputes E* (step 3) and SE* (the same CR2 variance, step 4), t* = (E* - tau) / SE*.
   With G = G_T + G_C units, v_u is Webb's six-point distribution (+-sqrt(1/2), +-1, +-sqrt(3/2),
   each 1/6) when G < 12, else Rademacher (+-1, each 1/2). Draws: 9 999 with
   ``numpy.random.default_rng(seed)`` (one matrix drawn once and used for every tau), except
   that all 2^G Rademacher sign vectors are enumerated when 2^G <= 9 999. Then

       p(tau) = #{draws: |t*| >= |t(tau)|} / #draws,   t(tau) = (E - tau) / SE

   ``diagnostics["wild_bootstrap"]["p_value"]`` is p(0); the interval {tau: p(tau) > 1 -
   confidence} is found by bisection outwards from E, as in 8. It replaces ci_low/ci_high; the
   analytic ones stay in ``diagnostics["analytic"]``; the relative interval stays the delta
   method's. With Rademacher weights v and -v give the same |t*|, so enumeration at G = 12 gives
   2 048 distinct values. Not exact with few units: at 4 + 4 units (tests/test_did.py) the 95 %
   interval covered about 93 % and the 5 % test rejected 6-8 % of null panels.

Deterministic: the only randomness is the seeded draw of assignments in 8 and of bootstrap
weights in 11.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from utfall.errors import MeasurementError
from utfall.estimators.base import Design, Estimator
from utfall.estimators.event_study import event_study
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

__all__ = [
    "did_2x2",
    "REQUIRED_COLUMNS",
    "INFERENCE",
    "SCALES",
    "MAX_EXACT_ASSIGNMENTS",
    "N_BOOTSTRAP",
    "WEBB_BELOW",
]

REQUIRED_COLUMNS = ("unit_id", "group", "period_start", "phase", "numerator", "denominator")
_GROUPS = ("treated", "comparison")
_PHASES = ("baseline", "measurement")
METHOD = "did_2x2"
INFERENCE = ("analytic", "randomization", "wild_bootstrap")
SCALES = ("absolute", "relative")
MAX_EXACT_ASSIGNMENTS = 20_000
N_SAMPLED_ASSIGNMENTS = 10_000  # the observed one + 9 999 draws
FEW_TREATED = 5  # below this many treated units, analytic inference gets a warning
N_BOOTSTRAP = 9_999  # wild bootstrap draws (fewer when all Rademacher sign vectors are enumerated)
WEBB_BELOW = 12  # fewer clusters (units) than this: Webb six-point weights, else Rademacher
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


@dataclass(frozen=True)
class _WMean:
    """Weighted mean of a unit-level quantity within one group, with its CR2 variance."""

    mean: float
    var: float  # CR2: sum a_u^2 (x_u - mean)^2 / (1 - a_u)
    df: float  # Bell-McCaffrey df of ``var`` (G-1 with equal weights)
    var_cr1: float  # G/(G-1) * sum a_u^2 (x_u - mean)^2, for comparison only


def _cr2_factor(a: np.ndarray) -> np.ndarray:
    """a_u^2 / (1 - a_u): the CR2 weight of unit u's squared residual (leverage h_u = a_u)."""
    return a**2 / (1.0 - a)


def _bm_df(a: np.ndarray) -> float:
    """Bell-McCaffrey df of the CR2 variance of a weighted mean with normalised weights ``a``,
    working model Var(x_u) = sigma^2 / w_u (module docstring, step 5)."""
    c = _cr2_factor(a)
    q = float(np.sum(c**2 * ((1.0 / a - 1.0) ** 2 - 1.0)) + np.sum(c) ** 2)
    return 1.0 / q


def _wmean(x: np.ndarray, w: np.ndarray) -> _WMean:
    a = w / w.sum()
    mean = float(a @ x)
    g = x.size
    resid2 = (x - mean) ** 2
    var = float(np.sum(_cr2_factor(a) * resid2))
    var_cr1 = float(g / (g - 1) * np.sum(a**2 * resid2))
    return _WMean(mean=mean, var=var, df=_bm_df(a), var_cr1=var_cr1)


def _welch_df(v1: float, df1: float, v2: float, df2: float) -> float:
    denom = v1**2 / df1 + v2**2 / df2
    if denom == 0.0:  # both groups without between-unit variation: degenerate, zero-width CI
        return df1 + df2
    return (v1 + v2) ** 2 / denom


def _t_interval(est: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    from scipy import stats

    if not (math.isfinite(est) and math.isfinite(se)):
        return math.nan, math.nan
    q = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    return est - q * se, est + q * se


def _validate(panel: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(panel, pl.DataFrame):
        raise ValueError(f"panel must be a polars DataFrame, got {type(panel).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in panel.columns]
    if missing:
        raise ValueError(f"panel is missing required columns: {missing}")
    if panel.height == 0:
        raise ValueError("panel has no rows")
    nulls = [c for c in REQUIRED_COLUMNS if panel[c].null_count() > 0]
    if nulls:
        raise ValueError(f"panel has null values in columns: {nulls}")
    for c in ("numerator", "denominator"):
        if not panel[c].dtype.is_numeric():
            raise ValueError(f"column {c!r} must be numeric, got {panel[c].dtype}")
    ps_dtype = panel["period_start"].dtype
    if not (ps_dtype == pl.Date or isinstance(ps_dtype, pl.Datetime)):
        raise ValueError(f"column 'period_start' must be a date, got {ps_dtype}")

    df = panel.select(
        pl.col("unit_id").cast(pl.String),
        pl.col("group").cast(pl.String),
        pl.col("period_start").cast(pl.Date),
        pl.col("phase").cast(pl.String),
        pl.col("numerator").cast(pl.Float64),
        pl.col("denominator").cast(pl.Float64),
    )
    bad_groups = sorted(set(df["group"].unique().to_list()) - set(_GROUPS))
    if bad_groups:
        raise ValueError(f"unknown group values {bad_groups}; expected {list(_GROUPS)}")
    bad_phases = sorted(set(df["phase"].unique().to_list()) - set(_PHASES))
    if bad_phases:
        raise ValueError(f"unknown phase values {bad_phases}; expected {list(_PHASES)}")
    num = df["numerator"].to_numpy()
    den = df["denominator"].to_numpy()
    if not np.all(np.isfinite(num)):
        raise ValueError("numerator has non-finite values (NaN or inf)")
    if not np.all(np.isfinite(den)):
        raise ValueError("denominator has non-finite values (NaN or inf)")
    if np.any(den <= 0):
        n_bad = int(np.sum(den <= 0))
        raise ValueError(f"denominator must be positive; {n_bad} row(s) have denominator <= 0")
    for phase in _PHASES:
        if (df["phase"] == phase).sum() == 0:
            raise ValueError(f"panel has no {phase} rows")
    return df


def _group_check(groups: np.ndarray) -> None:
    for g in _GROUPS:
        n = int(np.sum(groups == g))
        if n < 2:
            raise MeasurementError(
                f"group {g!r} has {n} unit(s) with both baseline and measurement rows; "
                "at least 2 are needed for a unit-clustered standard error"
            )


def _unit_slopes(t: np.ndarray, r: np.ndarray, d: np.ndarray, inv: np.ndarray, n: int):
    """Per-unit slope of rate on time, least squares weighted by ``d``; NaN if < 2 quarters."""
    sw = np.bincount(inv, weights=d, minlength=n)
    tbar = np.bincount(inv, weights=d * t, minlength=n) / sw
    rbar = np.bincount(inv, weights=d * r, minlength=n) / sw
    tc = t - tbar[inv]
    sxx = np.bincount(inv, weights=d * tc**2, minlength=n)
    sxy = np.bincount(inv, weights=d * tc * (r - rbar[inv]), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > 1e-12 * np.maximum(sw, 1.0), sxy / sxx, np.nan)
    return slope


def did_2x2(
    panel: pl.DataFrame,
    *,
    outcome: str,
    confidence: float = 0.95,
    weight: str | None = "denominator",
    inference: str = "analytic",
    seed: int = 0,
    scale: str = "absolute",
) -> EffectResult:
    """Two-group, two-phase difference-in-differences with unit-clustered inference.

    Parameters
    ----------
    panel:
        Columns ``unit_id`` (str), ``group`` ("treated"/"comparison"), ``period_start`` (date),
        ``phase`` ("baseline"/"measurement"), ``numerator`` and ``denominator`` (> 0). One row
        per unit and quarter.
    outcome:
        Outcome id from the plan (copied into the result).
    confidence:
        Two-sided confidence level of the intervals, in (0, 1).
    weight:
        ``"denominator"`` (unit weight = the unit's mean denominator) or ``None`` (equal weights).
    inference:
        ``"analytic"`` (CR2 t interval), ``"randomization"`` (interval of the absolute effect
        by inverting a randomization test over assignments of units to treatment) or
        ``"wild_bootstrap"`` (interval of the absolute effect by inverting a restricted wild
        cluster bootstrap t-test, step 11; absolute scale only).
    seed:
        Seed (int >= 0) of the sampled assignments or bootstrap weights when they are too many
        to enumerate.
    scale:
        ``"absolute"`` (parallel trends in levels: difference of mean changes) or
        ``"relative"`` (parallel trends in ratios: ratio-of-means DiD on the log scale, step 10).
        The other scale's result is in ``diagnostics["scale_sensitivity"]``.

    Returns an :class:`EffectResult`; see the module docstring for every formula. Raises
    ``ValueError`` on missing columns, null/non-finite values, non-positive denominators, unknown
    group/phase labels, duplicate unit-quarters, units in both groups, no baseline or no
    measurement rows, or fewer than 2 usable units in a group.
    """
    from scipy import stats

    if not isinstance(outcome, str) or not outcome:
        raise ValueError("outcome must be a non-empty string")
    if isinstance(confidence, bool) or not (
        isinstance(confidence, (int, float)) and 0.0 < float(confidence) < 1.0
    ):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    confidence = float(confidence)
    if weight not in ("denominator", None):
        raise ValueError(f"weight must be 'denominator' or None, got {weight!r}")
    if inference not in INFERENCE:
        raise ValueError(f"inference must be one of {list(INFERENCE)}, got {inference!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    if inference == "wild_bootstrap" and scale != "absolute":
        raise ValueError("inference 'wild_bootstrap' is available on the absolute scale only")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    df = _validate(panel)

    # ---- per-row arrays --------------------------------------------------------------------
    unit_all, inv_all = np.unique(df["unit_id"].to_numpy().astype(str), return_inverse=True)
    n_all = unit_all.size
    num = df["numerator"].to_numpy()
    den = df["denominator"].to_numpy()
    is_base = (df["phase"] == "baseline").to_numpy()
    grp_row = df["group"].to_numpy().astype(str)
    dates = df["period_start"]
    tidx = (dates.dt.year().to_numpy() * 4 + (dates.dt.month().to_numpy() - 1) / 3.0).astype(float)

    date_np = dates.to_numpy()
    periods, inv_period = np.unique(date_np, return_inverse=True)
    key = inv_all.astype(np.int64) * periods.size + inv_period
    uniq_key, key_count = np.unique(key, return_counts=True)
    if np.any(key_count > 1):
        k = int(uniq_key[np.argmax(key_count > 1)])
        raise ValueError(
            f"duplicate rows for (unit_id, period_start): {int(np.sum(key_count > 1))} key(s), "
            f"e.g. {unit_all[k // periods.size]!r} {periods[k % periods.size]}"
        )
    is_treated_row = grp_row == "treated"
    n_treated_rows = np.bincount(inv_all, weights=is_treated_row, minlength=n_all)
    n_rows_unit = np.bincount(inv_all, minlength=n_all)
    mixed = (n_treated_rows > 0) & (n_treated_rows < n_rows_unit)
    if np.any(mixed):
        raise ValueError(f"units in both groups: {unit_all[mixed][:10].tolist()}")
    unit_group = np.where(n_treated_rows > 0, "treated", "comparison").astype(object)

    # ---- 1. unit levels per phase ----------------------------------------------------------
    def phase_sums(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s_num = np.bincount(inv_all[mask], weights=num[mask], minlength=n_all)
        s_den = np.bincount(inv_all[mask], weights=den[mask], minlength=n_all)
        cnt = np.bincount(inv_all[mask], minlength=n_all)
        return s_num, s_den, cnt

    nb, db, cb = phase_sums(is_base)
    nm, dm, cm = phase_sums(~is_base)
    keep = (cb > 0) & (cm > 0)
    excluded = [
        {
            "unit_id": str(unit_all[i]),
            "group": str(unit_group[i]),
            "reason": "no baseline rows" if cb[i] == 0 else "no measurement rows",
        }
        for i in np.flatnonzero(~keep)
    ]

    units = unit_all[keep]
    groups = unit_group[keep].astype(str)
    _group_check(groups)
    l_base = nb[keep] / db[keep]
    l_meas = nm[keep] / dm[keep]
    change = l_meas - l_base
    mean_den = (db[keep] + dm[keep]) / (cb[keep] + cm[keep])
    w = mean_den.copy() if weight == "denominator" else np.ones(units.size)

    tr = groups == "treated"
    co = groups == "comparison"

    # ---- 2-5. group means, estimate, SE, df ---------------------------------------------------
    t_base = _wmean(l_base[tr], w[tr])
    t_meas = _wmean(l_meas[tr], w[tr])
    t_chg = _wmean(change[tr], w[tr])
    c_base = _wmean(l_base[co], w[co])
    c_meas = _wmean(l_meas[co], w[co])
    c_chg = _wmean(change[co], w[co])

    estimate = t_chg.mean - c_chg.mean
    var = t_chg.var + c_chg.var
    se = math.sqrt(var)
    df_abs = _welch_df(t_chg.var, t_chg.df, c_chg.var, c_chg.df)
    ci_low, ci_high = _t_interval(estimate, se, df_abs, confidence)
    p_analytic = float(2.0 * stats.t.sf(abs(estimate) / se, df_abs)) if se > 0 else math.nan
    se_cr1 = math.sqrt(t_chg.var_cr1 + c_chg.var_cr1)

    observed = t_meas.mean
    counterfactual = t_base.mean + c_chg.mean

    # ---- 6. relative effect, delta method --------------------------------------------------
    g_t, g_c = int(tr.sum()), int(co.sum())
    if counterfactual > 0:
        rel = estimate / counterfactual
        g_tb = -estimate / counterfactual**2
        g_td = 1.0 / counterfactual
        g_cd = -observed / counterfactual**2
        a_t = w[tr] / w[tr].sum()
        a_c = w[co] / w[co].sum()
        psi_t = a_t * (g_tb * (l_base[tr] - t_base.mean) + g_td * (change[tr] - t_chg.mean))
        psi_c = a_c * g_cd * (change[co] - c_chg.mean)
        var_rel_t = float(np.sum(psi_t**2 / (1.0 - a_t)))
        var_rel_c = float(np.sum(psi_c**2 / (1.0 - a_c)))
        se_rel = math.sqrt(var_rel_t + var_rel_c)
        df_rel = _welch_df(var_rel_t, t_chg.df, var_rel_c, c_chg.df)
        rel_low, rel_high = _t_interval(rel, se_rel, df_rel, confidence)
    else:
        rel = se_rel = df_rel = rel_low = rel_high = math.nan
        var_rel_t = var_rel_c = math.nan

    # ---- 7. pre-trend test and per-period means ----------------------------------------------
    row_keep = keep[inv_all]
    pos = np.full(n_all, -1)
    pos[keep] = np.arange(units.size)
    rate = num / den
    bmask = is_base & row_keep
    slopes = _unit_slopes(tidx[bmask], rate[bmask], den[bmask], pos[inv_all[bmask]], units.size)
    pre_trend = _pre_trend(slopes, w, tr, co)

    unit_w_row = np.zeros(inv_all.size)
    unit_w_row[row_keep] = w[pos[inv_all[row_keep]]]
    period_means = _period_means(
        periods, inv_period, is_base, rate, unit_w_row, is_treated_row, row_keep
    )

    rk = np.flatnonzero(row_keep)
    base_period = np.bincount(inv_period[is_base], minlength=periods.size) > 0
    events = event_study(
        pos[inv_all[rk]],
        inv_period[rk],
        [str(p) for p in periods],
        base_period,
        rate[rk],
        w,
        tr,
        confidence,
        _bm_df(w[tr] / w[tr].sum()) + _bm_df(w[co] / w[co].sum()),
    )

    # ---- 10. scale: the chosen one is the result, the other a sensitivity -------------------
    ratio = _log_ratio(l_base, l_meas, w, tr, co, confidence)
    p_ratio = (
        float(2.0 * stats.t.sf(abs(ratio["theta"]) / ratio["std_error_theta"], ratio["df_theta"]))
        if ratio["std_error_theta"] > 0  # False for NaN
        else math.nan
    )
    on_absolute = {
        "scale": "absolute",
        "estimate": estimate,
        "std_error": se,
        "df": df_abs,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p_analytic,
        "counterfactual": counterfactual,
        "relative_estimate": rel,
        "relative_ci_low": rel_low,
        "relative_ci_high": rel_high,
    }
    on_relative = {
        "scale": "relative",
        **{k: ratio[k] for k in ("estimate", "std_error", "df", "ci_low", "ci_high")},
        "p_value": p_ratio,
        **{
            k: ratio[k]
            for k in ("counterfactual", "relative_estimate", "relative_ci_low", "relative_ci_high")
        },
    }
    main, other = (on_absolute, on_relative) if scale == "absolute" else (on_relative, on_absolute)
    out_ci = (main["ci_low"], main["ci_high"])
    out_rel_ci = (main["relative_ci_low"], main["relative_ci_high"])

    randomization = None
    if inference == "randomization":
        if scale == "absolute":
            randomization = _randomization(
                (l_base, l_meas), w, tr, estimate, se, confidence, int(seed), "absolute"
            )
            out_ci = (randomization["ci_low"], randomization["ci_high"])
        else:
            randomization = _randomization(
                (l_base, l_meas),
                w,
                tr,
                ratio["theta"],
                ratio["std_error_theta"],
                confidence,
                int(seed),
                "relative",
            )
            out_rel_ci = (
                math.expm1(randomization["ci_low"]),
                math.expm1(randomization["ci_high"]),
            )

    wild = None
    if inference == "wild_bootstrap":
        wild = _wild_bootstrap(change, w, tr, estimate, se, confidence, int(seed))
        out_ci = (wild["ci_low"], wild["ci_high"])

    warnings: list[str] = []
    if inference == "analytic" and g_t < FEW_TREATED:
        warnings.append(
            f"only {g_t} treated units: the analytic (cluster-robust) interval rests on few "
            "clusters; consider inference: randomization"
        )
    if inference == "wild_bootstrap" and g_t < FEW_TREATED:
        warnings.append(
            f"only {g_t} treated units: the wild cluster bootstrap rests on few clusters "
            "(with 4 + 4 units its 5 % test rejected 6-8 % of simulated null panels and its "
            "95 % interval covered about 93 %); "
            "consider inference: randomization"
        )
    if excluded:
        warnings.append(f"{len(excluded)} unit(s) excluded: present in only one phase")
    both_phases = sorted(
        {p["period_start"] for p in period_means if p["phase"] == "baseline"}
        & {p["period_start"] for p in period_means if p["phase"] == "measurement"}
    )
    if both_phases:
        warnings.append(f"periods labelled both baseline and measurement: {both_phases}")
    n_q = cb[keep] + cm[keep]
    if np.unique(n_q).size > 1:
        warnings.append("unbalanced panel: units have different numbers of quarters")
    if pre_trend.get("p_value") is not None and pre_trend["p_value"] < 0.05:
        warnings.append("pre-trend test rejects parallel baseline slopes at the 5 % level")
    es_p = events["pre_test"]["p_value"]
    if es_p is not None and es_p < 0.05:
        warnings.append(
            "event-study joint test rejects equal treated-comparison differences across the "
            "baseline quarters at the 5 % level"
        )

    diagnostics = {
        "inference": inference,
        "scale": scale,
        "df": main["df"],
        "p_value": (
            randomization["p_value"]
            if randomization is not None
            else wild["p_value"]
            if wild is not None
            else main["p_value"]
        ),
        "analytic": {
            "ci_low": main["ci_low"],
            "ci_high": main["ci_high"],
            "relative_ci_low": main["relative_ci_low"],
            "relative_ci_high": main["relative_ci_high"],
            "p_value": main["p_value"],
        },
        "scale_sensitivity": other,
        "log_ratio": {
            "estimate": ratio["theta"],
            "std_error": ratio["std_error_theta"],
            "df": ratio["df_theta"],
            "p_value": p_ratio,
        },
        "cr1": {
            "std_error": se_cr1,
            "note": "CR1 (G/(G-1)) standard error, for comparison; not used",
        },
        "randomization": randomization,
        "wild_bootstrap": wild,
        "df_relative": df_rel,
        "std_error_relative": se_rel,
        "variance_components": {
            "treated": t_chg.var,
            "comparison": c_chg.var,
            "relative_treated": var_rel_t,
            "relative_comparison": var_rel_c,
        },
        "group_df": {"treated": t_chg.df, "comparison": c_chg.df},
        "group_levels": {
            "treated": {"baseline": t_base.mean, "measurement": t_meas.mean, "change": t_chg.mean},
            "comparison": {
                "baseline": c_base.mean,
                "measurement": c_meas.mean,
                "change": c_chg.mean,
            },
        },
        "n_periods": {
            "baseline": int(np.unique(inv_period[is_base]).size),
            "measurement": int(np.unique(inv_period[~is_base]).size),
        },
        "pre_trend": pre_trend,
        "event_study": events,
        "period_means": period_means,
        "units": [
            {
                "unit_id": str(units[i]),
                "group": str(groups[i]),
                "weight": float(w[i]),
                "level_baseline": float(l_base[i]),
                "level_measurement": float(l_meas[i]),
                "change": float(change[i]),
                "n_baseline": int(cb[keep][i]),
                "n_measurement": int(cm[keep][i]),
                "baseline_slope": float(slopes[i]),
            }
            for i in range(units.size)
        ],
        "excluded_units": excluded,
        "warnings": warnings,
    }
    parameters = {
        "confidence": confidence,
        "weight": weight,
        "unit_level": "ratio sum(numerator)/sum(denominator) per unit and phase",
        "variance": "unit-clustered CR2 (bias-reduced linearization), groups independent",
        "df": "Welch-Satterthwaite with Bell-McCaffrey per-group df",
        "inference": inference,
        "seed": int(seed),
        "scale": scale,
        "relative_ci": "delta method on unit-level influence"
        if scale == "absolute"
        else "t interval of the log ratio, exponentiated",
    }
    return EffectResult(
        outcome=outcome,
        method=METHOD,
        estimate=float(main["estimate"]),
        std_error=float(main["std_error"]),
        ci_low=float(out_ci[0]),
        ci_high=float(out_ci[1]),
        confidence=confidence,
        n_treated=g_t,
        n_comparison=g_c,
        counterfactual=float(main["counterfactual"]),
        observed=float(observed),
        relative_estimate=float(main["relative_estimate"]),
        relative_ci_low=float(out_rel_ci[0]),
        relative_ci_high=float(out_rel_ci[1]),
        diagnostics=diagnostics,
        parameters=parameters,
    )


def _assignments(
    n: int, n_treated: int, observed: np.ndarray, seed: int
) -> tuple[np.ndarray, bool]:
    """Boolean matrix (assignments x units) of treatment assignments with ``n_treated`` of ``n``
    units treated, the observed one first; exact enumeration when small, else seeded draws."""
    total = math.comb(n, n_treated)
    if total <= MAX_EXACT_ASSIGNMENTS:
        d = np.zeros((total, n), dtype=bool)
        for k, combo in enumerate(itertools.combinations(range(n), n_treated)):
            d[k, list(combo)] = True
        # put the observed assignment first (it is among the enumerated ones)
        obs = int(np.flatnonzero((d == observed).all(axis=1))[0])
        d[[0, obs]] = d[[obs, 0]]
        return d, True
    rng = np.random.default_rng(seed)
    keys = rng.random((N_SAMPLED_ASSIGNMENTS - 1, n))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    drawn = ranks < n_treated
    return np.vstack([observed[None, :], drawn]), False


def _randomization(
    levels: tuple[np.ndarray, np.ndarray],
    w: np.ndarray,
    treated: np.ndarray,
    estimate: float,
    spread: float,
    confidence: float,
    seed: int,
    scale: str,
) -> dict:
    """Randomization p-value of "no effect" and test-inversion interval (module docstring, 8).

    ``scale="absolute"``: the statistic is the difference of weighted mean changes and the null
    shifts treated changes by tau; ``"relative"``: the log ratio of means (step 10) and the null
    scales treated measurement levels by exp(tau). ``estimate`` is the statistic's observed
    value, ``spread`` a typical size of it (the analytic SE) for the search.
    """
    l_base, l_meas = levels
    d, exact = _assignments(treated.size, int(treated.sum()), treated, seed)
    wt = np.where(d, w, 0.0)
    wc = np.where(d, 0.0, w)
    coef_t = wt / wt.sum(axis=1, keepdims=True)
    coef_c = wc / wc.sum(axis=1, keepdims=True)
    n_assign = d.shape[0]
    tol = 1e-9 * max(spread, 1e-300)
    if scale == "absolute":
        coef = coef_t - coef_c
        b = coef @ (l_meas - l_base)  # E_d(Delta)
        c = coef @ treated.astype(float)  # E_d(d_obs); c[0] == 1

        def stat(tau: float) -> np.ndarray:
            return b - tau * c

    else:
        tb, cb = coef_t @ l_base, coef_c @ l_base

        def stat(tau: float) -> np.ndarray:
            lm = l_meas * np.exp(-tau * treated)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log((coef_t @ lm) / tb) - np.log((coef_c @ lm) / cb)

    def pval(tau: float) -> float:
        v = stat(tau)
        obs = abs(v[0])
        # ties within rounding (1e-9 of the search tolerance's scale) count as "as extreme"
        return float(np.sum(np.abs(v) >= obs - 1e-12 * obs - 1e-3 * tol) / n_assign)

    alpha = 1.0 - confidence

    def bound(direction: float) -> float:
        return _inverted_bound(pval, estimate, direction, spread, alpha, tol)

    if 1.0 / n_assign > alpha:  # no assignment set can reject at this level
        low, high = -math.inf, math.inf
    else:
        low, high = bound(-1.0), bound(1.0)
    return {
        "p_value": pval(0.0),
        "ci_low": low,
        "ci_high": high,
        "n_assignments": n_assign,
        "exact": exact,
        "seed": None if exact else seed,
        "min_p_value": 1.0 / n_assign,
        "scale": scale,
        "statistic": (
            "difference of weighted mean unit changes (the estimate); two-sided"
            if scale == "absolute"
            else "log ratio of weighted mean levels (treated minus comparison); two-sided"
        ),
    }


def _wild_weights(n_units: int, seed: int) -> tuple[np.ndarray, str, bool]:
    """Bootstrap weight matrix (draws x units), its distribution's name, and whether it is the
    full enumeration of Rademacher sign vectors (module docstring, step 11)."""
    if n_units < WEBB_BELOW:
        rng = np.random.default_rng(seed)
        return _WEBB[rng.integers(0, 6, size=(N_BOOTSTRAP, n_units))], "webb", False
    if 2**n_units <= N_BOOTSTRAP:
        codes = np.arange(2**n_units)[:, None] >> np.arange(n_units)[None, :]
        return np.where(codes & 1, -1.0, 1.0), "rademacher", True
    rng = np.random.default_rng(seed)
    return np.where(rng.random((N_BOOTSTRAP, n_units)) < 0.5, -1.0, 1.0), "rademacher", False


def _wild_bootstrap(
    change: np.ndarray,
    w: np.ndarray,
    treated: np.ndarray,
    estimate: float,
    se: float,
    confidence: float,
    seed: int,
) -> dict:
    """Restricted wild cluster bootstrap p-value of "no effect" and test-inversion interval of
    the absolute effect (module docstring, step 11)."""
    v, dist, exact = _wild_weights(change.size, seed)
    n_draws = v.shape[0]
    d = treated.astype(float)
    a = np.where(treated, w / w[treated].sum(), w / w[~treated].sum())  # within-group weights
    coef = np.where(treated, a, -a)  # E = coef @ Delta
    cr2 = _cr2_factor(a)
    # restricted residuals are linear in tau: e(tau) = e0 - tau * (d - dbar)
    dbar = float(w @ d / w.sum())
    e0 = change - float(w @ change / w.sum())
    e1 = d - dbar
    tol = 1e-9 * max(se, 1e-300)

    # E* - tau and the CR2 residuals are linear in tau, so SE*^2 is a quadratic in tau with
    # per-draw coefficients computed once:
    #   num(tau) = n0 - tau n1,  var(tau) = q0 - 2 tau q1 + tau^2 q2
    def parts(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ve = v * e  # draws x units: v_u e_u; alpha_r and tau d_u drop out
        mt = ve[:, treated] @ a[treated]
        mc = ve[:, ~treated] @ a[~treated]
        return ve @ coef, ve - np.where(treated, mt[:, None], mc[:, None])

    n0, r0 = parts(e0)
    n1, r1 = parts(e1)
    q0, q1, q2 = (r0**2) @ cr2, (r0 * r1) @ cr2, (r1**2) @ cr2
    del r0, r1

    def t_star(tau: float) -> np.ndarray:
        var = np.maximum(q0 - 2.0 * tau * q1 + tau * tau * q2, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs((n0 - tau * n1) / np.sqrt(var))

    def pval(tau: float) -> float:
        t_obs = abs(estimate - tau) / se if se > 0 else math.inf
        tb = t_star(tau)
        # ties within rounding count as "as extreme" (NaN draws, 0/0, never do)
        return float(np.sum(tb >= t_obs * (1.0 - 1e-12)) / n_draws)

    alpha = 1.0 - confidence

    def bound(direction: float) -> float:
        return _inverted_bound(pval, estimate, direction, se, alpha, tol)

    if se > 0:
        low, high = bound(-1.0), bound(1.0)
    else:  # no between-unit variation: degenerate, zero-width interval as the analytic one
        low = high = estimate
    return {
        "p_value": pval(0.0),
        "ci_low": low,
        "ci_high": high,
        "n_draws": n_draws,
        "exact": exact,
        "seed": None if exact else seed,
        "weights": dist,
        "n_clusters": int(change.size),
        "statistic": "CR2 t of the estimate under the imposed null (restricted wild cluster "
        "bootstrap by unit); two-sided",
    }


def _log_ratio(
    l_base: np.ndarray,
    l_meas: np.ndarray,
    w: np.ndarray,
    tr: np.ndarray,
    co: np.ndarray,
    confidence: float,
) -> dict:
    """Ratio-of-means DiD on the log scale (module docstring, step 10)."""
    a_t, a_c = w[tr] / w[tr].sum(), w[co] / w[co].sum()
    tb, tm = float(a_t @ l_base[tr]), float(a_t @ l_meas[tr])
    cb, cm = float(a_c @ l_base[co]), float(a_c @ l_meas[co])
    nu_t, nu_c = _bm_df(a_t), _bm_df(a_c)
    nan = math.nan
    out = dict.fromkeys(
        (
            "theta",
            "std_error_theta",
            "df_theta",
            "estimate",
            "std_error",
            "df",
            "ci_low",
            "ci_high",
            "counterfactual",
            "observed",
            "relative_estimate",
            "relative_ci_low",
            "relative_ci_high",
            "var_treated",
            "var_comparison",
        ),
        nan,
    )
    out["observed"] = tm
    if min(tb, tm, cb, cm) <= 0:
        return out
    theta = math.log(tm / tb) - math.log(cm / cb)
    # theta: influence a_u [(L_um - T_m)/T_m - (L_ub - T_b)/T_b], minus the same for comparison
    psi_t = a_t * ((l_meas[tr] - tm) / tm - (l_base[tr] - tb) / tb)
    psi_c = a_c * ((l_meas[co] - cm) / cm - (l_base[co] - cb) / cb)
    vt, vc = float(np.sum(psi_t**2 / (1 - a_t))), float(np.sum(psi_c**2 / (1 - a_c)))
    se_theta = math.sqrt(vt + vc)
    df_theta = _welch_df(vt, nu_t, vc, nu_c)
    lo, hi = _t_interval(theta, se_theta, df_theta, confidence)
    # absolute: E = T_m - CF, CF = T_b C_m / C_b; rho = C_m / C_b
    rho = cm / cb
    cf = tb * rho
    est = tm - cf
    phi_t = a_t * ((l_meas[tr] - tm) - rho * (l_base[tr] - tb))
    phi_c = -(tb / cb) * a_c * ((l_meas[co] - cm) - rho * (l_base[co] - cb))
    wt_, wc_ = float(np.sum(phi_t**2 / (1 - a_t))), float(np.sum(phi_c**2 / (1 - a_c)))
    se = math.sqrt(wt_ + wc_)
    df = _welch_df(wt_, nu_t, wc_, nu_c)
    ci_low, ci_high = _t_interval(est, se, df, confidence)
    out.update(
        theta=theta,
        std_error_theta=se_theta,
        df_theta=df_theta,
        estimate=est,
        std_error=se,
        df=df,
        ci_low=ci_low,
        ci_high=ci_high,
        counterfactual=cf,
        relative_estimate=math.expm1(theta),
        relative_ci_low=math.expm1(lo),
        relative_ci_high=math.expm1(hi),
        var_treated=wt_,
        var_comparison=wc_,
    )
    return out


def _pre_trend(slopes: np.ndarray, w: np.ndarray, tr: np.ndarray, co: np.ndarray) -> dict:
    from scipy import stats

    ok = np.isfinite(slopes)
    st, sc = tr & ok, co & ok
    out: dict = {
        "method": "unit baseline slopes (rate per quarter, WLS by denominator); "
        "weighted mean difference treated - comparison, Welch-Satterthwaite t-test",
        "n_treated": int(st.sum()),
        "n_comparison": int(sc.sum()),
        "slope_treated": None,
        "slope_comparison": None,
        "slope_difference": None,
        "std_error": None,
        "t_statistic": None,
        "df": None,
        "p_value": None,
    }
    if st.sum() < 2 or sc.sum() < 2:
        out["note"] = "fewer than 2 units with >= 2 baseline quarters in a group; not tested"
        return out
    mt = _wmean(slopes[st], w[st])
    mc = _wmean(slopes[sc], w[sc])
    diff = mt.mean - mc.mean
    se = math.sqrt(mt.var + mc.var)
    dfree = _welch_df(mt.var, mt.df, mc.var, mc.df)
    if se > 0:
        tstat = diff / se
        p = float(2.0 * stats.t.sf(abs(tstat), dfree))
    else:
        tstat, p = math.nan, math.nan
    out.update(
        slope_treated=mt.mean,
        slope_comparison=mc.mean,
        slope_difference=diff,
        std_error=se,
        t_statistic=tstat,
        df=dfree,
        p_value=p,
    )
    return out


def _period_means(
    periods: np.ndarray,
    inv_period: np.ndarray,
    is_base: np.ndarray,
    rate: np.ndarray,
    unit_w_row: np.ndarray,
    is_treated_row: np.ndarray,
    row_keep: np.ndarray,
) -> list[dict]:
    """Per (period, phase): weighted mean rate by group (unit weights), among kept units."""
    n_cell = periods.size * 2
    cell = inv_period * 2 + (~is_base).astype(np.int64)  # phase 0 = baseline, 1 = measurement
    sums = {}
    for g, mg in (("treated", is_treated_row), ("comparison", ~is_treated_row)):
        m = row_keep & mg
        sw = np.bincount(cell[m], weights=unit_w_row[m], minlength=n_cell)
        swr = np.bincount(cell[m], weights=unit_w_row[m] * rate[m], minlength=n_cell)
        cnt = np.bincount(cell[m], minlength=n_cell)
        sums[g] = (sw, swr, cnt)
    out = []
    for c in range(n_cell):
        n_t, n_c = int(sums["treated"][2][c]), int(sums["comparison"][2][c])
        if n_t + n_c == 0:
            continue
        rec: dict = {
            "period_start": str(periods[c // 2]),
            "phase": _PHASES[c % 2],
        }
        for g in _GROUPS:
            sw, swr, cnt = sums[g]
            rec[g] = float(swr[c] / sw[c]) if cnt[c] else None
        t, co = rec["treated"], rec["comparison"]
        rec["difference"] = t - co if (t is not None and co is not None) else None
        rec["n_treated"] = n_t
        rec["n_comparison"] = n_c
        out.append(rec)
    return out


def _inverted_bound(
    pval: Callable[[float], float],
    estimate: float,
    direction: float,
    scale: float,
    alpha: float,
    tol: float,
) -> float:
    """One end of a confidence set by test inversion: the farthest null value on the
    `direction` side of `estimate` whose p-value is still above `alpha`. Steps out from
    `estimate` by doubling steps (starting at `scale`), then bisects to `tol`; infinite
    when the p-value never falls to `alpha` (too few units to reject)."""
    step = max(scale, abs(estimate) * 1e-6, 1e-12)
    inside = estimate
    outside = estimate + direction * step
    k = 0
    while pval(outside) > alpha:
        inside, step = outside, step * 2.0
        outside = estimate + direction * step
        k += 1
        if k > 60:  # p never falls to alpha: the interval is unbounded on this side
            return direction * math.inf
    while abs(outside - inside) > tol:
        mid = 0.5 * (inside + outside)
        if pval(mid) > alpha:
            inside = mid
        else:
            outside = mid
    return inside


#: Plan weight names -> did_2x2 weight argument.
WEIGHTS = {"exposure": "denominator", "equal": None}


def _check(params: dict) -> list[tuple[str, str]]:
    if params["inference"] == "wild_bootstrap" and params["scale"] != "absolute":
        return [
            (
                "inference",
                "wild_bootstrap is available on the absolute scale only "
                f"(scale is {params['scale']!r}); use analytic or randomization",
            )
        ]
    return []


def _fit(panel: pl.DataFrame, design: Design) -> EffectResult:
    p = design.parameters
    return did_2x2(
        panel,
        outcome=design.outcome,
        confidence=design.confidence,
        weight=WEIGHTS[p["weight"]],
        inference=p["inference"],
        seed=design.seed,
        scale=p["scale"],
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    estimand="ATT",
    fit=_fit,
    parameters={
        "weight": ParamSpec(
            "string",
            default="exposure",
            choices=("exposure", "equal"),
            description="units weighted by exposure (the rate's denominator) or equally",
        ),
        "inference": ParamSpec(
            "string",
            default="analytic",
            choices=("analytic", "randomization", "wild_bootstrap"),
            description="interval of the effect: analytic (cluster-robust CR2, t with "
            "Bell-McCaffrey df), randomization (test inversion over assignments of "
            "units to treatment, seeded by counterfactual.seed) or wild_bootstrap "
            "(test inversion of a restricted wild cluster bootstrap by unit, seeded by "
            "counterfactual.seed; absolute scale only)",
        ),
        "scale": ParamSpec(
            "string",
            default="absolute",
            choices=("absolute", "relative"),
            description="parallel trends in levels (absolute: difference of mean changes) "
            "or in ratios (relative: ratio-of-means DiD on the log scale); the other scale "
            "is reported as a sensitivity",
        ),
    },
    published_diagnostics=frozenset(
        (
            "inference",
            "scale",
            "df",
            "p_value",
            "analytic",
            "relative",
            "scale_sensitivity",
            "cr1",
            "randomization",
            "wild_bootstrap",
            "df_relative",
            "std_error_relative",
            "variance_components",
            "group_df",
            "group_levels",
            "n_periods",
            "pre_trend",
            "event_study",
            "period_means",
            "units",
            "excluded_units",
            "warnings",
        )
    ),
    description="difference in differences, two periods, two groups",
    check=_check,
)
