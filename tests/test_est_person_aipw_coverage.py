"""aipw's influence-function standard error: the analytic influence of every person equals the
numerical derivative of the refitted estimator with respect to that person's weight (the
infinitesimal jackknife, propensity and outcome models refitted), and in simulation the SE
matches the spread of the estimates and the interval covers.

Before the fix the SE held the two models fixed: right to first order only when both models
are right. With one wrong (the case double robustness is for) it was not: 1.41 x the Monte
Carlo SD with x left out of study_person's outcome model, and it missed the numerical
derivative below by about 1 %.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.special import expit

from utfall.estimators.base import Design, get

FORMULA = "b + age + C(sex) + C(clinic)"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "study_person.py"


def _study():
    spec = importlib.util.spec_from_file_location("study_person_aipw", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cohort(n: int, seed: int, square: float = 0.0, effect: float = -1.5) -> pl.DataFrame:
    """The health bond's selection (tests/test_naive_and_relative.py): P(treated) =
    logistic(b - 44.5), b ~ U(42, 47), so e from 0.08 to 0.92; y(0) linear in b plus
    ``square`` (b - 44.5)^2, which the outcome model (linear in b) then misses."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(42, 47, n)
    d = (rng.uniform(size=n) < expit(b - 44.5)).astype(np.int8)
    y = -2.0 - 0.8 * (b - 44.5) + square * (b - 44.5) ** 2 + effect * d + rng.normal(0, 1, n)
    return pl.DataFrame(
        {
            "person_id": [f"p{i:06d}" for i in range(n)],
            "treated": d,
            "y": y,
            "b": b,
            "age": rng.integers(50, 61, n).astype(float),
            "sex": rng.choice(["F", "M"], n),
            "clinic": rng.choice(["a", "b", "c"], n),
        }
    )


def _weighted_aipw(x, xo, d, y, f, estimand):
    """(mu1, mu0) of aipw with frequency weights f, every model refitted: an independent
    implementation of the module docstring's formulas (Newton logit, weighted OLS)."""
    beta = np.zeros(x.shape[1])
    for _ in range(30):
        e = expit(x @ beta)
        step = np.linalg.solve((x * (f * e * (1 - e))[:, None]).T @ x, x.T @ (f * (d - e)))
        beta += step
        if np.max(np.abs(step)) < 1e-13:
            break
    e = expit(x @ beta)

    def model(arm):
        wa = f * arm
        return xo @ np.linalg.solve((xo * wa[:, None]).T @ xo, xo.T @ (wa * y))

    def hajek(w):
        return np.sum(w * y) / np.sum(w)

    t, c = f * d, f * (1 - d)
    m0 = model(1 - d)
    if estimand == "ATT":
        w = c * e / (1 - e)
        return hajek(t), np.sum(t * m0) / t.sum() + np.sum(w * (y - m0)) / w.sum()
    m1 = model(d)
    w1, w0 = t / e, c / (1 - e)
    mu1 = np.sum(f * m1) / f.sum() + np.sum(w1 * (y - m1)) / w1.sum()
    return mu1, np.sum(f * m0) / f.sum() + np.sum(w0 * (y - m0)) / w0.sum()


@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
@pytest.mark.parametrize("square", [0.0, 0.6])
def test_influence_se_is_the_infinitesimal_jackknife_of_the_refitted_estimator(estimand, square):
    n = 300
    frame = cohort(n, 3, square=square)
    params = {"propensity": "b + age", "covariates": "b + C(sex)", "estimand": estimand}
    res = get("aipw").fit(frame, Design("y", params))
    b, age, d, y = (frame[c].to_numpy().astype(float) for c in ("b", "age", "treated", "y"))
    x = np.column_stack([np.ones(n), b, age])
    xo = np.column_stack([np.ones(n), b, frame["sex"].to_numpy() == "M"])
    ones = np.ones(n)
    mu1, mu0 = _weighted_aipw(x, xo, d, y, ones, estimand)
    assert (res.observed, res.counterfactual) == pytest.approx((mu1, mu0), abs=1e-10)
    h = 1e-6
    phi = np.empty((n, 2))  # d (mu1, mu0) / d (weight of person i)
    for i in range(n):
        up, down = ones.copy(), ones.copy()
        up[i] += h
        down[i] -= h
        hi, lo = (_weighted_aipw(x, xo, d, y, f, estimand) for f in (up, down))
        phi[i] = np.subtract(hi, lo) / (2 * h)
    s = phi.T @ phi
    assert res.std_error == pytest.approx(np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1]), rel=1e-6)
    if res.counterfactual > 0:
        g = np.array([1 / mu0, -mu1 / mu0**2])
        assert res.diagnostics["relative_se"] == pytest.approx(np.sqrt(g @ s @ g), rel=1e-6)


def simulate(n, reps, square, estimand="ATT"):
    """(estimates, SEs, covered) of aipw with the health bond's formulas over ``reps`` cohorts."""
    params = {"propensity": FORMULA, "covariates": FORMULA, "estimand": estimand}
    out = []
    for seed in range(reps):
        r = get("aipw").fit(cohort(n, 10_000 + seed, square), Design("y", params))
        out.append((r.estimate, r.std_error, r.ci_low <= -1.5 <= r.ci_high))
    return np.array(out)


def test_se_matches_the_spread_when_only_the_propensity_is_right():
    # scripts/study_person.py's cohort with x (which drives treatment and outcome) left out of
    # the outcome model: 200 cohorts of 1000, Monte Carlo SE of the SD 5 %. The SE that held
    # the models fixed was 1.41 x the SD here (100 cohorts), 1.49 x in the study's 500 x 2000
    study = _study()
    params = {"propensity": study.FORMULA, "covariates": study.NO_X}
    cohorts = (study.simulate_cohort(1000, 30_000 + s) for s in range(200))
    fits = [get("aipw").fit(frame, Design("y", params)) for frame in cohorts]
    estimates = np.array([r.estimate for r in fits])
    ratio = np.mean([r.std_error for r in fits]) / estimates.std(ddof=1)
    assert 0.85 < ratio < 1.15


@pytest.mark.coverage
@pytest.mark.parametrize("square", [0.0, 0.6])
@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
def test_coverage_on_the_health_bond_selection(square, estimand):
    # 1000 cohorts of 3000 persons: Monte Carlo SE of the coverage 0.7 points, of the SD 2.2 %.
    # At 800 persons the SE is about 4 % below the SD (a finite-sample shortfall that ipw's
    # sandwich shares) and the coverage about 94 % (91.3 % for the ATT with the square over
    # 1000 cohorts): see the module docstring of utfall/estimators/aipw.py
    a = simulate(3000, 1000, square, estimand)
    assert abs(a[:, 0].mean() - -1.5) < 4 * a[:, 0].std(ddof=1) / np.sqrt(len(a))
    assert 0.93 <= a[:, 2].mean() <= 0.97
    assert 0.93 <= a[:, 1].mean() / a[:, 0].std(ddof=1) <= 1.07
