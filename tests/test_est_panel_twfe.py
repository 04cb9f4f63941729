"""twfe: agreement with statsmodels (1e-6), the published mpdta TWFE number, known truth and
the inputs that must be refused."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from published_panel_data import make_panel

from utfall.estimators import registry
from utfall.estimators._panel import load
from utfall.estimators.base import Design, EstimationError
from utfall.estimators.twfe import twfe

D = Design(outcome="y", parameters={"weight": "exposure"})


def _statsmodels_twfe(frame: pl.DataFrame, weight: str):
    """statsmodels WLS on the weighted within-transformed data, cluster by unit (CR1)."""
    sm = pytest.importorskip("statsmodels.api")
    p = load(frame, "twfe")
    w = p.row_weights(weight)
    g = p.cohort[p.unit]
    d = ((g >= 0) & (p.period >= g)).astype(float)
    dper = np.zeros((p.y.size, p.n_periods - 1))
    r = p.period > 0
    dper[np.flatnonzero(r), p.period[r] - 1] = 1.0
    x = np.column_stack([dper, d])

    def within(v):
        sw = np.bincount(p.unit, weights=w)
        if v.ndim == 1:
            return v - (np.bincount(p.unit, weights=w * v) / sw)[p.unit]
        return np.column_stack([within(v[:, j]) for j in range(v.shape[1])])

    res = sm.WLS(within(p.y), within(x), weights=w).fit(
        cov_type="cluster", cov_kwds={"groups": p.unit}
    )
    return float(res.params[-1]), float(res.bse[-1])


@pytest.mark.parametrize(
    ("loader", "weight"), [("castle", "exposure"), ("castle", "equal"), ("mpdta", "equal")]
)
def test_agrees_with_statsmodels_on_published_panels(loader, weight):
    """Case: castle doctrine (Cheng and Hoekstra; causaldata) weighted by popwt and not,
    mpdta (Callaway and Sant'Anna; moderndid). Tolerance 1e-6 relative."""
    import published_panel_data as pub

    frame = getattr(pub, loader)()
    r = twfe(frame, Design(outcome="y", parameters={"weight": weight}))
    b, se = _statsmodels_twfe(frame, weight)
    assert r.estimate == pytest.approx(b, rel=1e-6, abs=1e-9)
    assert r.std_error == pytest.approx(se, rel=1e-6)


def test_mpdta_published_twfe():
    """Published: feols(lemp ~ treat | countyreal + year, cluster = countyreal) on mpdta gives
    -0.0365, the TWFE number the did/fixest documentation contrasts with CS's -0.040.
    Tolerance: the printed 4 decimals."""
    import published_panel_data as pub

    r = twfe(pub.mpdta(), Design(outcome="lemp", parameters={"weight": "equal"}))
    assert r.estimate == pytest.approx(-0.0365, abs=5e-5)
    assert r.n_treated == 191 and r.n_comparison == 309
    assert any("different times" in w for w in r.warnings)


def test_noise_free_constant_effect_is_exact():
    rng = np.random.default_rng(1)
    a, lam = rng.normal(10, 2, 8), rng.normal(0, 1, 6)
    cohort = [2, 2, 3, 4, None, None, None, None]
    y = a[:, None] + lam[None, :]
    for u, c in enumerate(cohort):
        if c is not None:
            y[u, c:] += -1.5
    den = rng.uniform(50, 150, y.shape)
    r = twfe(make_panel(y, cohort, den), D)
    assert r.estimate == pytest.approx(-1.5, abs=1e-10)
    assert r.std_error == pytest.approx(0.0, abs=1e-9)
    assert r.observed - r.counterfactual == pytest.approx(r.estimate)
    es = {c["event_time"]: c["estimate"] for c in r.diagnostics["event_study"]["coefficients"]}
    assert es[-2] == pytest.approx(0.0, abs=1e-9) and es[0] == pytest.approx(-1.5, abs=1e-9)


def test_event_study_of_a_two_group_panel_matches_group_differences():
    """Balanced, equal weights, one cohort: the event-time coefficient at e equals the
    treated-minus-comparison mean change from the reference period (e = -1)."""
    rng = np.random.default_rng(2)
    y = rng.normal(5, 1, (10, 6))
    cohort = [3] * 4 + [None] * 6
    r = twfe(make_panel(y, cohort), Design(outcome="y", parameters={"weight": "equal"}))
    coefs = {c["event_time"]: c["estimate"] for c in r.diagnostics["event_study"]["coefficients"]}
    ch = y - y[:, [2]]
    for e in (-3, -2, 0, 1, 2):
        expect = ch[:4, 3 + e].mean() - ch[4:, 3 + e].mean()
        assert coefs[e] == pytest.approx(expect, abs=1e-10)


def test_one_treated_unit_is_refused_with_a_pointer():
    y = np.random.default_rng(3).normal(size=(5, 6))
    with pytest.raises(EstimationError, match="synthetic_control"):
        twfe(make_panel(y, [3, None, None, None, None]), D)


def test_no_pre_period_and_no_comparison_is_refused():
    y = np.random.default_rng(4).normal(size=(4, 5))
    with pytest.raises(EstimationError, match="no untreated rows"):
        twfe(make_panel(y, [0, 0, 0, 0]), D)


def test_all_treated_at_once_without_comparison_is_singular():
    y = np.random.default_rng(5).normal(size=(4, 5))
    with pytest.raises(EstimationError, match="singular design"):
        twfe(make_panel(y, [2, 2, 2, 2]), D)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: pl.concat([f, f.head(1)]), "repeat a"),
        (lambda f: f.with_columns(denominator=pl.lit(0.0)), "positive"),
        (lambda f: f.drop("treatment_start"), "lacks column"),
        (
            lambda f: f.with_columns(
                treatment_start=pl.when(pl.col("group") == "comparison")
                .then(pl.lit(dt.date(2020, 1, 1)))
                .otherwise(pl.col("treatment_start"))
            ),
            "comparison unit",
        ),
        (lambda f: f.with_columns(group=pl.lit("control")), "unknown group"),
        (lambda f: f.with_columns(numerator=pl.lit(float("nan"))), "non-finite"),
    ],
)
def test_bad_panels_are_refused(mutate, message):
    y = np.random.default_rng(6).normal(size=(6, 5))
    frame = make_panel(y, [2, 2, 3, None, None, None])
    with pytest.raises(EstimationError, match=message):
        twfe(mutate(frame), D)


