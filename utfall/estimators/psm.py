"""Propensity-score matching (``psm``): 1:k nearest neighbours on the logit of the propensity.

Estimand: the average effect on the (matched) treated, ATT.

1. Propensity: logit of ``treated`` on the ``propensity`` formula; persons are matched on the
   linear predictor l = x'b (the logit), where distances are closer to normal than on e.
2. Common support (``common_support = "treated"``, the default): treated persons whose l lies
   outside [min l_C, max l_C] are dropped (counted and warned about; an error if fewer than
   two remain). ``"none"`` keeps them.
3. Matching: each treated person gets its ``neighbours`` (k) nearest comparison persons by
   |l_i - l_j|. ``replacement = "with"``: a comparison person may serve several treated.
   ``"without"``: greedy, treated taken from the highest propensity down (the hardest to
   match first), each comparison person used once. ``caliper`` c > 0: matches further than
   c * SD(l) (SD over the whole cohort, as MatchIt) are refused; a treated person with no
   match inside the caliper is dropped (counted and warned about). Ties in l are broken by
   a random order of the comparison persons drawn from counterfactual.seed, so a re-run
   matches the same persons.
4. Estimate: for matched treated i with matches J(i) (M_i = |J(i)| <= k),
   Yhat0_i = mean_{j in J(i)} y_j;  O = mean_i y_i;  CF = mean_i Yhat0_i;  E = O - CF.
5. Standard error: Abadie and Imbens (2006), the variance of matching estimators with a fixed
   number of matches, for the population ATT::

       V = 1/n1^2 [ sum_T (y_i - Yhat0_i - E)^2 + sum_C (K_j^2 - K2_j) sigma2_j ]

   with K_j = sum_i 1{j in J(i)} / M_i (comparison person j's total weight), K2_j the sum of
   the squares of those terms (K_j (K_j - 1) / M^2 form when every M_i = M: AI's
   K_M(K_M - 1)/M^2), and sigma2_j = J/(J+1) (y_j - mean of its J = 2 nearest same-group
   neighbours on l)^2, AI's matching estimator of the conditional variance. Without
   replacement every K_j is 0 or 1 and the second sum vanishes. The propensity is treated as
   known: Abadie and Imbens (2016) show that for the ATT estimating it can raise or lower the
   variance, so no sign-definite correction applies; the simulation study
   (scripts/study_person.py) measures the coverage. A bootstrap is not offered: the naive
   bootstrap is not valid for nearest-neighbour matching (Abadie and Imbens 2008).
   Interval: normal. Relative R = E / CF, delta method on the same decomposition: person i's
   influence on O is (y_i - O)/n1, on CF (Yhat0_i - CF)/n1 for treated i and
   sqrt(K_j^2 - K2_j) sigma_j / n1 for comparison j.
6. Balance: for every term of the propensity formula and for l, the standardised mean
   difference (mean_T - mean_C) / sqrt((s_T^2 + s_C^2) / 2) before matching (all persons) and
   after (matched treated vs comparison persons weighted by K_j), both over the
   before-matching SDs, so the two are comparable. |SMD| > 0.1 after matching is a warning.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.logit import fit_logit
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
from utfall.estimators.propensity import propensity_design
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "psm"
VARIANCE_NEIGHBOURS = 2  # J in Abadie-Imbens' conditional-variance estimator
PARAMS = {
    "propensity": PROPENSITY,
    "neighbours": ParamSpec(
        "integer", default=1, minimum=1, maximum=20, description="comparison persons per treated"
    ),
    "replacement": ParamSpec(
        "string",
        default="with",
        choices=("with", "without"),
        description="may a comparison person be matched to several treated persons",
    ),
    "caliper": ParamSpec(
        "number",
        default=0.0,
        minimum=0.0,
        maximum=10.0,
        description="largest allowed distance in SDs of the propensity logit (0 = none)",
    ),
    "common_support": ParamSpec(
        "string",
        default="treated",
        choices=("treated", "none"),
        description="drop treated persons outside the comparison group's propensity range",
    ),
}


def _nearest_with(lc: np.ndarray, lt: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest positions in sorted ``lc`` for each of ``lt`` (n1 x k) and distances."""
    n_c = lc.size
    pos = np.searchsorted(lc, lt)
    cand = pos[:, None] + np.arange(-k, k)[None, :]
    valid = (cand >= 0) & (cand < n_c)
    cand = np.clip(cand, 0, n_c - 1)
    dist = np.where(valid, np.abs(lc[cand] - lt[:, None]), np.inf)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    rows = np.arange(lt.size)[:, None]
    return cand[rows, order], dist[rows, order]


