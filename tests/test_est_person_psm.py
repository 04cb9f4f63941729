"""psm: matches, estimate and Abadie-Imbens variance computed by hand on a small cohort; caliper,
common support, matching without replacement, seeded ties, the balance table, failures."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from utfall.estimators.base import Design, EstimationError, get

# One covariate: the logit is a + b x with b > 0, so nearest on the logit = nearest on x.
CONTROL_X = [0.0, 1.0, 2.0, 3.0, 4.0, 5.5, 0.5, 4.6]
CONTROL_Y = [0.0, 10.0, 20.0, 35.0, 40.0, 60.0, 3.0, 47.0]
TREATED_X = [1.1, 2.9, 3.2, 5.0]
TREATED_Y = [15.0, 40.0, 41.0, 62.0]


def small(treated_x=TREATED_X, treated_y=TREATED_Y):
    x = CONTROL_X + treated_x
    return pl.DataFrame(
        {
            "person_id": [f"c{i}" for i in range(len(CONTROL_X))]
            + [f"t{i}" for i in range(len(treated_x))],
            "treated": pl.Series([0] * len(CONTROL_X) + [1] * len(treated_x), dtype=pl.Int8),
            "y": CONTROL_Y + treated_y,
            "x": x,
        }
    )


def sigma2(idx: int) -> float:
    """AI's conditional variance of control idx: J = 2 nearest other controls on x."""
    xs, ys = np.array(CONTROL_X), np.array(CONTROL_Y)
    others = [j for j in np.argsort(np.abs(xs - xs[idx]), kind="stable") if j != idx][:2]
    return 2 / 3 * (ys[idx] - ys[others].mean()) ** 2


def test_one_to_one_with_replacement_by_hand():
    res = get("psm").fit(small(), Design("y", {"propensity": "x"}))
    # nearest controls: 1.1 -> 1.0 (c1), 2.9 -> 3.0 (c3), 3.2 -> 3.0 (c3), 5.0 -> 4.6 (c7)
    yhat0 = np.array([10.0, 35.0, 35.0, 47.0])
    y1 = np.array(TREATED_Y)
    est = (y1 - yhat0).mean()
    assert res.estimate == pytest.approx(est, abs=1e-12)
    assert res.observed == pytest.approx(y1.mean())
    assert res.counterfactual == pytest.approx(yhat0.mean())
    # c3 is used twice: K = 2, K(K-1)/M^2 = 2
    v = (np.sum((y1 - yhat0 - est) ** 2) + 2 * sigma2(3)) / 16
    assert res.std_error == pytest.approx(np.sqrt(v), rel=1e-12)
    assert res.n_treated == 4 and res.n_comparison == 3
    pairs = sorted(zip(res.restricted["treated_id"], res.restricted["comparison_id"], strict=True))
    assert pairs == [("t0", "c1"), ("t1", "c3"), ("t2", "c3"), ("t3", "c7")]
    assert res.diagnostics["max_comparison_weight"] == 2
    text = json.dumps(res.to_dict(), allow_nan=False)
    assert "c3" not in text and "t0" not in text  # matches stay restricted


def test_one_to_two_with_replacement_by_hand():
    res = get("psm").fit(small(), Design("y", {"propensity": "x", "neighbours": 2}))
    # 1.1 -> c1 (1.0), c6 (0.5) ; 2.9 -> c3, c2 ; 3.2 -> c3, c4 ; 5.0 -> c7 (4.6), c5 (5.5)
    yhat0 = np.array([(10 + 3) / 2, (35 + 20) / 2, (35 + 40) / 2, (47 + 60) / 2])
    y1 = np.array(TREATED_Y)
    est = (y1 - yhat0).mean()
    assert res.estimate == pytest.approx(est, abs=1e-12)
    # K_c3 = 1/2 + 1/2 = 1, K2 = 1/4 + 1/4: K^2 - K2 = 1/2; every other K^2 - K2 = 0
    v = (np.sum((y1 - yhat0 - est) ** 2) + 0.5 * sigma2(3)) / 16
    assert res.std_error == pytest.approx(np.sqrt(v), rel=1e-12)


def test_without_replacement_is_greedy_from_the_highest_propensity():
    res = get("psm").fit(small(), Design("y", {"propensity": "x", "replacement": "without"}))
    # order 5.0 -> c7 (4.6); 3.2 -> c3 (3.0); 2.9 -> c2 (2.0, 0.9 away; c4 is 1.1); 1.1 -> c1
    yhat0 = np.array([10.0, 20.0, 35.0, 47.0])
    y1 = np.array(TREATED_Y)
    est = (y1 - yhat0).mean()
    assert res.estimate == pytest.approx(est, abs=1e-12)
    assert res.std_error == pytest.approx(np.sqrt(np.sum((y1 - yhat0 - est) ** 2) / 16))
    assert len(set(res.restricted["comparison_id"])) == 4


