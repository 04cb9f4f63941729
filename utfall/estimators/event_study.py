"""Event study for the two-group unit panel: one coefficient per quarter against a reference.

Method (``diagnostics["event_study"]`` of ``did_2x2``), so that a validator can recompute it
===========================================================================================

Rows: unit u, quarter t, rate y_ut = N_ut / D_ut, row weight w_u (the estimate's unit weight).
Reference quarter r = the last baseline quarter. Weighted least squares of

    y_ut = alpha_u + lambda_t + sum_{k != r} beta_k 1[u treated] 1[t = k] + e_ut

(unit fixed effects alpha_u, quarter fixed effects lambda_t). beta_k is the treated-comparison
difference at quarter k relative to the same difference at r; in a balanced panel it equals
the difference of the groups' weighted mean of (y_uk - y_ur) exactly.
The unit effects are absorbed (within-unit demeaning; w_u is constant within a unit, so the
weighted within-unit mean is the plain mean).

Variance: cluster-robust by unit, CR2 (Bell-McCaffrey) with the working model W^-1: for unit
u with T_u rows, the leverage block including the absorbed unit effect is

    H_uu = J / T_u + w_u X~_u (X~' W X~)^-1 X~_u'

and the unit's residuals are multiplied by A_u = (I - H_uu)^(-1/2) (symmetric, pseudo-inverse
root: I - H_uu is singular along the unit's constant vector, which the residuals are orthogonal
to). V = B^-1 [sum_u w_u^2 X~_u' A_u e_u e_u' A_u X~_u] B^-1, B = X~' W X~.

Degrees of freedom: nu = nu_T + nu_C, the Bell-McCaffrey df of the two groups' weighted means
(``did.py`` step 5; nu = G - 2 with equal weights, fewer with unequal weights: G - 2 made the
joint test reject 13-20 % of null panels with exposure weights in simulation, nu_T + nu_C 4-5.5 %).
Intervals per coefficient: beta_k +- t_{nu} SE_k. Joint test of the q pre-period coefficients
(all baseline quarters but r), Hotelling's form:

    W = b' V_pre^-1 b,   F = (nu - q + 1) / (nu q) * W  ~  F(q, nu - q + 1)

Not tested (``p_value`` null) when q > nu (too few units for q coefficients) or V_pre is
singular. Only aggregate numbers (one per quarter) are reported.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["event_study", "event_time_study"]


def _sym_inv_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric pseudo-inverse square root of each matrix in a stack (m, t, t)."""
    vals, vecs = np.linalg.eigh((m + np.swapaxes(m, 1, 2)) / 2.0)
    tol = 1e-10 * np.maximum(1.0, np.max(np.abs(vals), axis=1, keepdims=True))
    inv = np.where(vals > tol, 1.0 / np.sqrt(np.clip(vals, tol, None)), 0.0)
    return (vecs * inv[:, None, :]) @ np.swapaxes(vecs, 1, 2)


