"""What every person-level estimator promises: the same numbers and bytes whatever the row order
of the delivery, strict JSON, restricted detail kept out of the published dict, the outcome and
treatment refused as covariates, no relative effect against a non-positive counterfactual."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from utfall.estimators.base import Design, EstimationError, get

CASES = [
    ("diff_in_means", {"covariates": "C(g) + z"}),
    ("regression_adjustment", {"covariates": "C(g) + z"}),
    ("psm", {"propensity": "C(g)", "neighbours": 2}),  # discrete: ties broken by the seed
    ("psm", {"propensity": "C(g) + z", "replacement": "without", "caliper": 0.2}),
    ("ipw", {"propensity": "C(g) + z", "inference": "bootstrap", "replications": 100}),
    ("aipw", {"propensity": "C(g) + z", "estimand": "ATE"}),
]


def cohort(n=1200, seed=3, base=5.0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, n)
    z = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.5 * g + 0.5 * z)))).astype(int)
    y = base + g + z + d + rng.normal(size=n)
    return pl.DataFrame(
        {"person_id": [f"p{i:05d}" for i in range(n)], "treated": pl.Series(d, dtype=pl.Int8)}
        | {"y": y, "g": pl.Series(g, dtype=pl.Int8), "z": z}
    )


@pytest.mark.parametrize("method, params", CASES)
def test_row_order_changes_nothing(method, params):
    frame = cohort()
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=99)
    design = Design("y", params, seed=5)
    a = get(method).fit(frame, design)
    b = get(method).fit(shuffled, design)
    text = json.dumps(a.to_dict(), allow_nan=False, sort_keys=True)
    assert text == json.dumps(b.to_dict(), allow_nan=False, sort_keys=True)
    for key, value in a.restricted.items():
        if value is not None:
            np.testing.assert_array_equal(np.asarray(value), np.asarray(b.restricted[key]))
    assert "restricted" not in a.to_dict()
    assert set(a.diagnostics) <= get(method).published_diagnostics, (
        set(a.diagnostics) - get(method).published_diagnostics
    )
    assert "p00001" not in text  # no person identifiers in what may be published


@pytest.mark.parametrize("column", ["y", "treated", "person_id"])
@pytest.mark.parametrize(
    "method, param", [("regression_adjustment", "covariates"), ("ipw", "propensity")]
)
def test_outcome_and_treatment_are_not_covariates(method, param, column):
    with pytest.raises(EstimationError, match=f"parameter {param}: '{column}' is the person"):
        get(method).fit(cohort(), Design("y", {param: f"z + {column}"}))


def test_relative_effect_is_nan_against_a_non_positive_counterfactual():
    res = get("diff_in_means").fit(cohort(base=-20.0), Design("y", {}))
    assert res.counterfactual < 0
    assert math.isnan(res.relative_estimate) and math.isnan(res.relative_ci_low)
    assert res.to_dict()["relative_estimate"] is None
    json.dumps(res.to_dict(), allow_nan=False)


def test_missing_person_id_is_named():
    frame = cohort().with_columns(
        pl.when(pl.col("z") > 1).then(None).otherwise(pl.col("person_id")).alias("person_id")
    )
    with pytest.raises(EstimationError, match="'person_id' is missing in"):
        get("ipw").fit(frame, Design("y", {"propensity": "z"}))


def test_plan_check_catches_bad_formulas_before_data_arrive():
    check = get("ipw").check
    assert check({"propensity": "age + C(educ)"}) == []
    assert check({"propensity": ""})[0][0] == "propensity"
    (name, sentence), *_ = check({"propensity": "__import__('os')"})
    assert name == "propensity" and "unknown function" in sentence
    assert get("aipw").check({"propensity": "a", "covariates": "b +"})[0][0] == "covariates"
    assert get("diff_in_means").check({"covariates": ""}) == []
