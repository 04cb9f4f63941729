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


def measure(name: str, root: Path, population: int = 4000, **period) -> tuple[dict, dict]:
    """Simulate the example plan `name` into root/deliveries and run it (`period`: the
    payment period arguments of `run`); (report, truth)."""
    from utfall.pipeline import run

    path = EXAMPLE_PLANS / name
    deliveries = root / "deliveries"
    truth = cli.simulate_deliveries(path, deliveries, population, 0.0, 0.0, None)
    run(load_plan(path), root / "w.duckdb", deliveries, root / "report", **period)
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


def test_health_bond_covers_the_truth_repays_within_the_return_bounds_and_verifies(tmp_path):
    from decimal import Decimal

    from utfall.replication import verify_package

    path = EXAMPLE_PLANS / "health_bond.yaml"
    report, truth = measure("health_bond.yaml", tmp_path, population=2000)
    truths = cli.true_effects(path, truth)
    assert (
        {e["outcome"] for e in report["effects"]}
        == set(truths)
        == {
            "below_42_12m",
            "change_24m",
        }
    )
    for effect in report["effects"]:
        true, scale = truths[effect["outcome"]]
        assert scale == "absolute" and effect["method"] == "aipw"
        assert effect["ci_low"] <= true <= effect["ci_high"], (effect, true)
    total = Decimal(report["payment"]["total"])
    assert Decimal("24000000.00") <= total <= Decimal("33000000.00")  # -20 % .. +10 %
    assert {r["source"]: r["loaded"] for r in report["reconciliation"]} == {
        "deltagare": 2000,
        "labb": truth_lab_rows(tmp_path / "deliveries"),
    }
    v = verify_package(tmp_path / "report")
    assert v.problems == [], v.problems


def truth_lab_rows(deliveries: Path) -> int:
    import polars as pl

    return pl.read_parquet(deliveries / "lab_results.parquet").height


def test_employment_soc_covers_the_truth_pays_the_rate_card_within_caps_and_verifies(tmp_path):
    from decimal import Decimal

    from utfall.replication import verify_package

    path = EXAMPLE_PLANS / "employment_soc.yaml"
    # The truth is simulated for the whole term: measure the final period (provisionally,
    # as the interim one is not approved here).
    report, truth = measure(
        "employment_soc.yaml", tmp_path, population=1500, period="final", provisional=True
    )
    truths = cli.true_effects(path, truth)
    for effect in report["effects"]:
        true, _ = truths[effect["outcome"]]
        assert effect["ci_low"] <= true <= effect["ci_high"], (effect, true)
    (line,) = report["payment"]["lines"]
    assert line["kind"] == "rate_card"
    total = Decimal(report["payment"]["total"])
    treated = truth["n_treated"]
    assert Decimal(0) < total <= Decimal("70000.00") * treated  # the cap per person
    v = verify_package(tmp_path / "report")
    assert v.problems == [], v.problems


@pytest.mark.parametrize("name", ["health_bond.yaml", "employment_soc.yaml", "iop_followup.yaml"])
def test_example_plan_materializes_in_dagster_with_every_check_passing(tmp_path, name):
    """Each new kind through the Dagster assets and their checks (reconciliation, the
    staged rows' contract, the expectations), as `dagster dev` runs the plan."""
    from dagster import DagsterInstance, materialize

    from utfall.pipelines.definitions import build_assets
    from utfall.pipelines.resources import ContractResource, WarehouseResource, resource_key

    path = EXAMPLE_PLANS / name
    plan = load_plan(path)
    deliveries = tmp_path / "deliveries"
    cli.simulate_deliveries(path, deliveries, 800, 0.0, 0.0, None)
    assets, checks = build_assets(plan)
    result = materialize(
        [*assets, *checks],
        resources={
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
            resource_key(plan): ContractResource(
                plan_path=str(path),
                deliveries_dir=str(deliveries),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(c.passed for c in evaluations)
    assert (tmp_path / "report" / "report.json").exists()