def event_study(
    unit: np.ndarray,
    period: np.ndarray,
    period_labels: list[str],
    is_base_period: np.ndarray,
    y: np.ndarray,
    w_unit: np.ndarray,
    treated_unit: np.ndarray,
    confidence: float,
    nu: float,
) -> dict:
    """Event-study coefficients and the joint pre-period test (see the module docstring).

    ``unit``/``period`` are row indices into ``w_unit``/``treated_unit`` and ``period_labels``;
    ``is_base_period[p]`` tells whether quarter p is a baseline quarter; ``nu`` is the df.
    """
    from scipy import stats

    n_units = w_unit.size
    n_per = len(period_labels)
    base_periods = np.flatnonzero(is_base_period)
    out: dict = {
        "method": "WLS of the quarterly rate on unit and quarter fixed effects and treated x "
        "quarter terms (unit weights), reference = last baseline quarter; CR2 cluster-robust "
        "by unit; joint pre-period test Hotelling F with nu = Bell-McCaffrey df of the groups",
        "reference_period": None,
        "coefficients": [],
        "pre_test": {"q": 0, "wald": None, "f_statistic": None, "df": None, "p_value": None},
    }
    if base_periods.size == 0:
        out["note"] = "no baseline quarter; no event study"
        return out
    ref = int(base_periods[-1])
    out["reference_period"] = period_labels[ref]

    keep_p = [p for p in range(n_per) if p != ref]
    col_of = np.full(n_per, -1)
    col_of[keep_p] = np.arange(len(keep_p))
    k = len(keep_p)
    n = y.size
    x = np.zeros((n, 2 * k))  # quarter effects, then treated x quarter
    rows = np.flatnonzero(col_of[period] >= 0)
    x[rows, col_of[period[rows]]] = 1.0
    tr_rows = rows[treated_unit[unit[rows]]]
    x[tr_rows, k + col_of[period[tr_rows]]] = 1.0

    cnt = np.bincount(unit, minlength=n_units).astype(float)

    def demean(v: np.ndarray) -> np.ndarray:
        if v.ndim == 1:
            return v - (np.bincount(unit, weights=v, minlength=n_units) / cnt)[unit]
        means = (
            np.stack(
                [np.bincount(unit, weights=v[:, j], minlength=n_units) for j in range(v.shape[1])],
                axis=1,
            )
            / cnt[:, None]
        )
        return v - means[unit]

    xt, yt = demean(x), demean(y)
    wr = w_unit[unit]
    # drop columns with no within-unit variation (e.g. a quarter nobody observed)
    # einsum rather than BLAS matmul: these products are small, and threaded BLAS on a busy
    # machine made them ~5x slower
    bmat = np.einsum("ni,nj,n->ij", xt, xt, wr)
    use = np.flatnonzero(np.diag(bmat) > 1e-12 * max(1.0, float(np.max(np.diag(bmat)))))
    xt, bmat = xt[:, use], bmat[np.ix_(use, use)]
    try:
        binv = np.linalg.inv(bmat)
    except np.linalg.LinAlgError:
        out["note"] = "singular design; no event study"
        return out
    coef = binv @ np.einsum("ni,n->i", xt, wr * yt)
    resid = yt - np.einsum("ni,i->n", xt, coef)

    # CR2 meat, batched over units with the same number of rows (all of them when balanced)
    order = np.lexsort((period, unit))
    cnt_i = cnt.astype(int)
    meat = np.zeros_like(bmat)
    for t_u in np.unique(cnt_i[cnt_i > 0]):
        units_t = np.flatnonzero(cnt_i == t_u)
        starts = np.searchsorted(unit[order], units_t)
        idx = order[starts[:, None] + np.arange(t_u)[None, :]]  # (m, t_u) row indices
        xu = xt[idx]  # (m, t_u, k)
        wu = w_unit[units_t][:, None, None]
        h = 1.0 / t_u + wu * np.einsum("mti,ij,msj->mts", xu, binv, xu, optimize=True)
        au = _sym_inv_sqrt(np.eye(t_u)[None, :, :] - h)
        s_u = w_unit[units_t][:, None] * np.einsum(
            "mtk,mt->mk", xu, (au @ resid[idx][..., None])[..., 0]
        )
        meat += s_u.T @ s_u
    vcov = binv @ meat @ binv

    n_used_units = int(np.sum(cnt > 0))
    out["df"] = nu
    q_t = float(stats.t.ppf(0.5 + confidence / 2.0, nu)) if nu > 0 else math.nan
    pos = {int(c): i for i, c in enumerate(use)}
    pre_idx = []
    for p in range(n_per):
        rec: dict = {
            "period_start": period_labels[p],
            "phase": "baseline" if is_base_period[p] else "measurement",
            "relative_quarter": p - ref,
        }
        if p == ref:
            rec.update(estimate=0.0, std_error=0.0, ci_low=0.0, ci_high=0.0, reference=True)
        else:
            j = pos.get(k + int(col_of[p]))
            if j is None:
                rec.update(estimate=None, std_error=None, ci_low=None, ci_high=None)
            else:
                b, se = float(coef[j]), math.sqrt(max(float(vcov[j, j]), 0.0))
                rec.update(estimate=b, std_error=se, ci_low=b - q_t * se, ci_high=b + q_t * se)
                if is_base_period[p]:
                    pre_idx.append(j)
            rec["reference"] = False
        out["coefficients"].append(rec)

    q = len(pre_idx)
    test = out["pre_test"]
    test["q"] = q
    if q == 0:
        test["note"] = "no baseline quarter besides the reference; not tested"
        return out
    if q > nu - 1e-9:
        test["note"] = (
            f"{q} pre-period coefficients but only {nu:.1f} degrees of freedom "
            f"({n_used_units} units); not tested"
        )
        return out
    b = coef[pre_idx]
    v = vcov[np.ix_(pre_idx, pre_idx)]
    try:
        wald = float(b @ np.linalg.solve(v, b))
    except np.linalg.LinAlgError:
        test["note"] = "singular covariance of the pre-period coefficients; not tested"
        return out
    f = (nu - q + 1) / (nu * q) * wald
    df2 = nu - q + 1
    test.update(wald=wald, f_statistic=f, df=[q, df2], p_value=float(stats.f.sf(f, q, df2)))
    return out


