"""ipw and aipw: exact answers where the propensity model is saturated, the M-estimation
sandwich against a numerical sandwich of the same estimating equations, overlap failures and
warnings, trimming, the seeded bootstrap."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from utfall.estimators.base import Design, EstimationError, get


def strata(n=3000, seed=4):
    """Binary covariate g; the logit on C(g) is saturated, so e = the treated share in g."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    d = (rng.random(n) < np.where(g == 1, 0.6, 0.2)).astype(int)
    y = 1 + 3 * g + d * (1 + 2 * g) + rng.normal(size=n)
    return pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": y, "g": g.astype(str)}
    )


def stratified(frame, estimand):
    """Hand computation: stratum differences weighted by treated (ATT) or all (ATE) counts."""
    tot, weight = 0.0, 0.0
    for g in ("0", "1"):
        s = frame.filter(pl.col("g") == g)
        y, d = s["y"].to_numpy(), s["treated"].to_numpy()
        w = d.sum() if estimand == "ATT" else d.size
        tot += w * (y[d == 1].mean() - y[d == 0].mean())
        weight += w
    return tot / weight


@pytest.mark.parametrize("method", ["ipw", "aipw"])
@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
def test_saturated_propensity_gives_the_stratified_difference(method, estimand):
    frame = strata()
    res = get(method).fit(frame, Design("y", {"propensity": "C(g)", "estimand": estimand}))
    assert res.estimate == pytest.approx(stratified(frame, estimand), abs=1e-9)
    assert res.estimand == estimand
    assert res.observed - res.counterfactual == pytest.approx(res.estimate, abs=1e-12)
    if estimand == "ATT":
        y, d = frame["y"].to_numpy(), frame["treated"].to_numpy()
        assert res.observed == pytest.approx(y[d == 1].mean(), abs=1e-12)
    assert res.warnings == ()
    assert res.restricted["weight"].size == frame.height


def _numeric_sandwich(x, d, y, estimand, theta):
    """Var(theta) from the stacked estimating equations, Jacobian by central differences."""
    k = x.shape[1]

    def psi(th):
        b, mu1, mu0 = th[:k], th[k], th[k + 1]
        e = 1 / (1 + np.exp(-x @ b))
        if estimand == "ATT":
            a, c = d, (1 - d) * e / (1 - e)
        else:
            a, c = d / e, (1 - d) / (1 - e)
        return np.column_stack([x * (d - e)[:, None], a * (y - mu1), c * (y - mu0)])

    n = d.size
    jac = np.empty((k + 2, k + 2))
    for j in range(k + 2):
        h = np.zeros(k + 2)
        h[j] = 1e-6
        jac[:, j] = (psi(theta + h).mean(axis=0) - psi(theta - h).mean(axis=0)) / 2e-6
    p = psi(theta)
    meat = p.T @ p / n
    inv = np.linalg.inv(jac)
    return inv @ meat @ inv.T / n


@pytest.mark.parametrize("estimand", ["ATT", "ATE"])
def test_ipw_sandwich_matches_a_numerical_sandwich(estimand):
    rng = np.random.default_rng(8)
    n = 1500
    z = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + 0.8 * z)))).astype(int)
    y = 2 + z + 0.5 * d * (1 + z) + rng.normal(size=n)
    frame = pl.DataFrame({"person_id": [str(i) for i in range(n)], "treated": d, "y": y, "z": z})
    frame = frame.with_columns(pl.col("treated").cast(pl.Int8))
    res = get("ipw").fit(frame, Design("y", {"propensity": "z", "estimand": estimand}))
    from utfall.estimators.logit import fit_logit

    x = np.column_stack([np.ones(n), z])
    b = fit_logit(x, d.astype(float), ("1", "z")).coef
    theta = np.r_[b, res.observed, res.counterfactual]
    v = _numeric_sandwich(x, d.astype(float), y, estimand, theta)
    se = np.sqrt(v[2, 2] + v[3, 3] - 2 * v[2, 3])
    assert res.std_error == pytest.approx(se, rel=1e-5)
    # the relative effect's delta method on the same covariance
    o, cf = res.observed, res.counterfactual
    g = np.array([1 / cf, -o / cf**2])
    assert res.diagnostics["relative_se"] == pytest.approx(np.sqrt(g @ v[2:, 2:] @ g), rel=1e-5)


def selected(n=2000, seed=1, strength=1.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(strength * 2.5 * z - 1)))).astype(int)
    y = 10 + z + d + rng.normal(size=n)
    return pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": y, "z": z}
    )