def test_registered():
    est = registry()["twfe"]
    assert est.data == "unit_panel" and "event_study" in est.published_diagnostics


def test_event_study_on_a_staggered_panel_without_never_treated():
    """Only timing identifies the effects: the earliest event time becomes a second reference
    (otherwise the dummies are collinear with the fixed effects); a bump three periods before
    adoption and the effect at adoption are found. (A linear pre-trend is not identified
    without never-treated units, so the bump is not linear.)"""
    rng = np.random.default_rng(8)
    cohort = [2] * 6 + [3] * 6 + [5] * 6
    y = rng.normal(0, 0.1, (18, 8)) + rng.normal(0, 1, (18, 1)) + rng.normal(0, 1, (1, 8))
    for u, g in enumerate(cohort):
        e = np.arange(8) - g
        y[u] += 1.0 * (e == -3) + 2.0 * (e >= 0)
    r = twfe(make_panel(y, cohort), Design(outcome="y", parameters={"weight": "equal"}))
    es = r.diagnostics["event_study"]
    assert es["references"] == [-5, -1]
    by_e = {c["event_time"]: c for c in es["coefficients"]}
    assert by_e[-5]["reference"] and by_e[-1]["reference"] and not by_e[-3]["reference"]
    assert by_e[-3]["estimate"] == pytest.approx(1.0, abs=0.2)
    assert by_e[0]["estimate"] == pytest.approx(2.0, abs=0.2)
    assert by_e[-2]["estimate"] == pytest.approx(0.0, abs=0.2)
    assert es["pre_test"]["p_value"] < 1e-3
