"""its and historical (one treated series): statsmodels agreement (1e-6), known truth and
refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from published_panel_data import make_panel

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
