"""The cohort simulators: seeded (same arguments, same frames), the deliveries go through the
domain modules without loss, and on the per-person outcome frame the naive treated-vs-
comparison difference is visibly biased while aipw recovers the known ATT.

Tolerance: aipw within 3 of its own standard errors of the truth; the naive difference at
least 3 such standard errors away (measured on seed 0, the figures are in the asserts)."""

from __future__ import annotations

import polars as pl
import pytest

from utfall.domains import diabetes, hba1c
from utfall.domains.person import person_frame
from utfall.estimators.base import Design, get
from utfall.simulate_cohorts import health_cohort

HEALTH_PS = "age + baseline_hba1c + C(sex) + C(clinic)"


@pytest.fixture(scope="module")
def health():
    return health_cohort(seed=0)


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
