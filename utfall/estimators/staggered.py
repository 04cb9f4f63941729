"""Staggered adoption: Callaway and Sant'Anna (2021) group-time ATTs, aggregated (``staggered``).

Why: with treatment starting at different times, TWFE compares later-treated units with
already-treated ones and weights cohorts by variance; when effects differ by cohort or grow
over time it is biased, even in sign. This method only ever compares a cohort with units not
(yet) treated, and aggregates with weights the plan can state in advance.

Method, so that a validator can recompute it
============================================

Balanced panel of units u with rate Y_ut (numerator / denominator) and unit weight w_u (mean
denominator, ``weight="exposure"``, or 1). Cohort g = the unit's first treated period
(the first period_start >= treatment_start). Units treated from the first period have no
pre-period and are excluded (a warning says how many); units whose treatment starts after
the panel ends count as never treated.

1. Group-time ATT, unconditional (no covariates), "varying" base period b: for t >= g,
   b = g - 1; for pre-periods t < g, b = t - 1 (a placebo per period). Controls C(g, t):
   ``control="never_treated"``: units never treated; ``"not_yet_treated"``: units never
   treated or with cohort > max(t, b), cohort g itself excluded. With a_u = w_u / sum w over
   the set::

       ATT(g,t) = sum_{u in g} a_u (Y_ut - Y_ub) - sum_{u in C} a_u (Y_ut - Y_ub)

   and the cohort's observed level O(g,t) = sum_{u in g} a_u Y_ut.
2. Influence functions (scaled so that Var = sum_u psi_u^2): psi_u = a_u (dY_u - mean_g)
   for u in g, -a_u (dY_u - mean_C) for u in C, 0 otherwise.
3. Aggregation with cohort shares p_g = sum_{u in g} w_u / sum_u w_u and constants c_k per
   cell k = (g_k, t_k): theta = sum_k p_{g_k} c_k ATT_k / sum_k p_{g_k} c_k.
   - overall (the estimate): c_k = 1 for post cells (t >= g) in measurement periods
     (``did``'s "simple" aggregation when every post period is a measurement period);
   - by event time e: c_k = 1[t_k - g_k = e] (``did``'s "dynamic");
   - by cohort: c_k = 1[post] / (number of post cells of g), so each cohort's mean effect is
     weighted by its share (``did``'s "group");
   - dynamic: the mean of the event-time effects for e >= 0, influence the mean of theirs.
   The influence of theta adds the estimation of the shares (``did``'s "wif"):
   psi_u(theta) = sum_k a_k psi_u(k) + (w_u / W) sum_g (1[G_u = g] - p_g) dtheta/dp_g,
   dtheta/dp_g = sum_{k: g_k = g} c_k (ATT_k - theta) / sum_k p_{g_k} c_k.
4. SE = sqrt(sum_u psi_u^2); interval theta +- z SE (normal, as ``did``'s analytic SE;
   no multiplier bootstrap). Observed O = the same aggregation of O(g,t), counterfactual
   CF = O - theta, relative R = theta / CF by the delta method with the influences of O.

Reproduces the ``did`` package on mpdta (tests/test_est_panel_staggered.py).
Refused: fewer than 2 treated units with a pre-period (use synthetic_control), no
never-treated unit with ``control="never_treated"``, an unbalanced panel is reduced to its
balanced units with a warning, cells without controls are skipped with a warning.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from utfall.estimators import _panel
from utfall.estimators.base import Design, EstimationError, Estimator
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "staggered"
CONTROLS = ("never_treated", "not_yet_treated")


def _cells(y, w, cohort, control, n_per):
    """ATT(g,t), O(g,t) and their influence vectors for every estimable cell."""
    cells, skipped = [], []
    for g in sorted({int(c) for c in cohort if 0 < c < n_per}):
        in_g = cohort == g
        for t in range(n_per):
            b = g - 1 if t >= g else t - 1
            if b < 0:
                continue
            if control == "never_treated":
                in_c = cohort < 0
            else:
                in_c = (cohort < 0) | (cohort > max(t, b))
                in_c &= ~in_g
            if not in_c.any():
                skipped.append((g, t))
                continue
            dy = y[:, t] - y[:, b]
            a_g = np.where(in_g, w, 0.0) / w[in_g].sum()
            a_c = np.where(in_c, w, 0.0) / w[in_c].sum()
            mg, mc = a_g @ dy, a_c @ dy
            o = a_g @ y[:, t]
            psi = a_g * (dy - mg) - a_c * (dy - mc)
            psi_o = a_g * (y[:, t] - o)
            cells.append(
                {
                    "g": g,
                    "t": t,
                    "att": mg - mc,
                    "obs": o,
                    "psi": psi,
                    "psi_o": psi_o,
                    "n_treated": int(in_g.sum()),
                    "n_control": int(in_c.sum()),
                }
            )
    return cells, skipped


def _aggregate(cells, c, shares, w, cohort, key):
    """theta = sum p c ATT / sum p c over cells with their influence (step 3)."""
    c = np.asarray(c, dtype=float)
    if not np.any(c > 0):
        return None
    p = np.array([shares[k["g"]] for k in cells])
    den = float(np.sum(p * c))
    a = p * c / den
    vals = np.array([k[key] for k in cells])
    theta = float(a @ vals)
    psi = sum(a_k * k["psi" if key == "att" else "psi_o"] for a_k, k in zip(a, cells, strict=True))
    wn = w / w.sum()
    for g, p_g in shares.items():
        sel = np.array([k["g"] == g for k in cells])
        dth = float(np.sum(c[sel] * (vals[sel] - theta))) / den
        psi = psi + wn * ((cohort == g).astype(float) - p_g) * dth
    return theta, psi


def staggered(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Callaway-Sant'Anna ATT of the module docstring."""
    prm = design.parameters
    control = prm.get("control", "never_treated")
    weight = prm.get("weight", "equal")
    p = _panel.load(panel, METHOD)
    warnings: list[str] = []
    wide = p.wide()
    complete = ~np.isnan(wide).any(axis=1)
    n_unbal = int((~complete).sum())
    if n_unbal:
        warnings.append(
            f"{n_unbal} unit(s) lack rows for some periods and are left out (balanced panel needed)"
        )
    cohort = np.where(p.cohort >= p.n_periods, -1, p.cohort)
    n_late = int(np.sum(p.cohort >= p.n_periods))
    if n_late:
        warnings.append(f"{n_late} treated unit(s) start after the panel ends: never treated here")
    first = complete & (cohort == 0)
    if first.any():
        warnings.append(
            f"{int(first.sum())} unit(s) treated from the first period have no pre-period and "
            "are left out"
        )
    keep = complete & (cohort != 0)
    y, cohort = wide[keep], cohort[keep]
    w = p.unit_weights(weight)[keep]
    n_tr = int(np.sum(cohort > 0))
    n_never = int(np.sum(cohort < 0))
    if n_tr < 2:
        raise EstimationError(
            f"{METHOD}: {n_tr} treated unit(s) with a pre-period; group-time ATTs with an "
            "influence-function SE need at least 2 (for one treated unit use synthetic_control)"
        )
    if control == "never_treated" and n_never == 0:
        raise EstimationError(
            f"{METHOD}: no never-treated unit to compare with; set control: not_yet_treated"
        )
    cells, skipped = _cells(y, w, cohort, control, p.n_periods)
    post_meas = [k for k in cells if k["t"] >= k["g"] and p.measurement[k["t"]]]
    skipped_post = [(g, t) for g, t in skipped if t >= g and p.measurement[t]]
    if skipped_post:
        warnings.append(
            f"{len(skipped_post)} post-treatment cohort-period cell(s) have no control units "
            "and are left out of the estimate: "
            + ", ".join(f"{p.period_label(g)}@{p.period_label(t)}" for g, t in skipped_post)
        )
    if not post_meas:
        raise EstimationError(
            f"{METHOD}: no treated cohort is observed in a measurement period with controls"
        )
    shares = {g: float(w[cohort == g].sum() / w.sum()) for g in sorted({k["g"] for k in cells})}
    small = [g for g in shares if np.sum(cohort == g) < 2]
    if small:
        warnings.append(
            f"{len(small)} cohort(s) have a single unit: their own variance is not estimable "
            "and the SE understates it"
        )
    c_all = [1.0 if (k["t"] >= k["g"] and p.measurement[k["t"]]) else 0.0 for k in cells]
    theta, psi = _aggregate(cells, c_all, shares, w, cohort, "att")
    obs, psi_o = _aggregate(cells, c_all, shares, w, cohort, "obs")
    se = float(math.sqrt(np.sum(psi**2)))
    z = _panel.t_quantile(design.confidence, math.inf)

    psis: dict = {}

    def agg_table(name, groups):
        rows = []
        for label, c in groups:
            out = _aggregate(cells, c, shares, w, cohort, "att")
            if out is None:
                continue
            th, ps = out
            psis[label] = ps
            s = float(math.sqrt(np.sum(ps**2)))
            rows.append(
                {
                    name: label,
                    "estimate": th,
                    "std_error": s,
                    "ci_low": th - z * s,
                    "ci_high": th + z * s,
                }
            )
        return rows

    events = sorted({k["t"] - k["g"] for k in cells})
    by_event = agg_table(
        "event_time", [(e, [float(k["t"] - k["g"] == e) for k in cells]) for e in events]
    )
    by_cohort = agg_table(
        "cohort",
        [(p.period_label(g), [float(k["g"] == g and k["t"] >= g) for k in cells]) for g in shares],
    )
    n_post = {g: sum(1 for k in cells if k["g"] == g and k["t"] >= g) for g in shares}
    grp = _aggregate(
        cells,
        [float(k["t"] >= k["g"]) / max(n_post[k["g"]], 1) for k in cells],
        shares,
        w,
        cohort,
        "att",
    )
    dyn = [r for r in by_event if r["event_time"] >= 0]
    diagnostics = {
        "control": control,
        "weight": weight,
        "variance": "influence function incl. estimated cohort shares, normal interval",
        "p_value": float(2 * (1 - _norm_cdf(abs(theta / se)))) if se > 0 else None,
        "group_time": [
            {
                "cohort": p.period_label(k["g"]),
                "period": p.period_label(k["t"]),
                "event_time": k["t"] - k["g"],
                "att": k["att"],
                "std_error": float(math.sqrt(np.sum(k["psi"] ** 2))),
                "n_treated": k["n_treated"],
                "n_control": k["n_control"],
            }
            for k in cells
        ],
        "event_time": by_event,
        "cohorts": by_cohort,
        "group_aggregate": None
        if grp is None
        else {"estimate": grp[0], "std_error": float(math.sqrt(np.sum(grp[1] ** 2)))},
        "dynamic_aggregate": None
        if not dyn
        else {
            "estimate": float(np.mean([r["estimate"] for r in dyn])),
            "std_error": float(
                np.sqrt(np.sum(np.mean([psis[r["event_time"]] for r in dyn], axis=0) ** 2))
            ),
        },
        "pre_period_cells": sum(1 for k in cells if k["t"] < k["g"]),
        "n_units_used": int(keep.sum()),
        "n_excluded_units": int((~keep).sum()),
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand="ATT (Callaway-Sant'Anna, simple aggregation)",
        estimate=theta,
        std_error=se,
        ci=(theta - z * se, theta + z * se),
        observed=obs,
        n_treated=n_tr,
        n_comparison=int(keep.sum()) - n_tr,
        diagnostics=diagnostics,
        rel_se=_panel.relative_se(theta, obs, psi, psi_o),
        warnings=warnings,
    )


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    estimand="ATT",
    fit=staggered,
    parameters={
        "control": ParamSpec(
            "string",
            default="never_treated",
            choices=CONTROLS,
            description="comparison units of each cohort: never treated, or never and not "
            "yet treated",
        ),
        "weight": ParamSpec(
            "string",
            default="equal",
            choices=_panel.WEIGHTS,
            description="units weighted equally (as the did package) or by exposure (mean "
            "denominator)",
        ),
    },
    published_diagnostics=frozenset(
        (
            "control",
            "weight",
            "variance",
            "p_value",
            "group_time",
            "event_time",
            "cohorts",
            "group_aggregate",
            "dynamic_aggregate",
            "pre_period_cells",
            "n_units_used",
            "n_excluded_units",
            "warnings",
        )
    ),
    description="staggered adoption DiD (Callaway and Sant'Anna 2021), group-time ATTs",
)
