"""The metric public_cost and a contract paid on measured savings (tests/plans/
employment_savings.yaml: 40 % of the capital guaranteed, 50 % of the measured savings on
top, the return capped at +10 %): the cost per person on a hand-made delivery, then the
contract simulated, run, reported and verified, its interval covering the simulated truth
and its payment recomputed by hand from the reported effect."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl
import pytest

from utfall import cli, warehouse
from utfall.domains import public_costs
from utfall.plan import load_plan

PLAN = Path(__file__).parent / "plans" / "employment_savings.yaml"
D = dt.date


def test_cost_after_enrolment_by_hand():
    costs = pl.DataFrame(
        {
            "person_id": ["a", "a", "a", "a", "b", "c"],
            "month": [D(2024, 1, 1), D(2024, 2, 1), D(2024, 3, 1), D(2024, 4, 1)]
            + [D(2024, 4, 1), D(2024, 6, 1)],
            "cost_type": ["benefit"] * 6,
            "amount": ["100.00", "200.50", "-50.25", "999.99", "10.00", "7.00"],
        },
        schema_overrides={"amount": pl.Utf8},
    )
    valid, bad = public_costs.validate(costs)
    assert bad.height == 0
    enrolment = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "d"],
            "enrolled_on": [D(2024, 1, 20), D(2024, 2, 3), D(2024, 4, 30), D(2024, 1, 2)],
        }
    )
    # two months after the enrolment month, the follow-up ending in June 2024:
    # a (Jan): Feb + Mar = 200.50 - 50.25 = 150.25; b (Feb): Mar + Apr = 10.00;
    # c (Apr): May + Jun = 7.00; d (Jan): no rows = 0.00
    per_person, left_out = public_costs.after_enrolment(valid, enrolment, 2, D(2024, 6, 30))
    assert left_out == 0
    assert per_person.rows() == [
        ("a", Decimal("150.25")),
        ("b", Decimal("10.00")),
        ("c", Decimal("7.00")),
        ("d", Decimal("0.00")),
    ]
    # a window ending after the follow-up is left out, never counted as 0: c's would end in
    # July
    per_person, left_out = public_costs.after_enrolment(valid, enrolment, 3, D(2024, 6, 30))
    assert left_out == 1 and "c" not in per_person["person_id"].to_list()
    assert dict(per_person.rows())["a"] == Decimal("1150.24")  # 200.50 - 50.25 + 999.99


PEOPLE = [
    # person_id, treated, enrolled_on, age, sex, office, prior months
    ("p1", 1, "2024-01-20", 30, "F", "norr", 12),
    ("p2", 1, "2024-03-01", 41, "M", "syd", 3),
    ("p3", 0, "2024-02-10", 52, "F", "norr", 24),
    ("p4", 0, "2024-03-31", 25, "M", "syd", 0),
]
COSTS = [
    ("p1", "2024-01-01", "benefit", "11000,00"),  # the enrolment month: not counted
    ("p1", "2024-02-01", "benefit", "11000,00"),
    ("p1", "2024-03-01", "placement", "14500,50"),
    ("p1", "2025-07-01", "benefit", "11000,00"),  # month 18 after January: counted
    ("p1", "2025-08-01", "benefit", "11000,00"),  # month 19: not counted
    ("p2", "2024-04-01", "benefit", "-250,25"),  # a correction
    ("p3", "2024-03-01", "benefit", "11000,00"),
    ("p3", "2024-03-01", "care", "99,99"),
]


def load_hand_made(tmp_path: Path, plan):
    """The hand-made participants and costs ingested and validated: (connection, run)."""
    from utfall.ingest import ingest_source
    from utfall.validate import validate_source
    from utfall.warehouse import runs

    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    header = "person_id,treated,enrolled_on,age,sex,office,prior_unemployed_months\n"
    rows = "".join(",".join(map(str, p)) + "\n" for p in PEOPLE)
    (deliveries / "participants.csv").write_text(header + rows, encoding="utf-8")
    text = "person_id;month;cost_type;amount\n" + "".join(";".join(c) + "\n" for c in COSTS)
    (deliveries / "public_costs.csv").write_bytes(text.encode("cp1252"))
    con = warehouse.connect(tmp_path / "w.duckdb")
    run = runs.start(con, plan.contract_id, plan.hash)
    for source in ("deltagare", "kostnader"):
        ingest_source(con, plan, run, source, deliveries, b"k" * 32)
        assert validate_source(con, plan, run, source).quarantined == 0
    return con, run


def test_public_cost_frame_from_a_hand_made_delivery(tmp_path):
    """The metric through ingest and validation (the `;` dialect with decimal commas) to the
    estimator's person frame: y = each participant's cost in the 18 months after the
    enrolment month, with the participants' covariates."""
    from utfall.recompute import payment_inputs, person_frame

    plan = load_plan(PLAN)
    con, run = load_hand_made(tmp_path, plan)
    try:
        frame = person_frame(con, plan, run, "public_cost_18m").sort("person_id")
        # share_of_savings reads counts: the treated persons the effect was measured on
        assert payment_inputs(con, plan, run) == {"counts": {"persons_treated": 2}}
    finally:
        con.close()
    # p1 (Jan): Feb 11000.00 + Mar 14500.50 + Jul 2025 11000.00 = 36500.50
    # p2 (Mar): Apr -250.25; p3 (Feb): Mar 11000.00 + 99.99 = 11099.99; p4 (Mar): 0
    assert frame["y"].to_list() == [36500.50, -250.25, 11099.99, 0.0]
    assert frame["treated"].to_list() == [1, 1, 0, 0]
    assert frame["office"].to_list() == ["norr", "syd", "norr", "syd"]
    assert frame["prior_unemployed_months"].to_list() == [12.0, 3.0, 24.0, 0.0]
    assert set(frame.columns) == {
        "person_id",
        "treated",
        "y",
        "age",
        "sex",
        "office",
        "prior_unemployed_months",
    }


