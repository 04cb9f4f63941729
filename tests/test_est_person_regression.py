"""diff_in_means, regression_adjustment and the logit against statsmodels (reference
implementation, test-only dependency) to 1e-6, and their failure modes."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from utfall.estimators.base import Design, EstimationError, get, registry
from utfall.estimators.logit import fit_logit

TOL = 1e-6  # issue 7: regression-based estimators agree with statsmodels to 1e-6
RHS = "age + I(age**2) + C(educ) + x"


def cohort(n=400, seed=5, effect=2.0):
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 100, n)
    educ = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-(0.02 * (age - 60) + 0.5 * x)))).astype(int)
    y = 5 + 0.001 * age**2 + (educ == "c") + x + effect * d + rng.normal(size=n) * (1 + d)
    return pl.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "treated": pl.Series(d, dtype=pl.Int8),
            "y": y,
            "age": pl.Series(age, dtype=pl.Int8),
            "educ": educ,
            "x": pl.Series(x, dtype=pl.Float32),
        }
    )


def pandas(frame: pl.DataFrame):
    pdf = frame.to_pandas()
    pdf["age"] = pdf["age"].astype(float)
    pdf["x"] = pdf["x"].astype(float)
    return pdf


def test_person_estimators_are_registered():
    names = {"diff_in_means", "regression_adjustment", "psm", "ipw", "aipw"}
    reg = registry()
    assert names <= set(reg)
    for n in names:
        assert reg[n].data == "person"
        assert reg[n].published_diagnostics


@pytest.mark.parametrize("hc", ["HC0", "HC1", "HC2", "HC3"])
def test_regression_adjustment_matches_statsmodels(hc):
    frame = cohort()
    res = get("regression_adjustment").fit(frame, Design("y", {"covariates": RHS, "hc": hc}))
    ref = smf.ols(f"y ~ treated + {RHS}", pandas(frame)).fit(cov_type=hc)
    coefs, ses = res.diagnostics["coefficients"], res.diagnostics["std_errors"]
    for name in ref.params.index:
        ours = name.replace(" ", "")
        assert coefs[ours] == pytest.approx(ref.params[name], abs=TOL, rel=TOL)
        assert ses[ours] == pytest.approx(ref.bse[name], abs=TOL, rel=TOL)
    assert res.estimate == pytest.approx(ref.params["treated"], abs=TOL)
    assert res.std_error == pytest.approx(ref.bse["treated"], abs=TOL)
    # t interval with n - p df, as statsmodels' conf_int under use_t
    ref_t = smf.ols(f"y ~ treated + {RHS}", pandas(frame)).fit(cov_type=hc, use_t=True)
    lo, hi = ref_t.conf_int().loc["treated"]
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), abs=TOL)
    assert res.observed - res.counterfactual == pytest.approx(res.estimate, abs=1e-9)
    assert res.diagnostics["se_type"] == hc


def test_diff_in_means_is_neyman_and_statsmodels_hc2():
    frame = cohort()
    res = get("diff_in_means").fit(frame, Design("y", {}))
    ref = smf.ols("y ~ treated", pandas(frame)).fit(cov_type="HC2")
    assert res.estimate == pytest.approx(ref.params["treated"], abs=TOL)
    assert res.std_error == pytest.approx(ref.bse["treated"], abs=TOL)
    y, d = frame["y"].to_numpy(), frame["treated"].to_numpy()
    neyman = np.sqrt(y[d == 1].var(ddof=1) / d.sum() + y[d == 0].var(ddof=1) / (d == 0).sum())
    assert res.std_error == pytest.approx(neyman, rel=1e-12)
    assert res.counterfactual == pytest.approx(y[d == 0].mean(), rel=1e-12)
    assert res.observed == pytest.approx(y[d == 1].mean(), rel=1e-12)
    assert res.relative_estimate == pytest.approx(y[d == 1].mean() / y[d == 0].mean() - 1)
    assert res.estimand == "ATE"


def test_diff_in_means_lin_matches_statsmodels_hc2():
    frame = cohort()
    pdf = pandas(frame)
    # Lin (2013): covariate terms centred at their means, fully interacted with treatment
    dm = get("diff_in_means")
    res = dm.fit(frame, Design("y", {"covariates": "age + x"}))
    for c in ("age", "x"):
        pdf[c + "_c"] = pdf[c] - pdf[c].mean()
    ref = smf.ols("y ~ treated * (age_c + x_c)", pdf).fit(cov_type="HC2")
    assert res.estimate == pytest.approx(ref.params["treated"], abs=TOL)
    assert res.std_error == pytest.approx(ref.bse["treated"], abs=TOL)
    assert res.counterfactual == pytest.approx(ref.params["Intercept"], abs=TOL)
    assert res.diagnostics["adjusted"] is True


def test_logit_matches_statsmodels():
    frame = cohort(n=800)
    pdf = pandas(frame)
    ref = smf.logit(f"treated ~ {RHS}", pdf).fit(disp=0, method="newton")
    from utfall.estimators.propensity import propensity_design

    x, names = propensity_design(frame, RHS)
    fit = fit_logit(x, frame["treated"].to_numpy().astype(float), names)
    order = [n.replace(" ", "") for n in ref.params.index]
    pos = [names.index(n) for n in order]
    np.testing.assert_allclose(fit.coef[pos], ref.params.to_numpy(), atol=TOL, rtol=TOL)
    se = np.sqrt(np.diag(fit.cov))[pos]
    np.testing.assert_allclose(se, ref.bse.to_numpy(), atol=TOL, rtol=TOL)
    assert fit.loglik == pytest.approx(ref.llf, abs=TOL)


def test_logit_frequency_weights_equal_duplicated_rows():
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(300), rng.normal(size=300)])
    d = (rng.random(300) < 0.4).astype(float)
    f = rng.integers(0, 3, 300).astype(float)
    weighted = fit_logit(x, d, ("c", "x"), weights=f)
    rows = np.repeat(np.arange(300), f.astype(int))
    dup = sm.Logit(d[rows], x[rows]).fit(disp=0)
    np.testing.assert_allclose(weighted.coef, dup.params, atol=TOL)


def test_logit_separation_is_an_answer():
    x = np.column_stack([np.ones(40), np.r_[np.zeros(20), np.ones(20)], np.arange(40.0)])
    d = np.r_[np.zeros(20), np.ones(20)]
    with pytest.raises(EstimationError, match=r"separate treated from comparison.*'b'"):
        fit_logit(x, d, ("Intercept", "b", "k"))


def test_logit_singular_design_names_the_term():
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    x = np.column_stack([np.ones(50), a, 2 * a + 1])
    with pytest.raises(EstimationError, match=r"singular: 'a2' is a linear combination"):
        fit_logit(x, (rng.random(50) < 0.5).astype(float), ("Intercept", "a", "a2"))


def test_regression_singular_category_is_named():
    frame = cohort().with_columns(pl.lit("same").alias("region"))
    frame = frame.with_columns(pl.col("x").cast(pl.Float64).alias("x2"))
    with pytest.raises(EstimationError, match=r"'x2' is a linear combination"):
        get("regression_adjustment").fit(frame, Design("y", {"covariates": "x + x2"}))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.with_columns(pl.lit(0, pl.Int8).alias("treated")), "too few treated"),
        (
            lambda f: f.with_columns(
                pl.when(pl.col("x") > 0).then(2).otherwise(0).alias("treated")
            ),
            "'treated' is not 0 or 1",
        ),
        (lambda f: f.with_columns(pl.lit(None, pl.Float64).alias("y")), "'y' is missing"),
        (lambda f: f.with_columns(pl.lit(float("nan")).alias("y")), "not a finite number"),
        (lambda f: f.drop("treated"), "no column 'treated'"),
    ],
)
def test_bad_person_data_is_an_answer(change, message):
    with pytest.raises(EstimationError, match=message):
        get("diff_in_means").fit(change(cohort()), Design("y", {}))


def test_unknown_parameter_and_covariate_are_named():
    with pytest.raises(EstimationError, match="unknown parameter 'covariate'"):
        get("regression_adjustment").fit(cohort(), Design("y", {"covariate": "age"}))
    with pytest.raises(EstimationError, match="parameter covariates: no column 'agee'"):
        get("regression_adjustment").fit(cohort(), Design("y", {"covariates": "agee"}))


def test_result_is_strict_json_without_restricted_detail():
    res = get("regression_adjustment").fit(cohort(), Design("y", {"covariates": RHS}))
    json.dumps(res.to_dict(), allow_nan=False)
    assert "restricted" not in res.to_dict()
