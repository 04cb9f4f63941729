"""Weighted least squares with unit and period fixed effects, cluster-robust (CR1) by unit.

Used by the TWFE estimate and the event study on any panel (``twfe.py``, ``event_study.py``).

Model: y_it = alpha_i + lambda_t + x_it' beta + e_it, row weights w_it. Unit effects are
absorbed by the weighted within transformation (v~_it = v_it - sum_t w_it v_it / sum_t w_it);
period effects are explicit dummies (first period dropped), also within-transformed. By
Frisch-Waugh-Lovell, beta is the WLS coefficient of y~ on [D~_period, x~].

Variance: CR1 clustered by unit, as Stata's ``xtreg, fe vce(cluster unit)`` and statsmodels'
``cov_type="cluster"`` on the within-transformed data:

    V = c B^-1 (sum_g s_g s_g') B^-1,  B = X~' W X~,  s_g = sum_{i in g} w_i x~_i e_i,
    c = G / (G - 1) * (N - 1) / (N - K)

with G units, N rows, K the columns of the within-transformed design (absorbed unit effects
are nested in the clusters and not counted). Inference: t with G - 1 df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utfall.estimators.base import EstimationError


@dataclass(frozen=True)
class FEFit:
    coef: np.ndarray  # the x coefficients
    vcov: np.ndarray  # CR1
    scores: np.ndarray  # (G, k): sqrt(c) B^-1 s_g rows for the x coefficients (influence)
    resid: np.ndarray
    x_within: np.ndarray  # within-transformed x after partialling period effects
    n_clusters: int
    n_obs: int
    k: int
    factor: float


def within(v: np.ndarray, unit: np.ndarray, w: np.ndarray, n_units: int) -> np.ndarray:
    """Weighted within-unit demeaning of a vector or the columns of a matrix."""
    sw = np.bincount(unit, weights=w, minlength=n_units)
    if v.ndim == 1:
        return v - (np.bincount(unit, weights=w * v, minlength=n_units) / sw)[unit]
    means = (
        np.stack(
            [np.bincount(unit, weights=w * v[:, j], minlength=n_units) for j in range(v.shape[1])],
            axis=1,
        )
        / sw[:, None]
    )
    return v - means[unit]


def fe_wls(
    y: np.ndarray,
    x: np.ndarray,
    unit: np.ndarray,
    period: np.ndarray,
    w: np.ndarray,
    n_units: int,
    n_periods: int,
    what: str,
) -> FEFit:
    """Fit the model of the module docstring; EstimationError if x is collinear with the
    fixed effects (``what`` names the term in the message)."""
    n = y.size
    dper = np.zeros((n, max(n_periods - 1, 0)))
    rows = np.flatnonzero(period > 0)
    dper[rows, period[rows] - 1] = 1.0
    xt = within(np.column_stack([dper, x]), unit, w, n_units)
    yt = within(y, unit, w, n_units)
    kx = x.shape[1]
    # period dummies without within-unit variation (a period only one unit has) are dropped
    diag = np.einsum("ni,ni,n->i", xt, xt, w)
    scale = max(1.0, float(diag.max())) if diag.size else 1.0
    keep_p = [j for j in range(dper.shape[1]) if diag[j] > 1e-12 * scale]
    cols = keep_p + list(range(dper.shape[1], dper.shape[1] + kx))
    xt = xt[:, cols]
    sq = np.sqrt(w)
    rank = np.linalg.matrix_rank(xt * sq[:, None])
    if rank < xt.shape[1]:
        raise EstimationError(
            f"singular design: {what} cannot be separated from the unit and period fixed "
            "effects (every unit treated at the same time with no untreated comparison, "
            "or no untreated period)"
        )
    bmat = np.einsum("ni,nj,n->ij", xt, xt, w)
    binv = np.linalg.inv(bmat)
    beta = binv @ np.einsum("ni,n->i", xt, w * yt)
    resid = yt - xt @ beta
    k = xt.shape[1]
    g = int(np.unique(unit).size)
    if g < 2:
        raise EstimationError("a cluster-robust variance needs at least 2 units")
    if n <= k:
        raise EstimationError(f"too few rows ({n}) for {k} coefficients")
    c = g / (g - 1) * (n - 1) / (n - k)
    contrib = xt * (w * resid)[:, None]
    s = np.stack([np.bincount(unit, weights=contrib[:, j], minlength=n_units) for j in range(k)], 1)
    infl = s @ binv * np.sqrt(c)  # (G, k), sums of squares give V
    vcov = infl.T @ infl
    sel = slice(k - kx, k)
    return FEFit(
        coef=beta[sel],
        vcov=vcov[sel, sel],
        scores=infl[:, sel],
        resid=resid,
        x_within=_partial(xt, w, k - kx),
        n_clusters=g,
        n_obs=n,
        k=k,
        factor=c,
    )


def _partial(xt: np.ndarray, w: np.ndarray, n_per: int) -> np.ndarray:
    """The x columns' residuals after partialling out the (within) period dummies."""
    if n_per == 0:
        return xt
    p, x = xt[:, :n_per], xt[:, n_per:]
    coef = np.linalg.lstsq(p * np.sqrt(w)[:, None], x * np.sqrt(w)[:, None], rcond=None)[0]
    return x - p @ coef