def test_a_window_no_participant_has_completed_is_refused_with_its_reason(tmp_path):
    """24 months after January to March 2024 end after the measurement (December 2025) for
    every participant: one sentence saying so, not an empty frame."""
    from utfall.errors import MeasurementError
    from utfall.recompute import person_frame

    text = PLAN.read_text(encoding="utf-8").replace("{months: 18}", "{months: 24}")
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    plan = load_plan(path)
    con, run = load_hand_made(tmp_path, plan)
    try:
        with pytest.raises(MeasurementError, match=r"window of 24 months .* every one of the 4"):
            person_frame(con, plan, run, "public_cost_18m")
    finally:
        con.close()


def test_savings_contract_end_to_end_pays_half_the_measured_savings_and_verifies(tmp_path):
    from utfall.pipeline import run

    deliveries = tmp_path / "deliveries"
    truth = cli.simulate_deliveries(PLAN, deliveries, 2000, 0.0, 0.0, None)
    run(load_plan(PLAN), tmp_path / "w.duckdb", deliveries, tmp_path / "report", lambda _m: None)
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))

    (effect,) = report["effects"]
    true, scale = cli.true_effects(PLAN, truth)["public_cost_18m"]
    assert scale == "absolute" and effect["method"] == "aipw"
    assert effect["ci_low"] <= true <= effect["ci_high"], (effect, true)
    assert true < 0  # participants cost less: those who enter work draw no benefit

    # the payment by hand from the reported effect: saving per person = -estimate rounded
    # to 0.0001; savings = that x persons treated; conditional = 0.5 x savings, at most the
    # cap 8 400 000.00; total = the guaranteed 4 800 000.00 + the conditional part
    n = effect["n_treated"]
    assert n == truth["n_treated"]  # no participant left out: every window is complete
    per_person = Decimal(repr(-effect["estimate"])).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_EVEN
    )
    savings = per_person * n
    assert savings == public_costs.savings(effect["estimate"], n)
    conditional = min(Decimal("0.5") * savings, Decimal("8400000.00")).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )
    payment = report["payment"]
    guaranteed, share = payment["lines"]
    assert (guaranteed["kind"], guaranteed["amount"]) == ("fixed", "4800000.00")
    assert share["kind"] == "share_of_savings" and Decimal(share["amount"]) == conditional
    assert Decimal(payment["total"]) == Decimal("4800000.00") + conditional
    assert Decimal(payment["total"]) <= Decimal("13200000.00")  # return at most +10 %
    # the steps show the computation: effect per person x persons treated = savings, share
    steps = " ".join(payment["steps"])
    assert f"saving per person {per_person}" in steps
    assert f"x {n} persons treated = savings {savings.quantize(Decimal('0.000001'))}" in steps
    assert "x share 0.5" in steps
    assert "Effect in outcome units on public_cost_18m" in steps
    # the true savings lie within the savings the interval allows
    true_savings = Decimal(truth["savings"]["public_cost_18m"])
    assert -effect["ci_high"] * n <= true_savings <= -effect["ci_low"] * n
    ends = {r["at"]: Decimal(r["total"]) for r in payment["range"]}
    assert ends["least_favourable"] <= ends["point_estimate"] <= ends["most_favourable"]

    # the replication package carries the staged costs, exact, with pseudonyms only
    staged = pl.read_parquet(tmp_path / "report" / "inputs" / "staging_public_costs.parquet")
    assert staged.schema["amount"] == pl.Decimal(18, 2)
    assert set(staged["amount"].unique().to_list()) == {Decimal("11000.00"), Decimal("14500.50")}
    code = cli.main(["verify", str(tmp_path / "report")])
    assert code == 0


REPS = 40


@pytest.mark.coverage
def test_public_cost_interval_coverage_over_simulated_cohorts():
    """Over REPS seeds of the employment cohort, the plan's AIPW interval for the effect on
    the 18-month public cost covers the simulated truth at about 95 % (within 3 binomial
    standard deviations: 40 draws, p = 0.95 -> at least 0.847, i.e. 34 of 40), and the
    estimates are unbiased within 4 Monte Carlo standard errors. Run with `-m coverage`."""
    import math

    from utfall.domains.person import person_frame
    from utfall.estimators.base import Design, get
    from utfall.simulate_cohorts import FOLLOW_UP_END, employment_cohort

    formula = "age + prior_unemployed_months + C(sex) + C(office)"
    hits, errors = 0, []
    for seed in range(REPS):
        c = employment_cohort(seed=seed, population=1500, cost_windows=(18,))
        enrolment = c.participants.select("person_id", "enrolled_on")
        costs, _ = public_costs.after_enrolment(
            c.frames["public_costs"], enrolment, 18, FOLLOW_UP_END
        )
        frame, dropped = person_frame(
            costs,
            c.participants,
            "cost_total",
            numeric=("age", "prior_unemployed_months"),
            categorical=("sex", "office"),
        )
        assert dropped == 0
        fit = get("aipw").fit(
            frame, Design("y", {"propensity": formula, "covariates": formula}, seed=seed)
        )
        true = c.truth["att"]["public_cost_18m"]
        hits += fit.ci_low <= true <= fit.ci_high
        errors.append(fit.estimate - true)
    share = hits / REPS
    assert share >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS), (hits, REPS)
    mean = sum(errors) / REPS
    sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / (REPS - 1))
    assert abs(mean) < 4 * sd / math.sqrt(REPS), (mean, sd)
