"""its and historical (one treated series): statsmodels agreement (1e-6), known truth and
refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from published_panel_data import make_panel
from scipy import stats

from utfall.estimators import registry
from utfall.estimators.base import Design, EstimationError
from utfall.estimators.historical import historical
from utfall.estimators.its import its, newey_west_lags


def _series(n=28, t0=20, level=-3.0, slope=-0.25, noise=1.0, seed=0, season=True):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    e = np.zeros(n)
    for i in range(n):  # AR(1) errors
        e[i] = (0.5 * e[i - 1] if i else 0) + rng.normal(0, noise)
    y = 50 + 0.3 * t + e + (np.array([0, 1.5, -1.0, 0.5])[t % 4] if season else 0)
    y = y + (t >= t0) * (level + slope * (t - t0))
    return y


def _frame(y, t0, with_comparison=False):
    rows = y[None, :]
    cohort = [t0]
    if with_comparison:
        rows = np.vstack([rows, y[None, :] + 1])
        cohort.append(None)
    return make_panel(rows, cohort)


@pytest.mark.parametrize(("model", "seasonality"),
                         [("level_and_slope", "quarter"), ("level", "none"),
                          ("level_and_slope", "none")])  # fmt: skip
def test_its_agrees_with_statsmodels_hac(model, seasonality):
    sm = pytest.importorskip("statsmodels.api")
    y = _series()
    r = its(_frame(y, 20), Design(outcome="y", parameters={"model": model,
                                                           "seasonality": seasonality,
                                                           "variance": "newey_west",
                                                           "hac_lags": -1}))  # fmt: skip
    n, t = y.size, np.arange(y.size, dtype=float)
    post = (t >= 20).astype(float)
    cols = [np.ones(n), t, post]
    if model == "level_and_slope":
        cols.append((t - 20) * post)
    if seasonality == "quarter":
        cols += [(t % 4 == q).astype(float) for q in (1, 2, 3)]
    ref = sm.OLS(y, np.column_stack(cols)).fit(
        cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(n)}
    )
    coefs = r.diagnostics["coefficients"]
    np.testing.assert_allclose([c["estimate"] for c in coefs], ref.params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([c["std_error"] for c in coefs], ref.bse, rtol=1e-6)
    assert r.diagnostics["hac_lags"] == 3  # floor(4 (28/100)^(2/9)) = floor(3.01)


def _its_design(y, t0, model="level_and_slope", seasonality="quarter"):
    n, t = y.size, np.arange(y.size, dtype=float)
    post = (t >= t0).astype(float)
    cols = [np.ones(n), t, post]
    if model == "level_and_slope":
        cols.append((t - t0) * post)
    if seasonality == "quarter":
        cols += [(t % 4 == q).astype(float) for q in (1, 2, 3)]
    return np.column_stack(cols)


def _reml_loglik(x, y, rho):
    """The restricted log-likelihood of AR(1) errors from the dense covariance matrix, with
    the scale profiled out: independent of its.py's Prais-Winsten transform."""
    n, k = x.shape
    idx = np.arange(n)
    r = rho ** np.abs(idx[:, None] - idx[None, :]) / (1 - rho * rho)  # Var(e)/sigma_u^2
    ri = np.linalg.inv(r)
    xtrx = x.T @ ri @ x
    b = np.linalg.solve(xtrx, x.T @ ri @ y)
    e = y - x @ b
    s2 = e @ ri @ e / (n - k)
    return -0.5 * (
        np.linalg.slogdet(r)[1] + np.linalg.slogdet(xtrx)[1] + (n - k) * math.log(s2) + (n - k)
    )


def test_its_ar1_reml_is_the_restricted_ml_and_gls_agrees_with_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    y = _series(n=40, t0=30)
    r = its(_frame(y, 30), Design(outcome="y", parameters={"seasonality": "quarter"}))
    rho = r.diagnostics["ar1_rho"]
    assert 0.05 < rho < 0.95  # the series has AR(1) errors with rho 0.5
    x = _its_design(y, 30)
    best = _reml_loglik(x, y, rho)
    for step in (-0.01, -0.001, 0.001, 0.01):  # rho maximises the restricted likelihood
        assert _reml_loglik(x, y, rho + step) < best
    idx = np.arange(y.size)
    sigma = rho ** np.abs(idx[:, None] - idx[None, :])
    ref = sm.GLS(y, x, sigma=sigma).fit()
    coefs = r.diagnostics["coefficients"]
    np.testing.assert_allclose([c["estimate"] for c in coefs], ref.params, rtol=1e-6)
    np.testing.assert_allclose([c["std_error"] for c in coefs], ref.bse, rtol=1e-6)
    # the interval: t with Satterthwaite df, fewer than the residual df, more than 1
    assert 1 <= r.diagnostics["df"] < y.size - x.shape[1] - 1
    q = (r.ci_high - r.ci_low) / 2 / r.std_error
    assert q == pytest.approx(stats.t.ppf(0.975, r.diagnostics["df"]), rel=1e-9)
    assert not any("optimistic" in w for w in r.warnings)
    nw = its(_frame(y, 30), Design(outcome="y", parameters={"variance": "newey_west"}))
    assert any("optimistic" in w for w in nw.warnings)