def test_without_replacement_runs_out_of_comparison_persons():
    res = get("psm").fit(
        small(), Design("y", {"propensity": "x", "replacement": "without", "neighbours": 3})
    )
    ids = list(res.restricted["comparison_id"])
    assert len(ids) == len(set(ids)) == 8  # 4 treated x 3 wanted, 8 available, each once
    assert res.n_comparison == 8


def test_caliper_drops_far_treated_and_warns():
    res = get("psm").fit(small(), Design("y", {"propensity": "x", "caliper": 0.07}))
    # 0.07 SD of the logit is narrower than some treated persons' nearest distance
    assert res.diagnostics["n_unmatched"] >= 1
    assert any("within the caliper" in w for w in res.warnings)
    assert res.n_treated == 4 - res.diagnostics["n_unmatched"]


def test_caliper_too_narrow_is_an_answer():
    with pytest.raises(EstimationError, match="no common support: [01] of 4 treated"):
        get("psm").fit(small(), Design("y", {"propensity": "x", "caliper": 1e-6}))


def test_common_support_drops_treated_beyond_the_comparison_range():
    frame = small(TREATED_X + [7.0], TREATED_Y + [80.0])
    res = get("psm").fit(frame, Design("y", {"propensity": "x"}))
    assert res.diagnostics["n_off_support"] == 1
    assert res.n_treated == 4
    assert any("common support" in w for w in res.warnings)
    kept = get("psm").fit(frame, Design("y", {"propensity": "x", "common_support": "none"}))
    assert kept.n_treated == 5


def cohort(n=3000, seed=2):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)  # discrete: many ties in the propensity
    z = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.5 * g + 0.7 * z)))).astype(int)
    y = 2 * g + z + 1.0 * d + rng.normal(size=n)
    return pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": y, "g": g.astype(str), "z": z}
    )


def test_ties_are_broken_by_the_plan_seed():
    frame = cohort()
    design = Design("y", {"propensity": "C(g)"}, seed=7)
    a = get("psm").fit(frame, design)
    b = get("psm").fit(frame, design)
    c = get("psm").fit(frame, Design("y", {"propensity": "C(g)"}, seed=8))
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert list(a.restricted["comparison_id"]) == list(b.restricted["comparison_id"])
    assert list(a.restricted["comparison_id"]) != list(c.restricted["comparison_id"])


def test_balance_table_before_and_after():
    res = get("psm").fit(cohort(), Design("y", {"propensity": "C(g) + z", "neighbours": 2}))
    table = {row["term"]: row for row in res.diagnostics["balance"]}
    assert set(table) == {"C(g)[T.1]", "C(g)[T.2]", "C(g)[T.3]", "z", "propensity logit"}
    z = table["z"]
    assert abs(z["smd_before"]) > 0.3
    assert abs(z["smd_after"]) < 0.1
    assert abs(z["smd_after"]) < abs(z["smd_before"])
    assert abs(res.estimate - 1.0) < 4 * res.std_error
    assert "balance" in get("psm").published_diagnostics


def test_imbalance_after_matching_is_a_warning():
    # strong selection on z and matching without replacement: the treated with high z use up
    # the few comparison persons with high z, so z stays imbalanced; with replacement it is not
    rng = np.random.default_rng(9)
    n = 1500
    z = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * z - 1)))).astype(int)
    frame = pl.DataFrame(
        {"person_id": [str(i) for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": z + d + rng.normal(size=n), "z": z}
    )
    without = get("psm").fit(frame, Design("y", {"propensity": "z", "replacement": "without"}))
    assert any("imbalance after matching (|SMD| > 0.1): z" in w for w in without.warnings)
    with_ = get("psm").fit(frame, Design("y", {"propensity": "z"}))
    assert not any("imbalance" in w for w in with_.warnings)
    smd = {r["term"]: r["smd_after"] for r in with_.diagnostics["balance"]}
    assert abs(smd["z"]) < 0.1


def test_too_few_comparison_persons_for_k():
    frame = small().filter((pl.col("treated") == 1) | (pl.col("x") < 1.5))
    with pytest.raises(EstimationError, match="too few comparison persons: 3 for 5"):
        get("psm").fit(frame, Design("y", {"propensity": "x", "neighbours": 5}))
