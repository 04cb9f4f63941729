"""A plan whose payment a run cannot compute is refused before the run opens anything.

The pipeline measures a payment rule's inputs besides the effect from the plan's payment
outcome (`utfall.person_metrics.supplied_inputs`): events for a rate card on an employment
outcome, persons treated on an outcome of person data, never a savings total. Without this
check such a plan ran every stage, then stopped at the payment step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from utfall.cli import main
from utfall.paths import EXAMPLE_PLANS
from utfall.person_metrics import missing_payment_inputs, supplied_inputs
from utfall.plan import load_plan

SAVINGS = Path(__file__).parent / "plans" / "employment_savings.yaml"


def _variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / source.name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("path", sorted(EXAMPLE_PLANS.glob("*.yaml")) + [SAVINGS], ids=str)
def test_every_example_plan_can_be_paid_by_a_run(path):
    assert missing_payment_inputs(load_plan(path)) == []


def test_savings_per_person_get_the_persons_treated_and_a_total_is_refused(tmp_path):
    assert supplied_inputs(load_plan(SAVINGS)) == {"counts"}
    total = _variant(
        tmp_path,
        SAVINGS,
        '      cap: "8400000.00"',
        '      cap: "8400000.00"\n      savings: total',
    )
    (problem,) = missing_payment_inputs(load_plan(total))
    assert problem.startswith(
        "payment.rules[1] (share_of_savings) needs savings_total, which a run of this plan "
        "does not measure: no run measures a savings total"
    )


def test_a_rate_card_on_a_lab_outcome_is_refused(tmp_path):
    rules = """  rules:
    - kind: rate_card
      description: per event
      prices:
        - {event: entered_work, price: "1000.00"}
      contract_cap: "100000.00"
"""
    text = (EXAMPLE_PLANS / "health_bond.yaml").read_text(encoding="utf-8")
    start = text.index("  rules:\n")
    end = text.index("\ndisclosure:")
    path = tmp_path / "health_bond.yaml"
    path.write_text(text[:start] + rules + text[end:], encoding="utf-8")
    plan = load_plan(path)
    (problem,) = missing_payment_inputs(plan)
    assert "payment.rules[0] (rate_card) needs events" in problem
    assert "employment_outcome" in problem


def test_utfall_run_refuses_it_in_one_line_before_opening_the_warehouse(
    tmp_path, pseudonym_key, capsys
):
    total = _variant(
        tmp_path,
        SAVINGS,
        '      cap: "8400000.00"',
        '      cap: "8400000.00"\n      savings: total',
    )
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    db, out = tmp_path / "w.duckdb", tmp_path / "report"
    code = main(
        [
            "run",
            str(total),
            "--deliveries",
            str(deliveries),
            "--warehouse",
            str(db),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("utfall: error:")]
    assert "a run cannot compute this plan's payment" in line and "savings_total" in line
    assert not db.exists() and not out.exists()  # nothing opened, nothing written


def test_a_dagster_run_is_refused_at_its_first_asset(tmp_path, pseudonym_key):
    from dagster import DagsterInstance, materialize

    from utfall.pipelines.definitions import build_assets
    from utfall.pipelines.resources import ContractResource, WarehouseResource, resource_key

    total = _variant(
        tmp_path,
        SAVINGS,
        '      cap: "8400000.00"',
        '      cap: "8400000.00"\n      savings: total',
    )
    plan = load_plan(total)
    assets, _ = build_assets(plan)
    db = tmp_path / "w.duckdb"
    result = materialize(
        assets,
        resources={
            "duckdb": WarehouseResource(database=str(db)),
            resource_key(plan): ContractResource(
                plan_path=str(total),
                deliveries_dir=str(tmp_path / "deliveries"),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and all(
        "a run cannot compute this plan's payment" in f.step_failure_data.error.to_string()
        for f in failures
    )
    assert not db.exists()
