"""composite: fixed weights over two registered methods, a seeded unit bootstrap variance that
accounts for their correlation, and the parameter errors a plan author can make."""

from __future__ import annotations

import numpy as np
import pytest
from published_panel_data import make_panel

from utfall.estimators import registry
from utfall.estimators.base import Design, EstimationError
from utfall.estimators.composite import composite, parse_parameters


def _panel(seed=0, n_t=6, n_c=6, effect=-1.0):
    rng = np.random.default_rng(seed)
    n = n_t + n_c
    y = rng.normal(20, 2, (n, 1)) + rng.normal(0, 1, (1, 6)) + rng.normal(0, 0.5, (n, 6))
    y[:n_t, 3:] += effect
    return make_panel(y, [3] * n_t + [None] * n_c)


def _design(seed=1, **extra):
    params = {
        "method_a": "did_2x2",
        "parameters_a": "weight=equal",
        "method_b": "twfe",
        "parameters_b": "weight=equal",
        "weight_a": 0.8,
        "bootstrap": 60,
        **extra,
    }
    return Design(outcome="y", parameters=params, seed=seed)


def test_weights_estimate_and_bootstrap():
    frame = _panel()
    r = composite(frame, _design())
    a, b = r.diagnostics["components"]
    assert r.estimate == pytest.approx(0.8 * a["estimate"] + 0.2 * b["estimate"], abs=1e-12)
    # balanced, equal weights, one cohort: DiD of means = TWFE, so the draws are identical
    assert a["estimate"] == pytest.approx(b["estimate"], abs=1e-10)
    assert r.diagnostics["bootstrap"]["correlation"] == pytest.approx(1.0, abs=1e-9)
    assert r.std_error == pytest.approx(a["bootstrap_std_error"], rel=1e-9)
    # the bootstrap SE is of the order of the analytic one (60 draws: within 40 %)
    assert 0.6 < r.std_error / a["std_error"] < 1.4
    assert r.observed - r.counterfactual == pytest.approx(r.estimate)


def test_reproducible_with_the_seed_and_different_without():
    frame = _panel(1)
    first = composite(frame, _design(5))
    assert first.to_dict() == composite(frame, _design(5)).to_dict()
    assert first.std_error != composite(frame, _design(6)).std_error


def test_correlation_lowers_the_variance_against_independence():
    """ITS-free pair with imperfect correlation: did_2x2 (exposure weights) and twfe (equal)
    on unequal denominators: Var(composite) must use the covariance, i.e. lie below the
    independence sum of a^2 Var_A + b^2 Var_B + 2ab sd_A sd_B (perfect correlation bound)."""
    rng = np.random.default_rng(2)
    y = rng.normal(20, 2, (12, 1)) + rng.normal(0, 1, (12, 6))
    y[:6, 3:] -= 1
    frame = make_panel(y, [3] * 6 + [None] * 6, den=rng.uniform(10, 500, (12, 6)))
    r = composite(frame, _design(parameters_a="weight=exposure", weight_a=0.5))
    sa, sb = (c["bootstrap_std_error"] for c in r.diagnostics["components"])
    rho = r.diagnostics["bootstrap"]["correlation"]
    assert -1 < rho < 1
    expect = np.sqrt(0.25 * sa**2 + 0.25 * sb**2 + 0.5 * rho * sa * sb)
    assert r.std_error == pytest.approx(expect, rel=1e-6)
    assert r.std_error < 0.5 * sa + 0.5 * sb


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"parameters_a": "weight=heavy"}, "must be one of"),
        ({"parameters_a": "colour=red"}, "not a parameter of did_2x2"),
        ({"method_b": "composite"}, "other than composite"),
        ({"method_b": "no_such"}, "no estimator named"),
    ],
)
def test_bad_parameters_are_refused(extra, message):
    with pytest.raises(EstimationError, match=message):
        composite(_panel(), _design(**extra))
    problems = registry()["composite"].check(_design(**extra).parameters)
    assert problems and message.split()[0] in problems[0][1]


def test_parse_parameters_types_and_defaults():
    got = parse_parameters("its", "hac_lags=4")
    assert got == {
        "model": "level_and_slope",
        "seasonality": "none",
        "variance": "ar1_reml",
        "hac_lags": 4,
    }
    with pytest.raises(EstimationError, match="integer"):
        parse_parameters("its", "hac_lags=four")


def test_failing_component_is_an_answer():
    # one treated unit: did_2x2 refuses, so the composite refuses, naming it and its reason
    y = np.random.default_rng(3).normal(size=(5, 6))
    with pytest.raises(EstimationError, match="did_2x2 cannot estimate: group 'treated'"):
        composite(make_panel(y, [3, None, None, None, None]), _design())


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("twfe", {}),
        ("staggered", {}),
        ("its", {"model": "level"}),
        ("historical", {"baseline": "level"}),
        ("synthetic_control", {}),
        ("composite", {"bootstrap": 50}),
    ],
)
def test_every_panel_method_gives_strict_json_and_the_same_bytes_twice(method, params):
    import json

    from utfall.estimators import get
    from utfall.estimators.base import publishable

    est = get(method)
    full = {n: s.default for n, s in est.parameters.items()} | params
    frame = _panel(4)
    if method in ("its", "historical"):
        frame = frame.filter(frame["unit_id"] == "u000")
    if method == "synthetic_control":
        frame = frame.filter((frame["unit_id"] == "u000") | (frame["group"] == "comparison"))
    design = Design(outcome="y", parameters=full, seed=3)
    a = json.dumps(est.fit(frame, design).to_dict(), allow_nan=False, sort_keys=True)
    b = json.dumps(est.fit(frame, design).to_dict(), allow_nan=False, sort_keys=True)
    assert a == b
    shown = publishable(json.loads(a))
    assert set(shown) == set(json.loads(a)["diagnostics"])  # every diagnostic is declared
