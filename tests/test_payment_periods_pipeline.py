"""Payment periods measured by the pipeline: `utfall run --period`, approve, run the next.

A hand-made employment contract (the employment SOC plan with a difference in means, one
outcome, and two rules: a rate card and a linear_to_target on the effect), 10 treated and
10 comparison participants, all enrolled 2024-01-15, monthly statuses 2024-01..2025-12:

    treated t01-t04  employed from 2024-03: entered 2024-03-01, 13 weeks 2024-05-31,
                     26 weeks 2024-08-31 (all before the interim's through, 2024-12-31)
    treated t05-t06  employed from 2024-11: entered before through, 13 / 26 weeks after
    treated t07      employed from 2025-03: every event after through
    treated t08-t10  never employed
    comparison c01-c02 employed from 2024-06; c03-c06 from 2025-02; c07-c10 never

Entered work (the effect, difference in means, relative to the comparison share):
interim 0.6 vs 0.2 -> +200 %; final 0.7 vs 0.6 -> +16.67 %.

Rate card (entered 1000, 13 weeks 2000, 26 weeks 4000; cap 5000 per person, 30000 for the
contract, over the whole term):
    interim: t01-t04 7000 each, capped to 5000 = 20000; t05, t06 entered only = 2000 -> 22000
    final:   t01-t07 all three events, 7000 each capped to 5000 = 35000, contract cap 30000
             -> cumulative 30000 - paid 22000 = 8000
linear_to_target (10000 in full at +100 %): interim achievement 1 -> 10000; final 0.1667
    -> cumulative 1667.00 - paid 10000.00 = -8333.00: no claw-back, pays 0, 8333.00 overpaid.
Totals: interim 32000.00, final 8000.00.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import empty_warehouse_file, new_warehouse
from utfall import signing, warehouse
from utfall.decisions import DecisionRefused, decide
from utfall.paths import EXAMPLE_PLANS
from utfall.payments.periods import PeriodRefused
from utfall.pipeline import run
from utfall.plan import load_plan
from utfall.replication import verify_package

KEY = "test-key-not-secret-0123456789abcdef"
ENROLLED = dt.date(2024, 1, 15)
MONTHS = [dt.date(2024 + m // 12, m % 12 + 1, 1) for m in range(24)]
#: person -> first employed month (employed from then to the end), None: never.
EMPLOYED_FROM = {
    **{f"t{i:02d}": dt.date(2024, 3, 1) for i in range(1, 5)},
    "t05": dt.date(2024, 11, 1),
    "t06": dt.date(2024, 11, 1),
    "t07": dt.date(2025, 3, 1),
    **{f"t{i:02d}": None for i in range(8, 11)},
    "c01": dt.date(2024, 6, 1),
    "c02": dt.date(2024, 6, 1),
    **{f"c{i:02d}": dt.date(2025, 2, 1) for i in range(3, 7)},
    **{f"c{i:02d}": None for i in range(7, 11)},
}


def write_plan(root: Path, clawback: bool = False) -> Path:
    data = yaml.safe_load((EXAMPLE_PLANS / "employment_soc.yaml").read_text(encoding="utf-8"))
    data["outcomes"] = [o for o in data["outcomes"] if o["id"] == "entered_work"]
    # this hand-made contract delivers participants and employment status only
    data["sources"] = [s for s in data["sources"] if s["kind"] != "public_costs"]
    data["counterfactual"] = {"method": "diff_in_means", "confidence": 0.95, "seed": 1}
    data["payment"] = {
        "currency": "SEK",
        "outcome": "entered_work",
        "basis": "point_estimate",
        "rules": [
            {
                "kind": "rate_card",
                "description": "price per outcome",
                "prices": [
                    {"event": "entered_work", "price": "1000.00"},
                    {"event": "sustained_13_weeks", "price": "2000.00", "min_duration_days": 91},
                    {"event": "sustained_26_weeks", "price": "4000.00", "min_duration_days": 182},
                ],
                "cap_per_person": "5000.00",
                "contract_cap": "30000.00",
            },
            {
                "kind": "linear_to_target",
                "description": "on the effect",
                "amount": "10000.00",
                "target_relative_reduction": 1.0,
            },
        ],
        "periods": [
            {"name": "interim", "kind": "interim", "through": "2024-12-31"},
            {"name": "final", "kind": "final", "through": "2025-12-31"},
        ],
        **({"clawback": True} if clawback else {}),
    }
    path = root / ("periods_clawback.yaml" if clawback else "periods.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_plan(path)  # a valid plan
    return path


def write_deliveries(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    people = sorted(EMPLOYED_FROM)
    pl.DataFrame(
        {
            "person_id": people,
            "treated": [int(p.startswith("t")) for p in people],
            "enrolled_on": [ENROLLED.isoformat()] * len(people),
            "age": [30 + i for i in range(len(people))],
            "sex": ["F" if i % 2 else "M" for i in range(len(people))],
            "office": [f"af_{i % 3}" for i in range(len(people))],
            "prior_unemployed_months": [i % 7 for i in range(len(people))],
        }
    ).write_csv(out / "participants.csv")
    rows = [
        {
            "person_id": p,
            "month": m,
            "status": "employed" if start is not None and m >= start else "unemployed",
            "earnings": None,
        }
        for m in MONTHS
        for p, start in sorted(EMPLOYED_FROM.items())
    ]
    pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "month": pl.Date,
            "status": pl.String,
            "earnings": pl.String,
        },
    ).write_parquet(out / "employment_status.parquet")
    return out


def amounts(payment: dict) -> list[tuple[str, str, str, str | None]]:
    """(cumulative due, paid before, amount, overpaid) per rule."""
    return [
        (x["cumulative_due"], x["paid_before"], x["amount"], x.get("overpaid"))
        for x in payment["lines"]
    ]


def report_of(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """Interim measured, verified and approved; then final measured. Returns the folders,
    the plan and both reports."""
    root = tmp_path_factory.mktemp("periods")
    plan_path = write_plan(root)
    deliveries = write_deliveries(root / "deliveries")
    db = empty_warehouse_file(root / "w.duckdb")
    key = root / "validator.key"
    signing.keygen(key)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_PSEUDONYM_KEY", KEY)
        mp.setenv("UTFALL_CHROMIUM", "off")
        plan = load_plan(plan_path)
        interim_run = run(plan, db, deliveries, root / "interim", lambda _: None, period="interim")
        interim = report_of(root / "interim")
        interim_check = verify_package(root / "interim")
        con = warehouse.connect(db)
        try:
            approval = decide(root / "interim", key, con, decision="approved", period=None)
        finally:
            con.close()
        final_run = run(plan, db, deliveries, root / "final", lambda _: None)  # the default
    return {
        "root": root,
        "plan": plan,
        "db": db,
        "key": key,
        "deliveries": deliveries,
        "interim": interim,
        "interim_run": interim_run,
        "interim_check": interim_check,
        "approval": approval,
        "final": report_of(root / "final"),
        "final_run": final_run,
    }


def test_interim_pays_what_was_achieved_by_its_through(contract):
    pay = contract["interim"]["payment"]
    assert pay["period"] == {
        "name": "interim",
        "index": 0,
        "kind": "interim",
        "through": "2024-12-31",
        "provisional": False,
    }
    assert contract["interim"]["periods"]["measurement"]["end"] == "2024-12-31"
    (effect,) = contract["interim"]["effects"]
    assert effect["relative_estimate"] == pytest.approx(2.0)  # 0.6 vs 0.2
    assert amounts(pay) == [
        ("22000.00", "0.00", "22000.00", None),
        ("10000.00", "0.00", "10000.00", None),
    ]
    assert pay["total"] == "32000.00" and pay["earlier"] == []
    # t01-t04: entered and 13 weeks paid, 26 weeks cut by the cap; t05, t06: entered only
    assert pay["lines"][0]["claims_by_status"] == {"capped_person": 4, "paid": 10}
    assert contract["interim_check"].problems == []


def test_approval_records_the_period_and_each_rules_amount(contract):
    a = contract["approval"]
    assert a["period"] == "interim" and a["amount"] == "32000.00"
    assert a["payment_period"] == "interim"
    assert a["payment_lines"] == [
        {"rule": 0, "kind": "rate_card", "amount": "22000.00"},
        {"rule": 1, "kind": "linear_to_target", "amount": "10000.00"},
    ]


def test_final_pays_cumulative_less_the_approved_interim_without_claw_back(contract):
    report = contract["final"]
    pay = report["payment"]
    assert pay["period"]["name"] == "final" and pay["period"]["through"] == "2025-12-31"
    assert report["periods"]["measurement"]["end"] == "2025-12-31"
    (effect,) = report["effects"]
    assert effect["relative_estimate"] == pytest.approx(0.1 / 0.6)
    assert amounts(pay) == [
        ("30000.00", "22000.00", "8000.00", None),  # the contract cap over the term
        ("1667.00", "10000.00", "0.00", "8333.00"),  # overpaid, not clawed back
    ]
    assert (pay["total"], pay["cumulative_due"], pay["paid_before"]) == (
        "8000.00",
        "31667.00",
        "32000.00",
    )
    (earlier,) = pay["earlier"]
    assert earlier["approved"] and earlier["version"] == 1
    assert earlier["reference"] == contract["approval"]["reference"]
    assert earlier["report_sha256"] == contract["approval"]["report_sha256"]
    steps = " ".join(pay["steps"])
    assert "Payment period final (final): measured on the data up to 2025-12-31" in steps
    assert "8333.00 SEK more than is now due; it is not paid back (overpaid)" in steps
    html = (contract["root"] / "final" / "report.html").read_text(encoding="utf-8")
    assert "Payment period <strong>final</strong>" in html
    assert contract["approval"]["reference"] in html


def test_final_package_verifies_from_its_context_alone(contract):
    folder = contract["root"] / "final"
    context = json.loads((folder / "context.json").read_text(encoding="utf-8"))
    assert context["payment_period"]["name"] == "final"
    assert context["payment_period"]["earlier"][0]["lines"][1]["amount"] == "10000.00"
    v = verify_package(folder)
    assert v.problems == []
    assert v.payment is not None and v.payment["total"] == "8000.00"


def test_verify_with_the_warehouse_checks_the_earlier_payments_against_the_ledger(
    contract, tmp_path
):
    folder = contract["root"] / "final"
    con = warehouse.connect(contract["db"], read_only=True)
    try:
        assert verify_package(folder, con=con).problems == []
    finally:
        con.close()
    other = new_warehouse(tmp_path / "other.duckdb")  # a ledger without the approval
    try:
        problems = verify_package(folder, con=other).problems
    finally:
        other.close()
    assert (
        "context.json $.payment_period.earlier[0]: counts period 'interim' as paid under "
        f"approval {contract['approval']['reference']}, but the ledger's approval of "
        "'interim' is missing"
    ) in problems


def test_approve_refuses_a_package_measured_for_another_period(contract):
    con = warehouse.connect(contract["db"])
    try:
        with pytest.raises(DecisionRefused, match="measured for payment period 'final'"):
            decide(
                contract["root"] / "final",
                contract["key"],
                con,
                decision="approved",
                period="interim",
            )
    finally:
        con.close()


def test_a_period_approved_is_not_measured_again(contract, tmp_path):
    with pytest.raises(PeriodRefused, match="'interim': already approved"):
        run(
            contract["plan"],
            contract["db"],
            contract["deliveries"],
            tmp_path / "again",
            lambda _: None,
            period="interim",
        )


def test_unknown_period_and_unapproved_earlier_period_are_refused(contract, tmp_path):
    plan = contract["plan"]
    db = empty_warehouse_file(tmp_path / "fresh.duckdb")
    with pytest.raises(PeriodRefused, match=r"no such payment period.*interim, final"):
        run(plan, db, contract["deliveries"], tmp_path / "r", lambda _: None, period="mid")
    with pytest.raises(PeriodRefused, match=r"earlier period\(s\) interim are not approved"):
        run(plan, db, contract["deliveries"], tmp_path / "r", lambda _: None, period="final")


def test_provisional_final_counts_the_unapproved_interim_as_unpaid_and_cannot_be_approved(
    contract, tmp_path
):
    plan = contract["plan"]
    db = empty_warehouse_file(tmp_path / "fresh.duckdb")
    out = tmp_path / "provisional"
    run(plan, db, contract["deliveries"], out, lambda _: None, period="final", provisional=True)
    pay = report_of(out)["payment"]
    assert pay["period"]["provisional"] is True
    assert pay["earlier"][0]["approved"] is False
    assert amounts(pay) == [
        ("30000.00", "0.00", "30000.00", None),
        ("1667.00", "0.00", "1667.00", None),
    ]
    assert any(s.startswith("PROVISIONAL: period interim") for s in pay["steps"])
    assert verify_package(out).problems == []
    con = warehouse.connect(db)
    try:
        with pytest.raises(DecisionRefused, match="is provisional"):
            decide(out, contract["key"], con, decision="approved", period="final")
    finally:
        con.close()


def test_clawback_pays_back_what_the_interim_overpaid(contract, tmp_path):
    """The same contract with `clawback: true`, proposed in-process on the final run's
    effect with the interim as approved above, and one rate-card event (1000.00): every
    line may go negative, none is `overpaid`."""
    from utfall import payments

    plan = load_plan(write_plan(tmp_path, clawback=True))
    (effect,) = contract["final_run"].effects
    events = pl.DataFrame(
        {
            "person_id": ["a"],
            "event": ["entered_work"],
            "achieved_on": [dt.date(2024, 3, 1)],
            "duration_days": [400],
        }
    )
    pay = payments.propose(
        plan,
        json.loads(json.dumps(effect.to_dict())),
        period="final",
        earlier=[{**contract["interim"]["payment"], "period": {"name": "interim"}}],
        events=events,
        counts={"persons_treated": 10},
    )
    assert amounts(pay) == [
        ("1000.00", "22000.00", "-21000.00", None),
        ("1667.00", "10000.00", "-8333.00", None),
    ]
    assert pay["total"] == "-29333.00"


def test_cli_run_period(contract, tmp_path, monkeypatch, capsys):
    """`utfall run --period` through `cli.main` (the parser, handlers and exit codes a user
    gets; `utfall run` in a real subprocess is tests/test_cli.py::test_simulate_then_run),
    into an empty warehouse."""
    from utfall.cli import main

    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", KEY)
    code = main(
        [
            "run",
            str(contract["plan"].path),
            "--deliveries",
            str(contract["deliveries"]),
            "--warehouse",
            str(empty_warehouse_file(tmp_path / "w.duckdb")),
            "--out",
            str(tmp_path / "r"),
            "--period",
            "interim",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "payment period interim (interim) through 2024-12-31" in out
    assert "cumulative due 32000.00 - paid before 0.00 SEK" in out
    assert "proposed payment: 32000.00 SEK" in out
    assert report_of(tmp_path / "r")["payment"]["total"] == "32000.00"


def test_dagster_job_measures_the_tagged_period(contract, tmp_path):
    """The contract's assets with the run tags `utfall/payment_period` and
    `utfall/provisional`, as `utfall run --period final --provisional`, into a missing
    warehouse file (the Dagster resource creates the layout)."""
    from dagster import DagsterInstance, materialize

    from utfall.assets.common import PERIOD_TAG, PROVISIONAL_TAG
    from utfall.pipelines.definitions import build_assets
    from utfall.pipelines.resources import ContractResource, WarehouseResource, resource_key

    plan = contract["plan"]
    assets, _checks = build_assets(plan)
    result = materialize(
        assets,
        resources={
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
            resource_key(plan): ContractResource(
                plan_path=str(plan.path),
                deliveries_dir=str(contract["deliveries"]),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=DagsterInstance.ephemeral(),
        tags={PERIOD_TAG: "final", PROVISIONAL_TAG: "true"},
    )
    assert result.success
    pay = report_of(tmp_path / "report")["payment"]
    assert pay["period"]["name"] == "final" and pay["period"]["provisional"] is True
    assert pay["total"] == "31667.00"  # 30000.00 + 1667.00, nothing approved before


def test_dagster_job_without_tag_pins_the_first_unapproved_period(contract, tmp_path):
    """Untagged, the run measures the first period not yet approved and tags itself with
    it, so every asset of the run measures the same period."""
    from dagster import DagsterInstance, materialize

    from utfall.assets.common import PERIOD_TAG
    from utfall.pipelines.definitions import build_assets
    from utfall.pipelines.resources import ContractResource, WarehouseResource, resource_key

    plan = contract["plan"]
    instance = DagsterInstance.ephemeral()
    result = materialize(
        build_assets(plan)[0],
        resources={
            "duckdb": WarehouseResource(database=str(empty_warehouse_file(tmp_path / "w.duckdb"))),
            resource_key(plan): ContractResource(
                plan_path=str(plan.path),
                deliveries_dir=str(contract["deliveries"]),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=instance,
    )
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[PERIOD_TAG] == "interim"
    assert report_of(tmp_path / "report")["payment"]["total"] == "32000.00"


def test_through_must_end_a_period_of_the_plans_frequency(tmp_path):
    """The employment plan is annual: an interim through 2024-06-30 would cut 2024 in part."""
    from utfall.plan import PlanError

    data = yaml.safe_load((EXAMPLE_PLANS / "employment_soc.yaml").read_text(encoding="utf-8"))
    data["payment"]["periods"][0]["through"] = "2024-06-30"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert err.value.problems == [
        (
            "payment.periods[0].through",
            "2024-06-30 does not end a year (the plan's frequency is annual), so a period's "
            "data would be cut in part",
        )
    ]