def event_time_study(
    unit: np.ndarray,
    period: np.ndarray,
    period_labels: list[str],
    y: np.ndarray,
    w: np.ndarray,
    cohort: np.ndarray,
    confidence: float,
) -> dict:
    """Event study on any panel, staggered adoption included (``diagnostics["event_study"]``
    of ``twfe``): coefficients by event time e = t - g_u (periods since the unit's first
    treated period g_u; never-treated units have none).

    WLS with unit and period fixed effects and one dummy per observed event time except the
    reference e = -1 (:mod:`utfall.estimators._fe`), CR1 by unit, t with G - 1 df. Without
    never-treated units the event-time dummies are collinear with the fixed effects, so the
    earliest event time is a second reference (stated in ``references``). Joint test of the
    q pre-period coefficients (e <= -2): F = W / q ~ F(q, G - 1). With adoption at different
    times and effects that differ by cohort, these coefficients mix cohorts with weights that
    can be negative (Sun and Abraham 2021): read the ``staggered`` method's event-time
    aggregation for a clean dynamic profile.
    """
    from scipy import stats

    from utfall.estimators._fe import fe_wls
    from utfall.estimators.base import EstimationError

    n_units = cohort.size
    out: dict = {
        "method": "WLS of the rate on unit and period fixed effects and event-time dummies "
        "(reference e = -1), CR1 cluster-robust by unit, t with G - 1 df; joint pre-period "
        "F test",
        "references": [-1],
        "coefficients": [],
        "pre_test": {"q": 0, "f_statistic": None, "df": None, "p_value": None},
    }
    g_row = cohort[unit]
    ever = g_row >= 0
    e_row = np.where(ever, period - g_row, 0)
    observed = sorted({int(e) for e in np.unique(e_row[ever])})
    refs = [-1]
    if not np.any(cohort < 0) and observed:
        refs.append(
            observed[0] if observed[0] != -1 else (observed[1] if len(observed) > 1 else -1)
        )
    terms = [e for e in observed if e not in refs]
    out["references"] = sorted(set(refs))
    if not terms:
        out["note"] = "no event time besides the reference; no event study"
        return out
    dropped: list[int] = []
    fit = None
    while terms:
        col = {e: j for j, e in enumerate(terms)}
        x = np.zeros((y.size, len(terms)))
        for i in np.flatnonzero(ever):
            j = col.get(int(e_row[i]))
            if j is not None:
                x[i, j] = 1.0
        try:
            fit = fe_wls(y, x, unit, period, w, n_units, len(period_labels), "event-time terms")
            break
        except (EstimationError, np.linalg.LinAlgError):
            # not identified (e.g. periods in which every unit is treated): drop the event
            # time farthest from the reference, as binning the end points would
            far = max(terms, key=lambda e: (abs(e + 1), e))
            terms.remove(far)
            dropped.append(far)
    out["not_identified"] = sorted(dropped)  # normalised to 0, i.e. further references
    out["references"] = sorted({*out["references"], *dropped})
    if fit is None:
        out["note"] = "no event-time coefficient is identified with these fixed effects"
        return out
    dfree = fit.n_clusters - 1
    q_t = float(stats.t.ppf(0.5 + confidence / 2.0, dfree))
    n_units_at = {e: int(np.unique(unit[ever & (e_row == e)]).size) for e in observed}
    for e in observed:
        rec: dict = {"event_time": e, "n_units": n_units_at[e]}
        if e in col:
            b = float(fit.coef[col[e]])
            se = math.sqrt(max(float(fit.vcov[col[e], col[e]]), 0.0))
            rec.update(estimate=b, std_error=se, ci_low=b - q_t * se, ci_high=b + q_t * se)
            rec["reference"] = False
        else:
            rec.update(estimate=0.0, std_error=0.0, ci_low=0.0, ci_high=0.0, reference=True)
        out["coefficients"].append(rec)
    pre = [col[e] for e in terms if e <= -2]
    test = out["pre_test"]
    test["q"] = len(pre)
    if not pre:
        test["note"] = "no pre-period coefficient besides the reference; not tested"
        return out
    if len(pre) > dfree:
        test["note"] = f"{len(pre)} pre-period coefficients but {dfree} df; not tested"
        return out
    b = fit.coef[pre]
    v = fit.vcov[np.ix_(pre, pre)]
    try:
        wald = float(b @ np.linalg.solve(v, b))
    except np.linalg.LinAlgError:
        test["note"] = "singular covariance of the pre-period coefficients; not tested"
        return out
    f = wald / len(pre)
    test.update(f_statistic=f, df=[len(pre), dfree], p_value=float(stats.f.sf(f, len(pre), dfree)))
    return out