def _nearest_without(lc: np.ndarray, lt: np.ndarray, k: int, width: float):
    """Greedy matching without replacement; treated in descending order of ``lt``."""
    n_c = lc.size
    right = np.arange(n_c + 1)  # next unused at or after i (n_c = none)
    left = np.arange(-1, n_c)  # left[i + 1] = previous unused at or before i (-1 = none)

    def find(arr, i, off):
        root = i
        while arr[root + off] != root:
            root = arr[root + off]
        while arr[i + off] != root:
            arr[i + off], i = root, arr[i + off]
        return root

    idx = np.full((lt.size, k), -1, dtype=np.int64)
    dist = np.full((lt.size, k), np.inf)
    pos = np.searchsorted(lc, lt)
    for i in np.argsort(-lt, kind="stable"):
        lo, hi = find(left, int(pos[i]) - 1, 1), find(right, int(pos[i]), 0)
        for m in range(k):
            if lo < 0 and hi >= n_c:
                break  # every comparison person is used
            dl = lt[i] - lc[lo] if lo >= 0 else np.inf
            dr = lc[hi] - lt[i] if hi < n_c else np.inf
            j, dj = (lo, dl) if dl <= dr else (hi, dr)
            if not dj <= width:
                break
            idx[i, m], dist[i, m] = j, dj
            right[j] = j + 1
            left[j + 1] = j - 1
            if j == lo:
                lo = find(left, j - 1, 1)
            else:
                hi = find(right, j + 1, 0)
    return idx, dist


def _sigma2(ls: np.ndarray, ys: np.ndarray, at: np.ndarray) -> np.ndarray:
    """AI's conditional variance of y at sorted positions ``at`` of one group (``ls`` sorted,
    ``ys`` in the same order), from the J nearest other members of the group."""
    j = VARIANCE_NEIGHBOURS
    if ls.size <= j:
        return np.full(at.size, np.var(ys, ddof=1) if ls.size > 1 else 0.0)
    cand = at[:, None] + np.concatenate([np.arange(-j, 0), np.arange(1, j + 1)])[None, :]
    valid = (cand >= 0) & (cand < ls.size)
    cand = np.clip(cand, 0, ls.size - 1)
    dist = np.where(valid, np.abs(ls[cand] - ls[at][:, None]), np.inf)
    near = np.take_along_axis(cand, np.argsort(dist, axis=1, kind="stable")[:, :j], axis=1)
    return j / (j + 1) * (ys[at] - ys[near].mean(axis=1)) ** 2


def _balance(x, names, lin, d, treated_rows, control_weight) -> list[dict]:
    """Standardised mean differences before and after matching (see the docstring)."""
    cols = np.column_stack([x[:, 1:], lin])
    labels = [*names[1:], "propensity logit"]
    t, c = cols[d == 1], cols[d == 0]
    sd = np.sqrt((t.var(axis=0, ddof=1) + c.var(axis=0, ddof=1)) / 2)
    mt_after = cols[treated_rows].mean(axis=0)
    mc_after = control_weight @ c / control_weight.sum()
    out = []
    for i, label in enumerate(labels):
        s = sd[i] if sd[i] > 0 else math.nan
        out.append(
            {
                "term": label,
                "mean_treated": float(t[:, i].mean()),
                "mean_comparison": float(c[:, i].mean()),
                "smd_before": float((t[:, i].mean() - c[:, i].mean()) / s),
                "mean_treated_matched": float(mt_after[i]),
                "mean_comparison_matched": float(mc_after[i]),
                "smd_after": float((mt_after[i] - mc_after[i]) / s),
            }
        )
    return out


