"""The cohort simulators: seeded (same arguments, same frames), the deliveries go through the
domain modules without loss, and on the per-person outcome frame the naive treated-vs-
comparison difference is visibly biased while aipw recovers the known ATT.

Tolerance: aipw within 3 of its own standard errors of the truth; the naive difference at
least 3 such standard errors away (measured on seed 0, the figures are in the asserts)."""

from __future__ import annotations

import polars as pl
import pytest

from utfall.domains import diabetes, employment, hba1c, public_costs
from utfall.domains.person import person_frame
from utfall.estimators.base import Design, get
from utfall.payments.base import Inputs
from utfall.payments.rate_card import pay
from utfall.simulate_cohorts import (
    FOLLOW_UP_END,
    employment_cohort,
    health_cohort,
    iop_followup,
    person_costs,
)

HEALTH_PS = "age + baseline_hba1c + C(sex) + C(clinic)"
WORK_PS = "age + prior_unemployed_months + C(sex) + C(office)"


@pytest.fixture(scope="module")
def health():
    return health_cohort(seed=0)


def treated_ids(c) -> list[str]:
    return c.participants.filter(treated=1)["person_id"].to_list()


def naive(frame: pl.DataFrame) -> float:
    return frame.filter(treated=1)["y"].mean() - frame.filter(treated=0)["y"].mean()


def test_health_is_seeded_and_loads_without_loss(health):
    again = health_cohort(seed=0)
    assert again.frames["lab_results"].equals(health.frames["lab_results"])
    assert again.participants.equals(health.participants)
    assert again.truth == health.truth
    other = health_cohort(seed=1)
    assert not other.frames["lab_results"].equals(health.frames["lab_results"])
    valid, bad = hba1c.validate(health.frames["lab_results"])
    assert bad.height == 0 and valid.height == health.frames["lab_results"].height
    assert set(valid["conversion"]) == {"ifcc", "mono_s"}  # the 2009 values: Mono-S %
    p = health.participants
    assert p["age"].is_between(50, 60).all()
    assert p["baseline_hba1c"].is_between(42, 47).all()
    t = p.filter(treated=1)
    assert t["exit_on"].null_count() == 0 and set(t["exit_reason"]) == {"completed", "dropped_out"}
    assert p.filter(treated=0)["exit_on"].null_count() == p.height - t.height
    # selection on observables: participants have higher baselines and are younger
    assert t["baseline_hba1c"].mean() > p.filter(treated=0)["baseline_hba1c"].mean() + 0.5
    assert t["age"].mean() < p.filter(treated=0)["age"].mean() - 0.3


@pytest.mark.parametrize(
    "outcome", ["change_12m", "below_42_12m", "change_24m", "progressed_48_24m"]
)
def test_health_naive_is_biased_and_aipw_recovers_the_truth(health, outcome):
    valid, _ = hba1c.validate(health.frames["lab_results"])
    out = diabetes.outcomes(health.participants, valid)
    frame, dropped = person_frame(
        out,
        health.participants,
        outcome,
        numeric=("age", "baseline_hba1c"),
        categorical=("sex", "clinic"),
    )
    assert dropped > 0  # follow-ups missing at random are dropped, not imputed
    truth = health.truth["att"][outcome]
    res = get("aipw").fit(frame, Design("y", {"propensity": HEALTH_PS}))
    assert abs(res.estimate - truth) < 3 * res.std_error
    assert res.ci_low <= truth <= res.ci_high
    assert abs(naive(frame) - truth) > 3 * res.std_error


@pytest.fixture(scope="module")
def work():
    c = employment_cohort(seed=0, population=3000)
    status, bad = employment.validate(c.frames["employment_status"])
    costs, bad_costs = public_costs.validate(c.frames["public_costs"])
    assert bad.height == 0 and bad_costs.height == 0
    out = employment.outcomes(status, c.participants, FOLLOW_UP_END).join(
        person_costs(costs, c.participants), on="person_id"
    )
    return c, out