@pytest.mark.parametrize("method", ["ipw", "aipw"])
def test_weak_overlap_is_a_warning_with_ess(method):
    res = get(method).fit(selected(strength=1.6), Design("y", {"propensity": "z"}))
    assert any("weak overlap" in w for w in res.warnings)
    assert 2 <= res.diagnostics["ess_comparison"] < 0.1 * res.n_comparison
    assert 0 < res.diagnostics["largest_weight_share_comparison"] < 1


@pytest.mark.parametrize("method", ["ipw", "aipw", "psm"])
def test_separated_groups_are_an_answer(method):
    frame = selected().with_columns((pl.col("treated").cast(pl.Float64) * 10).alias("sep"))
    with pytest.raises(EstimationError, match="separate treated from comparison"):
        get(method).fit(frame, Design("y", {"propensity": "z + sep"}))


def test_ate_without_overlap_for_most_persons_is_an_answer():
    # most comparison persons have propensities below every treated person's
    rng = np.random.default_rng(3)
    n0, n1 = 2000, 200
    z = np.r_[rng.normal(-6, 1, n0), rng.normal(0, 0.3, n1)]
    d = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    frame = pl.DataFrame(
        {"person_id": [str(i) for i in range(n0 + n1)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": rng.normal(size=n0 + n1), "z": z}
    )
    with pytest.raises(EstimationError, match="no common support|no usable overlap|separate"):
        get("ipw").fit(frame, Design("y", {"propensity": "z", "estimand": "ATE"}))


def test_trimming_drops_persons_and_says_so():
    frame = selected(strength=1.2)
    full = get("ipw").fit(frame, Design("y", {"propensity": "z", "estimand": "ATE"}))
    trimmed = get("ipw").fit(
        frame, Design("y", {"propensity": "z", "estimand": "ATE", "trim": 0.05})
    )
    n = trimmed.diagnostics["n_trimmed"]
    assert n > 0
    assert trimmed.n_treated + trimmed.n_comparison + n == frame.height
    assert any("trimmed" in w for w in trimmed.warnings)
    assert trimmed.estimate != full.estimate
    assert abs(trimmed.estimate - 1) < 0.2  # the effect is 1 everywhere


@pytest.mark.parametrize("method", ["ipw", "aipw"])
def test_bootstrap_is_seeded_and_close_to_the_sandwich(method):
    frame = selected(n=1500)
    params = {"propensity": "z", "inference": "bootstrap", "replications": 200}
    a = get(method).fit(frame, Design("y", params, seed=11))
    b = get(method).fit(frame, Design("y", params, seed=11))
    c = get(method).fit(frame, Design("y", params, seed=12))
    sandwich = get(method).fit(frame, Design("y", {"propensity": "z"}))
    assert a.to_dict() == b.to_dict()
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.estimate == sandwich.estimate
    assert a.std_error == pytest.approx(sandwich.std_error, rel=0.2)
    assert a.ci_low < a.estimate < a.ci_high
    assert a.diagnostics["se_type"] == "bootstrap percentile"


def test_aipw_is_doubly_robust_under_a_wrong_propensity():
    # the outcome model is right (y linear in z); the propensity omits z entirely (wrong)
    rng = np.random.default_rng(6)
    n = 4000
    z = rng.normal(size=n)
    w = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * z)))).astype(int)
    y = 3 * z + 2 * d + rng.normal(size=n)
    frame = pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": y, "z": z, "w": w}
    )
    res = get("aipw").fit(frame, Design("y", {"propensity": "w", "covariates": "z"}))
    naive = get("ipw").fit(frame, Design("y", {"propensity": "w"}))
    assert abs(res.estimate - 2) < 4 * res.std_error
    assert abs(naive.estimate - 2) > 1  # IPW with the wrong propensity is badly biased


def test_missing_propensity_formula_is_named():
    with pytest.raises(EstimationError, match="parameter propensity: give the right-hand side"):
        get("ipw").fit(selected(), Design("y", {}))


@pytest.mark.parametrize("method", ["ipw", "aipw", "psm"])
def test_category_only_among_treated_is_named(method):
    # quasi-complete separation: a level of g that only treated persons have
    rng = np.random.default_rng(1)
    n = 1000
    g = rng.integers(0, 3, n).astype(str)
    z = rng.normal(size=n)
    d = (rng.random(n) < 0.3).astype(int)
    g = np.where((d == 1) & (rng.random(n) < 0.1), "rare", g)
    frame = pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": z + d, "g": g, "z": z}
    )
    with pytest.raises(EstimationError, match=r"the term 'C\(g\)\[T.rare\]' predicts treatment"):
        get(method).fit(frame, Design("y", {"propensity": "C(g) + z"}))