def _fit(data: pl.DataFrame, design: Design) -> EffectResult:
    params = parameters(design, PARAMS)
    data = ordered(data)
    p = persons(data)
    k = int(params["neighbours"])
    t_rows, c_rows = np.flatnonzero(p.d == 1), np.flatnonzero(p.d == 0)
    if c_rows.size < k:
        raise EstimationError(
            f"too few comparison persons: {c_rows.size} for {k} neighbours per treated person"
        )
    x, names = propensity_design(data, params["propensity"])
    fit = fit_logit(x, p.d, names)
    lin = fit.linear
    warnings: list[str] = []
    lt_all, lc_all = lin[t_rows], lin[c_rows]
    off = np.zeros(t_rows.size, dtype=bool)
    if params["common_support"] == "treated":
        off = (lt_all < lc_all.min()) | (lt_all > lc_all.max())
        if off.any():
            warnings.append(
                f"{int(off.sum())} treated persons lie outside the comparison group's "
                f"propensity range and were dropped (common support): the effect is for "
                f"the rest"
            )
    rng = np.random.default_rng(design.seed)
    c_order = np.lexsort((rng.random(c_rows.size), lc_all))  # ties in a seeded random order
    lc = lc_all[c_order]
    keep_t = np.flatnonzero(~off)
    lt = lt_all[keep_t]
    width = params["caliper"] * float(np.std(lin, ddof=1)) if params["caliper"] > 0 else np.inf
    if params["replacement"] == "with":
        idx, dist = _nearest_with(lc, lt, k)
        ok = dist <= width
    else:
        idx, dist = _nearest_without(lc, lt, k, width)
        ok = idx >= 0
    m_i = ok.sum(axis=1)
    matched = m_i > 0
    n_unmatched = int((~matched).sum())
    if matched.sum() < 2:
        raise EstimationError(
            f"no common support: {int(matched.sum())} of {t_rows.size} treated persons found a "
            f"comparison person within the caliper ({params['caliper']} SD of the propensity "
            f"logit) and inside the comparison group's range; widen the caliper or change the "
            f"cohort"
        )
    if n_unmatched:
        why = "within the caliper" if params["replacement"] == "with" else "left to match"
        warnings.append(
            f"{n_unmatched} treated persons had no comparison person {why} and were dropped: "
            f"the effect is for the matched treated"
        )
    yc = p.y[c_rows][c_order]  # comparison outcomes in sorted order
    idx_m, ok_m, m_m = idx[matched], ok[matched], m_i[matched]
    safe = np.where(ok_m, idx_m, 0)
    yhat0 = np.where(ok_m, yc[safe], 0.0).sum(axis=1) / m_m
    t_sel = t_rows[keep_t[matched]]
    y1 = p.y[t_sel]
    n1 = y1.size
    obs, cf = float(y1.mean()), float(yhat0.mean())
    est = obs - cf
    # K_j (total weight) and K2_j (sum of squared weights) of each sorted comparison person
    wmat = np.where(ok_m, 1.0 / m_m[:, None], 0.0)
    kw = np.bincount(safe.ravel(), weights=wmat.ravel(), minlength=lc.size)
    kw2 = np.bincount(safe.ravel(), weights=(wmat**2).ravel(), minlength=lc.size)
    used = kw > 0
    at = np.flatnonzero(used)
    s2_c = _sigma2(lc, yc, at)  # only comparison persons that were matched count
    extra = np.clip(kw[at] ** 2 - kw2[at], 0.0, None)
    psi1 = (y1 - obs) / n1
    psi0_t = (yhat0 - cf) / n1
    psi0_c = np.sqrt(extra * s2_c) / n1
    v11, v01 = psi1 @ psi1, psi1 @ psi0_t
    v00 = psi0_t @ psi0_t + psi0_c @ psi0_c
    se = math.sqrt(max(v11 + v00 - 2 * v01, 0.0))
    rel = relative(obs, cf, np.array([[v11, v01], [v01, v00]]))
    # comparison weights in the original comparison order, for the balance table
    cw = np.zeros(c_rows.size)
    cw[c_order] = kw
    balance = _balance(x, names, lin, p.d, t_sel, cw)
    bad = [b["term"] for b in balance if abs(b["smd_after"]) > 0.1]
    if bad:
        warnings.append(
            f"covariate imbalance after matching (|SMD| > 0.1): {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        )
    ids = data["person_id"].to_numpy() if "person_id" in data.columns else np.arange(p.d.size)
    c_sorted_rows = c_rows[c_order]
    pair_t = np.repeat(t_sel, ok_m.sum(axis=1))
    pair_c = c_sorted_rows[idx_m[ok_m]]
    return result(
        method=METHOD,
        design=design,
        estimand="ATT",
        estimate=est,
        se=se,
        observed=obs,
        counterfactual=cf,
        rel=rel,
        n_treated=n1,
        n_comparison=int(used.sum()),
        diagnostics={
            "se_type": "Abadie-Imbens (2006), propensity treated as known",
            "n_treated_total": int(t_rows.size),
            "n_off_support": int(off.sum()),
            "n_unmatched": n_unmatched,
            "n_comparison_pool": int(c_rows.size),
            "caliper_width": None if math.isinf(width) else width,
            "max_comparison_weight": float(kw.max()),
            "balance": balance,
            "logit_iterations": fit.iterations,
        },
        parameters=params,
        restricted={"treated_id": ids[pair_t], "comparison_id": ids[pair_c]},
        warnings=warnings,
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="person",
    estimand="ATT",
    fit=one_blas_thread(_fit),
    parameters=PARAMS,
    published_diagnostics=frozenset(
        (
            "se_type",
            "n_treated_total",
            "n_off_support",
            "n_unmatched",
            "n_comparison_pool",
            "caliper_width",
            "max_comparison_weight",
            "balance",
            "logit_iterations",
            "relative_se",
            "df",
        )
    ),
    description="1:k nearest-neighbour matching on the propensity logit (with or without "
    "replacement, caliper, common support), balance table, Abadie-Imbens standard error",
    check=formula_check(("propensity",), ()),
)