def test_its_satterthwaite_df_follows_the_noise_in_the_variance():
    """The df is 2 v^2 / Var(v): check it against the spread of the estimated variance
    itself, over series drawn from the fitted AR(1) model (a parametric bootstrap)."""
    y = _series(n=48, t0=36)
    fit = its(_frame(y, 36), Design(outcome="y", parameters={"seasonality": "quarter"}))
    x = _its_design(y, 36)
    c = np.zeros(x.shape[1])
    c[2], c[3] = 1.0, np.mean(np.arange(36, 48) - 36.0)
    from utfall.estimators.its import ar1_reml

    rng = np.random.default_rng(5)
    rho = fit.diagnostics["ar1_rho"]
    v = []
    for _ in range(400):
        e = np.zeros(48)
        e[0] = rng.normal(0, 1 / math.sqrt(1 - rho * rho))
        for i in range(1, 48):
            e[i] = rho * e[i - 1] + rng.normal()
        g = ar1_reml(x, x @ np.ones(x.shape[1]) + e, c)
        v.append(c @ g.vcov @ c)
    v = np.array(v)
    df_mc = 2 * v.mean() ** 2 / v.var()
    assert df_mc < 20  # far below the residual df of 41: rho's uncertainty dominates
    assert 0.5 * df_mc < fit.diagnostics["df"] < 2 * df_mc


def test_its_noise_free_level_and_slope_are_exact():
    y = _series(noise=0.0, season=False)
    r = its(_frame(y, 20), Design(outcome="y", parameters={}))
    # mean over post t = 20..27 of -3 - 0.25 (t - 20) = -3 - 0.25 * 3.5
    assert r.estimate == pytest.approx(-3.875, abs=1e-9)
    assert r.observed - r.counterfactual == pytest.approx(r.estimate, abs=1e-9)
    assert r.std_error == pytest.approx(0.0, abs=1e-9)


def test_its_refusals_and_warnings():
    y = _series()
    with pytest.raises(EstimationError, match="pre-period"):
        its(_frame(y, 2), Design(outcome="y", parameters={}))
    with pytest.raises(EstimationError, match="model: level"):
        its(_frame(y, 27), Design(outcome="y", parameters={"model": "level_and_slope"}))
    r = its(_frame(y, 20, with_comparison=True), Design(outcome="y", parameters={}))
    assert any("not used" in w for w in r.warnings)
    two = make_panel(np.vstack([y, y]), [20, 22])
    with pytest.raises(EstimationError, match="different times"):
        its(two, Design(outcome="y", parameters={}))


@pytest.mark.parametrize("kind", ["level", "trend"])
def test_historical_agrees_with_statsmodels_prediction(kind):
    sm = pytest.importorskip("statsmodels.api")
    y = _series(season=False, level=0.0, slope=0.0)
    r = historical(_frame(y, 20), Design(outcome="y", parameters={"baseline": kind}))
    t = np.arange(y.size, dtype=float)
    x = np.column_stack([np.ones_like(t), t]) if kind == "trend" else np.ones((t.size, 1))
    fit = sm.OLS(y[:20], x[:20]).fit()
    d = x[20:].mean(axis=0)
    pred = fit.get_prediction(d[None, :])
    cf = float(pred.predicted_mean[0])
    se = math.sqrt(fit.scale / 8 + float(pred.se_mean[0]) ** 2)
    assert r.counterfactual == pytest.approx(cf, rel=1e-9)
    assert r.estimate == pytest.approx(y[20:].mean() - cf, abs=1e-9)
    assert r.std_error == pytest.approx(se, rel=1e-9)
    q = float(__import__("scipy").stats.t.ppf(0.975, fit.df_resid))
    assert r.ci_high - r.estimate == pytest.approx(q * se, rel=1e-9)


def test_historical_trend_projection_is_exact_without_noise():
    t = np.arange(12.0)
    y = 10 + 0.5 * t + (t >= 8) * -2.0
    r = historical(_frame(y, 8), Design(outcome="y", parameters={"baseline": "trend"}))
    assert r.estimate == pytest.approx(-2.0, abs=1e-9)
    assert r.counterfactual == pytest.approx(10 + 0.5 * 9.5, abs=1e-9)
    lvl = historical(_frame(y, 8), Design(outcome="y", parameters={"baseline": "level"}))
    assert lvl.counterfactual == pytest.approx(10 + 0.5 * 3.5, abs=1e-9)  # trend ignored


def test_historical_refusals():
    y = np.arange(10.0)
    with pytest.raises(EstimationError, match="baseline period"):
        historical(_frame(y, 3), Design(outcome="y", parameters={"baseline": "trend"}))
    frame = _frame(y, 5).with_columns(phase=__import__("polars").lit("baseline"))
    with pytest.raises(EstimationError, match="no measurement period"):
        historical(frame, Design(outcome="y", parameters={"baseline": "level"}))


def test_registered():
    reg = registry()
    assert reg["its"].data == reg["historical"].data == "unit_panel"


def test_its_ar1_warns_near_a_random_walk_and_refuses_without_df():
    rng = np.random.default_rng(0)
    y = 50 + np.cumsum(rng.normal(size=60))  # random-walk errors: rho at its bound 0.99
    level = {"model": "level"}
    r = its(_frame(y, 48), Design(outcome="y", parameters=level))
    assert r.diagnostics["ar1_rho"] == pytest.approx(0.99, abs=1e-3)
    assert any("random walk" in w for w in r.warnings)
    assert r.diagnostics["df"] <= 60 - 3 - 1  # never more than the residual df
    calm = its(_frame(_series(n=48, t0=36), 36), Design(outcome="y", parameters={}))
    assert not any("random walk" in w or "could not" in w for w in calm.warnings)
    with pytest.raises(EstimationError, match="newey_west"):  # 4 periods, 3 coefficients + rho
        its(_frame(y[:4], 3), Design(outcome="y", parameters=level))
    nw = its(_frame(y[:4], 3), Design(outcome="y", parameters=level | {"variance": "newey_west"}))
    assert nw.diagnostics["df"] == 1
