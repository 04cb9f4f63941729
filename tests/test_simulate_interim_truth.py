"""The employment simulator's truth at a payment period's `through`: what a run of that
period estimates, so the demo can check an interim report's interval too."""

from __future__ import annotations

import datetime as dt

import pytest

from utfall import cli
from utfall.paths import EXAMPLE_PLANS
from utfall.simulate_cohorts import employment_cohort


def test_truth_at_the_follow_up_end_is_the_whole_term_truth():
    c = employment_cohort(
        seed=3, population=400, cost_windows=(9,), follow_up_ends=(dt.date(2025, 12, 31),)
    )
    at_end = c.truth["att_at"]["2025-12-31"]
    for name in ("entered_work", "sustained_13_weeks", "sustained_26_weeks", "public_cost_9m"):
        assert at_end[name] == pytest.approx(c.truth["att"][name], abs=1e-12), name


def test_an_earlier_through_has_its_own_truth_and_the_demo_reads_it(tmp_path):
    truth = cli.simulate_deliveries(
        EXAMPLE_PLANS / "employment_soc.yaml", tmp_path, 400, 0.0, 0.0, None
    )
    interim = truth["outcomes_at"]["2024-12-31"]
    assert set(interim) == {"entered_work", "sustained_26_weeks", "public_cost_9m"}
    # fewer months to find work in: a different effect from the whole term's
    assert interim["sustained_26_weeks"] != truth["outcomes"]["sustained_26_weeks"]
    read = cli.true_effects(EXAMPLE_PLANS / "employment_soc.yaml", truth, "2024-12-31")
    assert read["entered_work"] == (interim["entered_work"], "absolute")
    whole = cli.true_effects(EXAMPLE_PLANS / "employment_soc.yaml", truth, "2025-12-31")
    assert whole["entered_work"] == (truth["outcomes"]["entered_work"], "absolute")
