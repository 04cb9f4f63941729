"""scripts/simulation_study.py and the simulator's scenario factors (level ratio, common shock,
treated-only trend): the estimator against known truth when parallel trends hold in ratios but
not in levels."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import statistics
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from utfall.simulate import SimulationSpec, simulate

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "simulation_study.py"
NEW_FIELDS = (
    "treated_level_ratio",
    "common_shock",
    "common_shock_start",
    "treated_trend_per_quarter",
)
SPEC = SimulationSpec(
    treated_units=("T1", "T2", "T3"),
    comparison_units=("C1", "C2", "C3", "C4"),
    baseline_start=date(2023, 1, 1),
    intervention_start=date(2024, 1, 1),
    measurement_end=date(2024, 12, 31),
    employees=600,
    defect_rate=0.02,
    seed=7,
)


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("simulation_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _digest(sim) -> str:
    h = hashlib.sha256()
    h.update(sim.roster.write_csv().encode())
    h.update(sim.spells.write_csv().encode())
    truth = json.loads(json.dumps(sim.truth))
    for key in NEW_FIELDS:
        truth["spec"].pop(key)
    h.update(json.dumps(truth, sort_keys=True).encode())
    return h.hexdigest()


def test_defaults_leave_the_output_unchanged():
    # Digest of the roster, the spells (with defects) and the truth, computed with the simulator
    # as it was before the scenario factors existed (commit 305943c); only truth["spec"] gains
    # the new fields.
    sim = simulate(SPEC)
    assert _digest(sim) == "45af26cd2995cab32dd31964818921fe23c3dd42ff7ea9bb01095e6559a6f27d"
    assert {k: sim.truth["spec"][k] for k in NEW_FIELDS} == {
        "treated_level_ratio": 1.0,
        "common_shock": 0.0,
        "common_shock_start": "2024-01-01",
        "treated_trend_per_quarter": 0.0,
    }


def _rates(sim, group: str, period: str) -> float:
    g = sim.truth["realized"]["by_group"][group][period]
    return g["short_term_days_counterfactual"] / g["exposure_person_days"]


def test_scenario_factors_act_and_are_recorded():
    spec = replace(SPEC, defect_rate=0.0, employees=3000)
    plain = simulate(spec)
    shifted = simulate(replace(spec, treated_level_ratio=1.5, common_shock=0.3))
    assert shifted.truth["spec"]["treated_level_ratio"] == 1.5
    assert shifted.truth["spec"]["common_shock"] == 0.3
    # treated level up by about half in the baseline, comparison untouched there
    ratio = _rates(shifted, "treated", "baseline") / _rates(plain, "treated", "baseline")
    assert 1.35 < ratio < 1.65
    assert _rates(shifted, "comparison", "baseline") == pytest.approx(
        _rates(plain, "comparison", "baseline"), rel=0.03
    )
    # the common shock lowers the comparison's measurement period by about 30 %
    drop = _rates(shifted, "comparison", "measurement") / _rates(plain, "comparison", "measurement")
    assert 0.6 < drop < 0.8
    trended = simulate(replace(spec, treated_trend_per_quarter=0.05, effect=0.0))
    assert trended.truth["spec"]["treated_trend_per_quarter"] == 0.05
    up = _rates(trended, "treated", "measurement") / _rates(plain, "treated", "measurement")
    assert 1.15 < up < 1.45  # quarters 4-7 since the start: x 1.20 to 1.35 (counterfactual days)
    early = simulate(replace(spec, common_shock=0.5, common_shock_start=date(2023, 7, 1)))
    assert early.truth["spec"]["common_shock_start"] == "2023-07-01"
    assert _rates(early, "comparison", "baseline") < 0.85 * _rates(plain, "comparison", "baseline")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("treated_level_ratio", 0.0),
        ("common_shock", 1.0),
        ("common_shock", -0.1),
        ("treated_trend_per_quarter", 1.0),
        ("common_shock_start", "2024-01-01"),
    ],
)
def test_scenario_factors_validated(field, value):
    with pytest.raises(ValueError, match=field):
        simulate(replace(SPEC, **{field: value}))


def test_scenario_plans(script, example_plan, tmp_path):
    c = script.scenario_plan(example_plan, script.SCENARIOS["c"], tmp_path)
    assert len(c.treated_units) == 3 and len(c.comparison_units) == 15
    d = script.scenario_plan(example_plan, script.SCENARIOS["d"], tmp_path)
    assert list(d.treated_units) == list(example_plan.treated_units)[:4]
    assert len(d.comparison_units) == 4
    assert script.scenario_plan(example_plan, script.SCENARIOS["a"], tmp_path) is example_plan
    spec = script.spec_for(example_plan, script.SCENARIOS["b"], 100, 1)
    assert spec.treated_level_ratio == 1.5 and spec.common_shock == 0.15
    assert spec.common_shock_start is None  # = intervention_start, the measurement start


def test_level_difference_with_common_shock_biases_the_absolute_scale(script, example_plan):
    """Scenario (b): treated level 1.5 x comparison, every unit's incidence 15 % lower from the
    start. Parallel in ratios, so the relative scale is unbiased; in levels the treated units
    fall by 1.5 x as much as the comparison's, and the absolute scale credits the provider
    with that: expected relative estimate 1.5 x 0.85 x 0.88 / 1.35 - 1 = -16.9 % against a
    truth of -11.9 %, a bias of about -5 percentage points. Few replications, wide band."""
    scenario = script.SCENARIOS["b"]
    reps = [script.replicate(example_plan, scenario, 1500, 100000 + r) for r in range(16)]
    truth = [r["truth"] for r in reps]
    assert statistics.fmean(truth) == pytest.approx(-0.1187, abs=0.005)
    bias = {
        s: statistics.fmean(r[s]["estimate"] - t for r, t in zip(reps, truth, strict=True))
        for s in script.SCALES
    }
    # the same data under both scales: their difference is far less noisy than either bias
    gap = [r["absolute"]["estimate"] - r["relative"]["estimate"] for r in reps]
    assert -0.08 < statistics.fmean(gap) < -0.03
    assert float(np.std(gap)) < 0.03
    assert abs(bias["relative"]) < 0.03
    assert bias["absolute"] < -0.015  # -2.8 pp with these seeds; about -5 pp expected
    summary = script.summarise(reps)
    assert summary["relative"]["coverage"] >= 0.75
    assert summary["relative"]["bias"] == pytest.approx(bias["relative"])


def test_render_and_main(script, capsys):
    assert script.main(["-R", "2", "--scenarios", "d", "--employees", "300"]) == 0
    out = capsys.readouterr().out
    assert "d    absolute    2" in out and "d    relative    2" in out
    assert "2 replications per scenario, 300 employees" in out


@pytest.mark.slow
def test_treated_trend_is_flagged_by_the_pre_tests(script, example_plan):
    """Scenario (e): no effect but a treated-only trend of +1 %/quarter; the estimate is biased
    upwards on both scales and the pre-trend test rejects more often than its 5 % level."""
    s = script.run_scenario(script.SCENARIOS["e"], 40, 1500, 100000, example_plan)
    for scale in script.SCALES:
        assert s[scale]["bias"] > 0.03
    assert s["relative"]["pre_trend_reject"] > 0.15


def test_cli_simulate_records_the_scenario(tmp_path, capsys):
    from utfall.cli import EXAMPLE_PLAN, main

    out = tmp_path / "deliveries"
    args = ["simulate", str(EXAMPLE_PLAN), "--out", str(out), "--employees", "200"]
    extra = ["--treated-level-ratio", "1.5", "--common-shock", "0.15", "--treated-trend", "0.01"]
    assert main([*args, *extra]) == 0
    spec = json.loads((out / "truth.json").read_text(encoding="utf-8"))["spec"]
    assert spec["treated_level_ratio"] == 1.5 and spec["common_shock"] == 0.15
    assert spec["treated_trend_per_quarter"] == 0.01
    assert spec["common_shock_start"] == "2025-01-01"  # the measurement start
    plain = tmp_path / "plain"
    assert main(["simulate", str(EXAMPLE_PLAN), "--out", str(plain), "--employees", "200"]) == 0
    assert (
        json.loads((plain / "truth.json").read_text(encoding="utf-8"))["spec"][
            "treated_level_ratio"
        ]
        == 1.0
    )