def test_employment_is_seeded_and_selected(work):
    c, out = work
    again = employment_cohort(seed=0, population=3000)
    for name in ("employment_status", "public_costs"):
        assert again.frames[name].equals(c.frames[name])
    assert again.truth == c.truth
    p = c.participants
    t, k = p.filter(treated=1), p.filter(treated=0)
    assert t["prior_unemployed_months"].mean() > k["prior_unemployed_months"].mean() + 3
    assert set(c.frames["employment_status"]["status"]) == {
        "employed",
        "unemployed",
        "in_education_or_training",
        "other",
        "arbetslös",
    }
    ev = employment.events(out)
    assert set(ev["event"]) == {"entered_work", "sustained_13_weeks", "sustained_26_weeks"}
    assert ev.filter(event="sustained_26_weeks")["duration_days"].min() >= 182
    # the rate card takes the simulated events as they are (pseudonyms, types, durations)
    rule = {
        "prices": [
            {"event": "entered_work", "price": "10000"},
            {"event": "sustained_13_weeks", "price": "20000", "min_duration_days": 91},
            {"event": "sustained_26_weeks", "price": "30000", "min_duration_days": 182},
        ],
        "cap_per_person": "50000",
        "contract_cap": "1000000000",
    }
    due = pay(rule, Inputs(events=ev.filter(pl.col("person_id").is_in(treated_ids(c)))))
    per_event = ev.filter(pl.col("person_id").is_in(treated_ids(c)))["event"].value_counts()
    n = dict(per_event.iter_rows())
    full = 10000 * n["entered_work"] + 20000 * n["sustained_13_weeks"]
    full += 30000 * n["sustained_26_weeks"]
    # everyone with all three events is cut from 60000 to the 50000 cap
    assert due.amount == full - 10000 * n["sustained_26_weeks"]


@pytest.mark.parametrize(
    "outcome", ["entered_work", "sustained_13_weeks", "sustained_26_weeks", "cost_total"]
)
def test_employment_naive_is_biased_and_aipw_recovers_the_truth(work, outcome):
    c, out = work
    frame, dropped = person_frame(
        out,
        c.participants,
        outcome,
        numeric=("age", "prior_unemployed_months"),
        categorical=("sex", "office"),
    )
    assert dropped == 0
    truth = c.truth["att"][outcome]
    res = get("aipw").fit(frame, Design("y", {"propensity": WORK_PS}))
    assert abs(res.estimate - truth) < 3 * res.std_error
    # participants were longer unemployed: the naive difference is > 5 SE off (even the sign)
    assert abs(naive(frame) - truth) > 5 * res.std_error


def test_savings_from_the_estimated_cost_effect(work):
    c, out = work
    frame, _ = person_frame(
        out,
        c.participants,
        "cost_total",
        numeric=("age", "prior_unemployed_months"),
        categorical=("sex", "office"),
    )
    res = get("aipw").fit(frame, Design("y", {"propensity": WORK_PS}))
    n = c.truth["n_treated"]
    measured = public_costs.savings(res.estimate, n)
    assert measured > 0
    assert abs(float(measured - c.truth["savings_total"])) < 3 * res.std_error * n


def test_randomised_employment_cohort_naive_is_fine():
    c = employment_cohort(seed=0, population=2000, randomised=True)
    status, _ = employment.validate(c.frames["employment_status"])
    out = employment.outcomes(status, c.participants, FOLLOW_UP_END)
    frame, _ = person_frame(out, c.participants, "entered_work")
    se = get("diff_in_means").fit(frame, Design("y", {})).std_error
    assert abs(naive(frame) - c.truth["att"]["entered_work"]) < 3 * se


def test_iop_historical_baseline_covers_the_truth():
    c = iop_followup(seed=0)
    panel = c.frames["indicator_panel"]
    assert panel.height == 20 and set(panel["phase"]) == {"baseline", "measurement"}
    truth = c.truth["att"]["share_in_activity"]
    assert truth == pytest.approx(0.05, abs=0.01)
    res = get("historical").fit(panel, Design("share_in_activity", {"baseline": "trend"}))
    assert res.ci_low <= truth <= res.ci_high
    assert iop_followup(seed=0).frames["indicator_panel"].equals(panel)
    delivery = c.frames["indicator_delivery"]
    assert (
        (delivery["share_in_activity"] * delivery["weight"])
        .round(6)
        .equals(panel["numerator"].round(6), check_names=False)
    )
