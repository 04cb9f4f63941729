"""The example contracts other than sick leave, each simulated by `utfall simulate`'s
dispatch (chosen by the plan's sources) and measured in-process by utfall.pipeline.run: the
report's interval covers the simulated truth, and the payment is what the plan's rule says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from utfall import cli
from utfall.paths import EXAMPLE_PLANS
from utfall.plan import load_plan


def measure(name: str, root: Path, population: int = 4000) -> tuple[dict, dict]:
    """Simulate the example plan `name` into root/deliveries and run it; (report, truth)."""
    from utfall.pipeline import run

    path = EXAMPLE_PLANS / name
    deliveries = root / "deliveries"
    truth = cli.simulate_deliveries(path, deliveries, population, 0.0, 0.0, None)
    run(load_plan(path), root / "w.duckdb", deliveries, root / "report")
    report = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    return report, truth


def test_iop_followup_interval_covers_the_truth_and_pays_nothing(tmp_path):
    report, truth = measure("iop_followup.yaml", tmp_path)
    (effect,) = report["effects"]
    true, _ = cli.true_effects(EXAMPLE_PLANS / "iop_followup.yaml", truth)["share_in_activity"]
    assert effect["method"] == "historical"
    assert effect["ci_low"] <= true <= effect["ci_high"], (effect, true)
    assert report["payment"]["total"] == "0.00"
    assert report["reconciliation"][0]["loaded"] == 20


def test_simulate_names_a_plan_it_cannot_simulate_in_one_line(tmp_path, capsys):
    plan = (EXAMPLE_PLANS / "iop_followup.yaml").read_text(encoding="utf-8")
    other = tmp_path / "other.yaml"
    other.write_text(plan.replace("share_in_activity", "other_share"), encoding="utf-8")
    code = cli.main(["simulate", str(other), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("utfall: error: cannot simulate plan demokommun-iop-unga-2024")


@pytest.mark.parametrize("path", sorted(EXAMPLE_PLANS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_plan_has_a_simulator(path):
    from utfall.simulate_plans import simulator_for

    simulator_for(load_plan(path))  # raises if none serves it


def test_the_demo_measures_every_example_plan_sick_leave_first():
    plans = cli.example_plans()
    assert plans[0].name == "botkyrka_sick_leave.yaml"
    assert sorted(plans) == sorted(EXAMPLE_PLANS.glob("*.yaml"))
