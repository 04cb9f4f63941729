"""The naive comparison shown beside every estimate, and the relative effect only where an
outcome has one (a change from baseline has none)."""

from __future__ import annotations

import copy
import math

import numpy as np
import polars as pl
import pytest

from utfall import recompute
from utfall.naive import naive_comparison
from utfall.paths import EXAMPLE_PLANS
from utfall.plan import Plan, PlanError, load_plan
from utfall.report import dumps, payment_steps, render_html


def test_person_naive_is_the_difference_of_means_with_welch_se():
    frame = pl.DataFrame(
        {"treated": [1, 1, 1, 0, 0, 0, 0], "y": [4.0, 6.0, 8.0, 1.0, 2.0, 3.0, 6.0]}
    )
    out = naive_comparison(frame, "person", 0.95)
    # means 6 and 3; variances 4 and 14/3; se = sqrt(4/3 + (14/3)/4) = sqrt(2.5)
    assert out["estimate"] == pytest.approx(3.0)
    assert (out["treated_mean"], out["comparison_mean"]) == (6.0, 3.0)
    assert out["std_error"] == pytest.approx(math.sqrt(2.5))
    assert out["ci_low"] == pytest.approx(3.0 - 1.959963985 * math.sqrt(2.5))
    assert (out["n_treated"], out["n_comparison"]) == (3, 4)


def test_panel_naive_averages_each_unit_over_the_measurement_phase_first():
    rows = [
        # unit, group, phase, value: baseline rows never count
        ("a", "treated", "baseline", 100.0),
        ("a", "treated", "measurement", 2.0),
        ("a", "treated", "measurement", 4.0),  # unit a: 3
        ("b", "treated", "measurement", 5.0),  # unit b: 5
        ("c", "comparison", "measurement", 1.0),
        ("c", "comparison", "measurement", 1.0),
        ("c", "comparison", "measurement", 1.0),  # unit c: 1 (three rows weigh as one unit)
        ("d", "comparison", "measurement", 3.0),  # unit d: 3
    ]
    frame = pl.DataFrame(rows, schema=["unit_id", "group", "phase", "value"], orient="row")
    out = naive_comparison(frame, "unit_panel", 0.9)
    assert out["estimate"] == pytest.approx(4.0 - 2.0)
    assert out["std_error"] == pytest.approx(math.sqrt(2 / 2 + 2 / 2))
    assert (out["n_treated"], out["n_comparison"]) == (2, 2)


def test_no_comparison_group_gives_no_naive_comparison():
    treated_only = pl.DataFrame(
        {"unit_id": ["a", "b"], "group": "treated", "phase": "measurement", "value": [1.0, 2.0]}
    )
    assert naive_comparison(treated_only, "unit_panel", 0.95) is None
    one_each = pl.DataFrame({"treated": [1, 0], "y": [1.0, 2.0]})
    assert naive_comparison(one_each, "person", 0.95) is None


@pytest.fixture(scope="module")
def health_bond() -> Plan:
    return load_plan(EXAMPLE_PLANS / "health_bond.yaml")


def test_change_outcomes_have_no_relative_effect_by_default(health_bond):
    assert health_bond.relative_effect("below_42_12m") is True
    assert health_bond.relative_effect("change_24m") is False


def _with(plan: Plan, edit) -> dict:
    data = copy.deepcopy(plan.data)
    edit(data)
    return data


def test_a_rule_paying_on_the_relative_improvement_of_a_change_outcome_is_refused(health_bond):
    data = _with(health_bond, lambda d: d["payment"].update(outcome="change_24m"))
    with pytest.raises(PlanError, match=r"payment\.outcome.*change_24m.*no relative effect"):
        _load(data)
    # saying the change outcome has a relative effect is the plan's explicit choice
    data["outcomes"][1]["relative_effect"] = True
    assert _load(data).relative_effect("change_24m") is True


def _load(data: dict) -> Plan:
    import tempfile
    from pathlib import Path

    import yaml

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plan.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load_plan(path)


def _persons(n: int, change_shift: float, seed: int) -> pl.DataFrame:
    """Participants who differ from the comparison group in baseline (selection on
    observables); the change outcome's counterfactual mean is negative."""
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(42, 47, n)
    treated = (rng.uniform(size=n) < 1 / (1 + np.exp(-(baseline - 44.5)))).astype(np.int8)
    y = -2.0 - 0.8 * (baseline - 44.5) + change_shift * treated + rng.normal(0, 1, n)
    return pl.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "treated": treated,
            "y": y,
            "baseline_hba1c": baseline,
            "age": rng.integers(50, 61, n).astype(float),
            "sex": rng.choice(["F", "M"], n),
            "clinic": rng.choice(["a", "b", "c"], n),
        }
    )


def test_a_change_outcome_with_a_negative_counterfactual_is_measured_without_relative(health_bond):
    frame = _persons(800, -1.5, 7)

    def frame_for(outcome_id: str, shape: str) -> pl.DataFrame:
        assert shape == "person"
        if outcome_id == "below_42_12m":
            return frame.with_columns((pl.col("y") < -2).cast(pl.Float64).alias("y"))
        return frame

    results = recompute.fit_effects(health_bond, frame_for)
    change = next(r for r in results if r.outcome == "change_24m")
    assert change.counterfactual < 0
    assert all(math.isnan(x) for x in (change.relative_estimate, change.relative_ci_low))
    assert abs(change.estimate - -1.5) < 4 * change.std_error
    # the naive comparison is off: the treated had higher baselines, so larger falls
    assert change.naive["estimate"] < -1.5 - 4 * change.std_error
    record = recompute.effect_records(results)
    stored = next(e for e in record if e["outcome"] == "change_24m")
    assert stored["relative_estimate"] is None and "NaN" not in dumps(stored)
    steps = payment_steps(
        {"decision": {}, "lines": [], "total": "0.00", "currency": "SEK", "maximum": "0.00"}, stored
    )
    assert "no relative effect" in steps[0] and f"{stored['estimate']:+.4f}" in steps[0]


def test_report_html_shows_the_naive_comparison_and_no_relative_for_a_change(
    health_bond, example_plan
):
    from test_report import sample_report

    from utfall.report import public_effect

    frame = _persons(600, -1.5, 8)
    effects = recompute.effect_records(
        recompute.fit_effects(
            health_bond,
            lambda o, s: (
                frame.with_columns((pl.col("y") < -2).cast(pl.Float64).alias("y"))
                if o == "below_42_12m"
                else frame
            ),
        )
    )
    report = sample_report(example_plan)
    # effects stored without a naive comparison (made before it existed) render without one
    assert "Naive comparison, without the method" not in render_html(report)
    # the health bond's two effects, rendered under the sick-leave report's two outcomes
    for effect, outcome in zip(effects, report["outcomes"], strict=True):
        effect["outcome"] = outcome["id"]
    report["effects"] = [public_effect(e) for e in effects]
    html = render_html(report)
    assert html.count("Naive comparison, without the method") == 2
    assert html.count("has no effect relative to the counterfactual level") == 1
    change = effects[1]
    assert f"{change['naive']['estimate']:.3f}".replace("-", "") in html.replace("\u202f", "")
