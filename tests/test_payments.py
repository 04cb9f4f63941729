"""Payments: exact decimals, clamped to 0..target, on the basis the plan names."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal

import pytest

from utfall.payments import measured_improvement, propose


def _effect(rel: float, low: float = -0.2, high: float = -0.05) -> dict:
    return {
        "outcome": "short_term_sick_days",
        "relative_estimate": rel,
        "relative_ci_low": low,
        "relative_ci_high": high,
    }


@pytest.mark.parametrize(
    ("rel", "variable", "total"),
    [
        (-0.06, "700000.00", "1300000.00"),  # half the 12 % target -> half the outcome part
        (-0.12, "1400000.00", "2000000.00"),  # at target
        (-0.30, "1400000.00", "2000000.00"),  # above target: capped
        (0.05, "0.00", "600000.00"),  # got worse: floored at zero
        (-0.1, "1166666.67", "1766666.67"),  # 0.1/0.12 x 1 400 000, rounded to öre once
    ],
)
def test_linear_to_target(example_plan, rel, variable, total):
    p = propose(example_plan, _effect(rel))
    assert p["lines"][0]["amount"] == "600000.00"
    assert p["lines"][1]["amount"] == variable
    assert p["total"] == total and p["maximum"] == "2000000.00"
    assert p["currency"] == "SEK" and p["status"] == "proposed"


def test_improvement_is_an_exact_rounded_decimal(example_plan):
    assert measured_improvement(example_plan, _effect(-0.123456789)) == Decimal("0.1235")


def test_conservative_basis_uses_the_bound_least_favourable_to_provider(example_plan):
    data = copy.deepcopy(example_plan.data)
    data["payment"]["basis"] = "conservative_ci_bound"
    plan = replace(example_plan, data=data)
    assert measured_improvement(plan, _effect(-0.12, low=-0.2, high=-0.03)) == Decimal("0.0300")
    assert propose(plan, _effect(-0.12, high=-0.03))["lines"][1]["amount"] == "350000.00"
