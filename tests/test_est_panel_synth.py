"""synthetic_control: the weight solver reaches the optimum (KKT, a second solver), known
truth, the placebo test and its inverted interval, refusals."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from published_panel_data import make_panel
from scipy import optimize

from utfall.estimators import registry
from utfall.estimators.base import Design, EstimationError
from utfall.estimators.synthetic_control import simplex_weights, synthetic_control

D = Design(outcome="y", parameters={})


def _factor_panel(seed, n_donors=30, n_t=30, t0=20, effect=2.0, noise=0.3):
    rng = np.random.default_rng(seed)
    f = rng.normal(0, 1, (n_t, 3)).cumsum(0)
    lam = rng.uniform(0, 1, (n_donors + 1, 3))
    y = 20 + lam @ f.T + rng.normal(0, noise, (n_donors + 1, n_t))
    y[0] = 0.5 * y[1] + 0.3 * y[2] + 0.2 * y[3] + rng.normal(0, noise, n_t)
    y[0, t0:] += effect
    return y, [t0] + [None] * n_donors


def _kkt_gap(a, b, w):
    """Largest violation of the simplex KKT conditions of min ||a w - b||^2."""
    grad = 2 * a.T @ (a @ w - b)
    support = w > 1e-9
    mu = grad[support].mean()
    scale = max(1.0, np.abs(grad).max())
    return (
        max(np.abs(grad[support] - mu).max(), max(0.0, mu - grad[~support].min(initial=mu))) / scale
    )


@pytest.mark.parametrize("seed", range(6))
def test_solver_meets_kkt_and_beats_a_second_solver(seed):
    rng = np.random.default_rng(seed)
    t0, j = rng.integers(5, 40), rng.integers(3, 60)
    a = rng.normal(0, 1, (t0, j)).cumsum(0) * rng.uniform(0.1, 100)
    b = a @ rng.dirichlet(np.ones(j) * 0.3) + rng.normal(0, 0.5 * a.std(), t0)
    w = simplex_weights(a, b)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert _kkt_gap(a, b, w) < 1e-7
    assert not np.allclose(w, 1 / j)  # not stopped at the uniform start

    def obj(v):
        return float(np.sum((a @ v - b) ** 2))

    best = math.inf
    for start in (np.full(j, 1 / j), np.eye(j)[0], rng.dirichlet(np.ones(j))):
        r = optimize.minimize(
            obj,
            start,
            method="SLSQP",
            bounds=[(0, 1)] * j,
            constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
            options={"maxiter": 1000, "ftol": 1e-14},
        )
        best = min(best, obj(np.clip(r.x, 0, None) / np.clip(r.x, 0, None).sum()))
    assert obj(w) <= best * (1 + 1e-8) + 1e-12


def test_exact_convex_combination_is_recovered():
    y, cohort = _factor_panel(1, n_donors=8, n_t=30, t0=20, noise=0.3)  # donors independent
    y[0] = 0.5 * y[1] + 0.3 * y[2] + 0.2 * y[3]
    y[0, 20:] += 2.0
    r = synthetic_control(make_panel(y, cohort), D)
    w = r.restricted["donor_weights"]
    assert w["u001"] == pytest.approx(0.5, abs=1e-8) and w["u002"] == pytest.approx(0.3, abs=1e-8)
    assert r.estimate == pytest.approx(2.0, abs=1e-8)
    assert r.diagnostics["pre_rmspe"] == pytest.approx(0.0, abs=1e-8)
    assert "donor_weights" not in r.to_dict()["diagnostics"]


def test_placebo_p_value_and_inverted_interval_by_brute_force():
    y, cohort = _factor_panel(2, n_donors=39, effect=3.0)
    r = synthetic_control(make_panel(y, cohort), D)
    assert r.diagnostics["p_value"] == pytest.approx(1 / 40)
    assert r.ci_low < 3.0 < r.ci_high
    # brute force: p(tau) from the stored gaps and placebo ratios
    gaps = np.array([g["gap"] for g in r.diagnostics["gaps"]])
    post = np.array([g["post"] for g in r.diagnostics["gaps"]])
    pre_r = r.diagnostics["pre_rmspe"]
    rho = np.array(list(r.restricted["placebo_ratios"].values()))
    for tau in np.linspace(r.ci_low - 1, r.ci_high + 1, 401):
        ratio = np.sqrt(np.mean((gaps[post] - tau) ** 2)) / pre_r
        p = (1 + np.sum(rho >= ratio)) / 40
        inside = r.ci_low + 1e-9 < tau < r.ci_high - 1e-9
        outside = tau < r.ci_low - 1e-9 or tau > r.ci_high + 1e-9
        if inside:
            assert p > 0.05
        if outside:
            assert p <= 0.05


def test_too_few_donors_give_an_unbounded_interval_with_a_warning():
    y, cohort = _factor_panel(3, n_donors=10)
    r = synthetic_control(make_panel(y, cohort), D)
    assert r.ci_low == -math.inf and r.ci_high == math.inf
    assert r.to_dict()["ci_low"] is None
    assert any("unbounded" in w for w in r.warnings)


def test_poor_pre_fit_warns_or_refuses():
    y, cohort = _factor_panel(4)
    y[0] += 15.0  # above every donor: no convex combination fits
    frame = make_panel(y, cohort)
    r = synthetic_control(frame, D)
    assert any("poorly" in w for w in r.warnings) and any("outside" in w for w in r.warnings)
    with pytest.raises(EstimationError, match="poorly"):
        synthetic_control(frame, Design(outcome="y", parameters={"pre_fit": "error"}))


def test_predictor_matching_uses_the_column():
    y, cohort = _factor_panel(5, n_donors=20)
    frame = make_panel(y, cohort)
    # donors 1-3 (the true ones) share the treated unit's predictor value
    x = pl.Series([1.0 if int(u[1:]) <= 3 else 0.0 for u in frame["unit_id"]])
    frame = frame.with_columns(x=x)
    r = synthetic_control(
        frame, Design(outcome="y", parameters={"predictors": "x", "predictor_weight": 100.0})
    )
    w = r.restricted["donor_weights"]
    plain = synthetic_control(frame, D).restricted["donor_weights"]
    on_x = sum(w[f"u{k:03d}"] for k in (1, 2, 3))
    assert on_x == pytest.approx(1.0, abs=1e-3)
    assert on_x > sum(plain[f"u{k:03d}"] for k in (1, 2, 3))
    with pytest.raises(EstimationError, match="lacks column"):
        synthetic_control(frame, Design(outcome="y", parameters={"predictors": "nope"}))


def test_refusals():
    y, _ = _factor_panel(6, n_donors=5)
    with pytest.raises(EstimationError, match="exactly one treated"):
        synthetic_control(make_panel(y, [20, 20, None, None, None, None]), D)
    with pytest.raises(EstimationError, match="pre-period"):
        synthetic_control(make_panel(y, [1, None, None, None, None, None]), D)
    with pytest.raises(EstimationError, match="donor"):
        synthetic_control(make_panel(y[:2], [20, None]), D)


def test_deterministic_and_registered():
    y, cohort = _factor_panel(7)
    a = synthetic_control(make_panel(y, cohort), D).to_dict()
    b = synthetic_control(make_panel(y, cohort), D).to_dict()
    assert a == b
    assert registry()["synthetic_control"].data == "unit_panel"
